#!/usr/bin/env bash
# Starts a local Kubernetes control plane on loopback, all in STATE_DIR (see lib.sh for its layout):
# etcd, kube-apiserver (TLS from --cert-dir, RBAC + Node authorization, token identities,
# service-account signing keys), kube-controller-manager and kube-scheduler (each with its own
# token identity, no leader election), on free ports chosen now; then the namespace `kubevirt`, the real
# KubeVirt CRDs (server-side apply, waited on until Established), and KubeVirt's own virt-controller
# (testbed.md) as the ServiceAccount kubevirt/kubevirt-controller with the least-privilege RBAC that
# kubevirt's virt-operator gives it, serving /leader over TLS with a self-signed certificate.
#
# Usage: hack/testbed/up.sh STATE_DIR        then: source STATE_DIR/env
# Env:   K8S_VERSION (which build of hack/testbed/build.sh to run; default 1.37.2),
#        CRYPTOPASS_TESTBED_DIR (a build's dir instead: bin/ and kubevirt-crds.yaml),
#        CRYPTOPASS_TESTBED_TIMEOUT (seconds per wait, default 120).
# Idempotent: a control plane already running healthy in STATE_DIR is left alone; anything else
# there (a killed run: stale pids, processes, files) is cleaned up by down.sh first. On failure it
# stops what it started, shows the log tail, and keeps STATE_DIR/logs for a post-mortem.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

(($# == 1)) || tb_die "usage: $0 STATE_DIR"
STATE=$(tb_abs "$1")
TB=$(tb_bindir)
for f in "${TB_COMPONENTS[@]}" kubectl; do
    [[ -x $TB/bin/$f ]] || tb_die "$TB/bin/$f is missing: run hack/testbed/build.sh (K8S_VERSION=${K8S_VERSION:-1.37.2}) first"
done
CRDS=$(realpath "$TB/kubevirt-crds.yaml" 2>/dev/null) || tb_die "$TB/kubevirt-crds.yaml is missing: run hack/testbed/build.sh first"
VC_RBAC=$(realpath "$TB/virt-controller-rbac.yaml" 2>/dev/null) ||
    tb_die "$TB/virt-controller-rbac.yaml is missing: run hack/testbed/build.sh first"
export PATH=$TB/bin:$PATH
for cmd in openssl python3 setsid base64 curl; do
    command -v "$cmd" >/dev/null 2>&1 || tb_die "'$cmd' is not on PATH"
done

T_START=$(tb_now_ms)
lap() { tb_say "$1 ($(($(tb_now_ms) - T_START)) ms)"; }

# Already up and healthy, with the binaries asked for? Then nothing to do.
if [[ -f $STATE/env && -f $STATE/admin.kubeconfig ]]; then
    healthy=1
    grep -qxF "export CRYPTOPASS_TESTBED_BIN=$TB/bin" "$STATE/env" || healthy=0
    for comp in "${TB_COMPONENTS[@]}"; do
        tb_ours "$STATE" "$(cat "$STATE/$comp.pid" 2>/dev/null)" "$comp" || healthy=0
    done
    if ((healthy)) && [[ $(kubectl --kubeconfig "$STATE/admin.kubeconfig" --request-timeout=5s get --raw /readyz 2>/dev/null) == ok ]]; then
        tb_say "already running in $STATE: source $STATE/env"
        exit 0
    fi
fi
# Leftovers of an earlier run: stop them and start from an empty dir.
if [[ -e $STATE ]]; then
    bash "$HERE/down.sh" "$STATE"
fi
mkdir -p "$STATE/pki" "$STATE/logs" "$STATE/etcd-data"
chmod 700 "$STATE" "$STATE/pki" "$STATE/etcd-data"

# On failure: stop whatever we started, keep the logs.
ok=0
cleanup() {
    if ((!ok)); then
        tb_say "start-up failed: stopping what was started; logs kept in $STATE/logs (hack/testbed/down.sh $STATE removes it)"
        TB_STOP_SIGNAL=KILL tb_stop_all "$STATE"
        # A port chosen free was taken by someone else before our process bound it: try again with
        # new ports (twice at most).
        attempt=${CRYPTOPASS_TESTBED_ATTEMPT:-1}
        if ((attempt < 3)) && grep -qs 'address already in use' "$STATE"/logs/*.log; then
            tb_say "a port was taken meanwhile (address already in use): starting again with new ports"
            rm -rf -- "$STATE"
            trap - EXIT
            CRYPTOPASS_TESTBED_ATTEMPT=$((attempt + 1)) exec bash "$0" "$STATE"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- identities and keys --------------------------------------------------------------------
openssl genrsa -out "$STATE/pki/sa.key" 2048 2>/dev/null || tb_die "openssl genrsa failed"
openssl rsa -in "$STATE/pki/sa.key" -pubout -out "$STATE/pki/sa.pub" 2>/dev/null || tb_die "openssl rsa -pubout failed"
ADMIN_TOKEN=$(openssl rand -hex 32)
SCHED_TOKEN=$(openssl rand -hex 32)
KCM_TOKEN=$(openssl rand -hex 32)
VC_TOKEN=$(openssl rand -hex 32)
VC_USER=system:serviceaccount:kubevirt:kubevirt-controller
# token,user,uid[,"groups"]: the admin is in system:masters; the scheduler and the controller-manager
# are the users the bootstrap RBAC policy grants their (least) privileges to; virt-controller is the
# ServiceAccount kubevirt/kubevirt-controller (a static token of that user: RBAC subjects of kind
# ServiceAccount match it by name), bound to kubevirt's own roles below.
cat >"$STATE/pki/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin-uid,"system:masters"
$SCHED_TOKEN,system:kube-scheduler,kube-scheduler-uid
$KCM_TOKEN,system:kube-controller-manager,kube-controller-manager-uid
$VC_TOKEN,$VC_USER,kubevirt-controller-uid,"system:serviceaccounts,system:serviceaccounts:kubevirt"
EOF
chmod 600 "$STATE/pki/tokens.csv"

# --- ports and command lines ----------------------------------------------------------------
read -r P_ETCD P_PEER P_API P_KCM P_SCHED P_VC < <(tb_free_ports 6)
cat >"$STATE/ports" <<EOF
etcd-client $P_ETCD
etcd-peer $P_PEER
kube-apiserver $P_API
kube-controller-manager $P_KCM
kube-scheduler $P_SCHED
virt-controller $P_VC
EOF
SERVER=https://127.0.0.1:$P_API
ETCD=http://127.0.0.1:$P_ETCD

printf '%s\n' \
    --name=testbed --data-dir="$STATE/etcd-data" \
    --listen-client-urls="$ETCD" --advertise-client-urls="$ETCD" \
    --listen-peer-urls="http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$P_PEER" \
    --initial-cluster="testbed=http://127.0.0.1:$P_PEER" \
    --unsafe-no-fsync --log-level=warn >"$STATE/etcd.args"

printf '%s\n' \
    --etcd-servers="$ETCD" \
    --bind-address=127.0.0.1 --secure-port="$P_API" --advertise-address=127.0.0.1 \
    --cert-dir="$STATE/pki" \
    --authorization-mode=Node,RBAC \
    --token-auth-file="$STATE/pki/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$STATE/pki/sa.pub" \
    --service-account-signing-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --allow-privileged=true >"$STATE/kube-apiserver.args"

printf '%s\n' \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$P_KCM" \
    --controllers='*,-nodeipam,-nodelifecycle' \
    --use-service-account-credentials \
    --service-account-private-key-file="$STATE/pki/sa.key" \
    --root-ca-file="$STATE/ca.crt" \
    --leader-elect=false >"$STATE/kube-controller-manager.args"

printf '%s\n' \
    --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$P_SCHED" \
    --leader-elect=false >"$STATE/kube-scheduler.args"

# virt-controller: no flag turns its leader election off; a long renew deadline keeps a slow apiserver
# (a loaded 2-core machine) from costing it its Lease (it exits when it loses it). Its Lease identity
# is the hostname, so a restarted process takes its own Lease over at once.
printf '%s\n' \
    --kubeconfig="$STATE/virt-controller.kubeconfig" \
    --listen=127.0.0.1 --port="$P_VC" \
    --launcher-image=virt-launcher:v1.9.0 \
    --prom-cert-file="$STATE/virt-controller.crt" --prom-key-file="$STATE/virt-controller.key" \
    --leader-elect-lease-duration=60s --leader-elect-renew-deadline=50s --leader-elect-retry-period=2s \
    >"$STATE/virt-controller.args"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=virt-controller \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$STATE/virt-controller.key" -out "$STATE/virt-controller.crt" 2>/dev/null ||
    tb_die "openssl req (virt-controller's certificate) failed"
chmod 600 "$STATE/virt-controller.key"

# --- etcd -----------------------------------------------------------------------------------
tb_start "$STATE" etcd
if command -v etcdctl >/dev/null; then
    tb_wait "$STATE" "etcd to be healthy on $ETCD" etcd \
        etcdctl --endpoints="$ETCD" --dial-timeout=1s --command-timeout=2s endpoint health
fi
lap "etcd healthy on $ETCD"

# --- kube-apiserver -------------------------------------------------------------------------
tb_start "$STATE" kube-apiserver
# extract_ca: the self-signed CA that signed the serving certificate the apiserver wrote into
# --cert-dir (apiserver.crt holds the serving certificate, then its CA); checked with openssl verify.
extract_ca() {
    local crt=$STATE/pki/apiserver.crt d f
    [[ -s $crt ]] || return 1
    d=$(mktemp -d)
    awk -v d="$d" '/-----BEGIN CERTIFICATE-----/ {n++} n {print > (d "/" n ".pem")}' "$crt"
    [[ -f $d/1.pem ]] || { rm -rf "$d"; return 1; }
    for f in "$d"/*.pem; do
        [[ $f == "$d/1.pem" ]] && continue
        if openssl x509 -in "$f" -noout -text 2>/dev/null | grep -q 'CA:TRUE' &&
            openssl verify -CAfile "$f" "$d/1.pem" >/dev/null 2>&1; then
            cp "$f" "$STATE/ca.crt.tmp" && mv -f "$STATE/ca.crt.tmp" "$STATE/ca.crt"
            rm -rf "$d"
            return 0
        fi
    done
    rm -rf "$d"
    return 1
}
tb_wait "$STATE" "the apiserver's serving certificate in $STATE/pki" "etcd kube-apiserver" extract_ca
tb_kubeconfig "$STATE/admin.kubeconfig" "$SERVER" "$STATE/ca.crt" admin "$ADMIN_TOKEN"
tb_kubeconfig "$STATE/kube-scheduler.kubeconfig" "$SERVER" "$STATE/ca.crt" system:kube-scheduler "$SCHED_TOKEN"
tb_kubeconfig "$STATE/kube-controller-manager.kubeconfig" "$SERVER" "$STATE/ca.crt" system:kube-controller-manager "$KCM_TOKEN"
tb_kubeconfig "$STATE/virt-controller.kubeconfig" "$SERVER" "$STATE/ca.crt" "$VC_USER" "$VC_TOKEN"
export KUBECONFIG=$STATE/admin.kubeconfig
# Over TLS with our CA and the admin token: a different apiserver on this port could not answer.
readyz() { [[ $(kubectl --request-timeout=2s get --raw /readyz 2>&1) == ok ]]; }
tb_wait "$STATE" "kube-apiserver /readyz on $SERVER" "etcd kube-apiserver" readyz
lap "kube-apiserver ready on $SERVER"

# --- controller-manager, scheduler and KubeVirt -------------------------------------------------
tb_start "$STATE" kube-controller-manager
tb_start "$STATE" kube-scheduler
STARTED="etcd kube-apiserver kube-controller-manager kube-scheduler"
# While they start: the namespace kubevirt and the KubeVirt CRDs (server-side: they exceed the
# annotation limit of client-side apply).
printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubevirt\n' |
    kubectl apply --server-side --field-manager=cryptopass-testbed -f - >/dev/null ||
    tb_die "creating the namespace kubevirt failed"
kubectl apply --server-side --force-conflicts --field-manager=cryptopass-testbed -f "$CRDS" >"$STATE/logs/kubevirt-crds.log" 2>&1 || {
    tail -n 20 "$STATE/logs/kubevirt-crds.log" >&2
    tb_die "applying the KubeVirt CRDs ($CRDS) failed"
}
lap "namespace kubevirt and $(grep -c '^kind: CustomResourceDefinition' "$CRDS") KubeVirt CRDs applied"
# shellcheck disable=SC2086 # a list of names
tb_check_alive "$STATE" $STARTED
kubectl wait --for=condition=Established --timeout="${TB_TIMEOUT}s" -f "$CRDS" >>"$STATE/logs/kubevirt-crds.log" 2>&1 || {
    tail -n 20 "$STATE/logs/kubevirt-crds.log" >&2
    tb_die "the KubeVirt CRDs did not become Established"
}
lap "KubeVirt CRDs established"

# virt-controller: kubevirt's RBAC for it (server-side: its ServiceAccount, roles and bindings), and
# the policy that confines its writes to the namespaces that opt in (virt-controller-scope.yaml: tests
# that play KubeVirt by hand stay undisturbed); then the process, once the CRDs it watches are served
# and the policy is in force.
kubectl apply --server-side --force-conflicts --field-manager=cryptopass-testbed -f "$VC_RBAC" \
    -f "$HERE/virt-controller-scope.yaml" >"$STATE/logs/virt-controller-rbac.log" 2>&1 || {
    tail -n 20 "$STATE/logs/virt-controller-rbac.log" >&2
    tb_die "applying virt-controller's RBAC ($VC_RBAC) and scope policy failed"
}
# shellcheck disable=SC2086 # a list of names
tb_wait "$STATE" "virt-controller's scope policy to be in force" "$STARTED" tb_virt_controller_confined
tb_start "$STATE" virt-controller
ALL="${TB_COMPONENTS[*]}"
# Leader election is off for the scheduler and the controller-manager (a renewal missed under load
# made them exit): they serve once the scheduler's /readyz (its informers synced) and the
# controller-manager's /healthz are ok, and its service-account controller (running with its own
# service-account token) has made the default ServiceAccount.
tb_wait "$STATE" "kube-controller-manager /healthz" "$ALL" tb_serving "$STATE" kube-controller-manager
tb_wait "$STATE" "kube-scheduler /readyz" "$ALL" tb_serving "$STATE" kube-scheduler
tb_wait "$STATE" "the ServiceAccount default/default" "$ALL" kubectl --request-timeout=2s -n default get serviceaccount default
lap "kube-controller-manager and kube-scheduler running"
tb_wait "$STATE" "virt-controller to lead (GET https://127.0.0.1:$P_VC/leader)" "$ALL" tb_virt_controller_leader "$STATE"
lap "virt-controller leading on https://127.0.0.1:$P_VC"

# --- env ------------------------------------------------------------------------------------
cat >"$STATE/env.tmp" <<EOF
# The cryptopass test bed in $STATE (hack/testbed/up.sh); stop it with hack/testbed/down.sh $STATE
export KUBECONFIG=$STATE/admin.kubeconfig
export CRYPTOPASS_TEST_KUBECONFIG=$STATE/admin.kubeconfig
export CRYPTOPASS_TESTBED_STATE=$STATE
export CRYPTOPASS_TEST_APISERVER=$SERVER
export CRYPTOPASS_TEST_CA=$STATE/ca.crt
export CRYPTOPASS_KUBEVIRT_CRDS=$CRDS
export CRYPTOPASS_K8S_VERSION=$(kube-apiserver --version | sed 's/^Kubernetes v//')
export CRYPTOPASS_TESTBED_BIN=$TB/bin
# KubeVirt's virt-controller runs (tests/support/kubevirt.rs): it renders virt-launcher pods of every
# VMI and handles every VMIM.
export CRYPTOPASS_TEST_VIRT_CONTROLLER=1
export CRYPTOPASS_TEST_VIRT_CONTROLLER_URL=https://127.0.0.1:$P_VC
export CRYPTOPASS_TEST_VIRT_CONTROLLER_CA=$STATE/virt-controller.crt
export PATH=$TB/bin:\$PATH
EOF
mv -f "$STATE/env.tmp" "$STATE/env"
ok=1
tb_say "up in $(($(tb_now_ms) - T_START)) ms: $SERVER (Kubernetes $(kube-apiserver --version | sed 's/^Kubernetes //'))"
tb_say "  source $STATE/env"
