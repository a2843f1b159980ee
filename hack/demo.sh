#!/usr/bin/env bash
# make demo: a local control plane with the real KubeVirt CRDs, three simulated s390x nodes (z16-a and
# z16-b equivalent, z15-a with older CEX7 cards), one agent per node and the controller, each with its
# own least-privilege identity; then a sample VM and passthrough, and the migration gate at work (a
# migration to z15-a refused in the kernel's words, one admitted and steered). Leaves everything running;
# `make demo-down` (hack/demo-down.sh) stops it all and unmounts.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${CRYPTOPASS_DEMO_DIR:-$ROOT/.cache/demo}
NS=cryptopass
WEBHOOK_PORT=${CRYPTOPASS_DEMO_WEBHOOK_PORT:-19443}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 && -c /dev/fuse ]] || die "needs root and /dev/fuse (the simulated nodes are FUSE mounts)"

say "building cryptopass and the test bed (cached after the first run)"
(cd "$ROOT" && cargo build --quiet)
BIN=$ROOT/target/debug/cryptopass
bash "$ROOT/hack/testbed/build.sh"
bash "$ROOT/hack/demo-down.sh" >/dev/null 2>&1 || true
mkdir -p "$DEMO"
say "starting the control plane"
bash "$ROOT/hack/testbed/up.sh" "$DEMO/cp"
# shellcheck source=/dev/null
source "$DEMO/cp/env"
k() { kubectl --request-timeout=20s "$@"; }

say "CRDs, namespace, RBAC and the agent's ValidatingAdmissionPolicy"
k apply --server-side -f "$ROOT/crds/" >/dev/null
k wait --for=condition=Established crd/cryptopassthroughs.crypto.s390x.dev crd/cryptonodes.crypto.s390x.dev >/dev/null
k apply --server-side -f "$ROOT/deploy/namespace.yaml" >/dev/null
k apply --server-side -f "$ROOT/deploy/rbac-agent.yaml" -f "$ROOT/deploy/rbac-controller.yaml" -f "$ROOT/deploy/vap-agent.yaml" >/dev/null

# A kubeconfig for one identity: same server and CA as the admin's, another token.
kubeconfig_for() { # name token
    local f=$DEMO/$1.kubeconfig
    kubectl config view --raw --minify >"$f"
    kubectl --kubeconfig "$f" config set-credentials demo-user --token="$2" >/dev/null
    kubectl --kubeconfig "$f" config set-context --current --user=demo-user >/dev/null
    echo "$f"
}

declare -A MACHINE=([z16-a]=z16-cca [z16-b]=z16-b [z15-a]=z15-cex7)
port=19500
for node in z16-a z16-b z15-a; do
    say "node $node: a simulated ${MACHINE[$node]} host and its agent"
    k apply --server-side -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {kubernetes.io/arch: s390x, kubernetes.io/os: linux, kubernetes.io/hostname: $node}
YAML
    k patch node "$node" --subresource=status --type=merge -p \
        '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Demo","message":"simulated"}],"capacity":{"cpu":"8","memory":"32Gi","pods":"110"},"allocatable":{"cpu":"8","memory":"32Gi","pods":"110"}}}' >/dev/null
    # The agent's token is bound to a pod on its node: the ValidatingAdmissionPolicy confines it to that node.
    k apply --server-side -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: cryptopass-agent-$node, namespace: $NS}
spec:
  nodeName: $node
  serviceAccountName: cryptopass-agent
  containers: [{name: agent, image: cryptopass:demo}]
YAML
    token=$(k -n $NS create token cryptopass-agent --bound-object-kind Pod --bound-object-name "cryptopass-agent-$node" --duration 24h)
    kc=$(kubeconfig_for "agent-$node" "$token")
    mkdir -p "$DEMO/$node/sys" "$DEMO/$node/state"
    setsid "$BIN" sim mount --machine "$ROOT/hack/machines/${MACHINE[$node]}.yaml" --control "$DEMO/$node/sim.sock" \
        "$DEMO/$node/sys" >"$DEMO/$node/sim.log" 2>&1 &
    echo $! >"$DEMO/$node/sim.pid"
    for _ in $(seq 100); do [[ -e $DEMO/$node/sys/bus/ap/apmask ]] && break; sleep 0.1; done
    [[ -e $DEMO/$node/sys/bus/ap/apmask ]] || die "the simulator of $node did not come up (see $DEMO/$node/sim.log)"
    port=$((port + 1))
    setsid "$BIN" agent --node-name "$node" --sysfs-root "$DEMO/$node/sys" --state-dir "$DEMO/$node/state" \
        --kubeconfig "$kc" --namespace $NS --metrics-addr "127.0.0.1:$port" >"$DEMO/$node/agent.log" 2>&1 &
    echo $! >"$DEMO/$node/agent.pid"
done

say "the controller (its own identity) serving the migration gate on https://127.0.0.1:$WEBHOOK_PORT"
# A cluster serves the gate behind the Service cryptopass-webhook (deploy/webhooks.yaml); here
# kube-apiserver calls the controller on loopback, with a self-signed certificate mounted as
# --webhook-cert-dir and given to the webhook configurations as their caBundle.
mkdir -p "$DEMO/webhook-tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=cryptopass-webhook \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$DEMO/webhook-tls/tls.key" -out "$DEMO/webhook-tls/tls.crt" 2>/dev/null
k apply --server-side -f "$ROOT/deploy/webhooks.yaml" >/dev/null
ca=$(base64 -w0 <"$DEMO/webhook-tls/tls.crt")
for kind in mutating:mutate validating:validate; do
    k patch "${kind%%:*}webhookconfiguration" "cryptopass-vmim-${kind#*:}" --type=json -p "[{\"op\":\"replace\",
        \"path\":\"/webhooks/0/clientConfig\",\"value\":{\"url\":\"https://127.0.0.1:$WEBHOOK_PORT/${kind#*:}-vmim\",
        \"caBundle\":\"$ca\"}}]" >/dev/null
done
ctoken=$(k -n $NS create token cryptopass-controller --duration 24h)
ckc=$(kubeconfig_for controller "$ctoken")
setsid "$BIN" controller --kubeconfig "$ckc" --namespace $NS --metrics-addr 127.0.0.1:19499 \
    --webhook-addr "127.0.0.1:$WEBHOOK_PORT" --webhook-cert-dir "$DEMO/webhook-tls" >"$DEMO/controller.log" 2>&1 &
echo $! >"$DEMO/controller.pid"

say "a sample VM on z16-a (its status written as virt-handler would) and its passthrough"
k apply -f "$ROOT/deploy/examples/vm.yaml" >/dev/null
k -n default patch vmi crypto-vm --type=merge -p \
    '{"status":{"phase":"Running","nodeName":"z16-a","conditions":[{"type":"Ready","status":"True"},{"type":"LiveMigratable","status":"False","reason":"HostDeviceNotLiveMigratable","message":"VMI uses a host device"}]}}' >/dev/null
k apply -f "$ROOT/deploy/examples/passthrough.yaml" >/dev/null
say "waiting for the passthrough to be Ready"
k -n default wait --for=condition=Ready cpt/crypto-vm --timeout=180s || {
    k -n default get cpt crypto-vm -o yaml; die "not Ready (logs in $DEMO)"; }

k -n default get cpt -o wide
k get cnode -o wide
uuid=$(k -n default get cpt crypto-vm -o jsonpath='{.status.uuid}')
say "the same mdev UUID $uuid on the prepared nodes:"
for node in z16-a z16-b z15-a; do
    if [[ -d $DEMO/$node/sys/devices/vfio_ap/matrix/$uuid ]]; then
        echo "  $node: $(tr '\n' ' ' <"$DEMO/$node/sys/devices/vfio_ap/matrix/$uuid/matrix")"
    else
        echo "  $node: (not prepared)"
    fi
done
say "why z15-a may not receive the VM, in the kernel's words:"
k -n default get cpt crypto-vm -o jsonpath='{range .status.nodes[?(@.name=="z15-a")].reasons[*]}  {.code} {.apqn}: {.message}{"\n"}{end}'

say "the migration gate: a migration to z15-a is refused before anything is copied"
# The leader sends VMIMs of VMIs with a passthrough to the webhooks (matchConditions): wait for it.
for _ in $(seq 100); do
    k get validatingwebhookconfiguration cryptopass-vmim-validate -o jsonpath='{.webhooks[0].matchConditions[0].expression}' |
        grep -q "default/crypto-vm" && break
    sleep 0.1
done
vmim() { # name [addedNodeSelector JSON]
    k -n default create -f - <<YAML
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceMigration
metadata: {name: $1, namespace: default}
spec: {vmiName: crypto-vm${2:+, addedNodeSelector: $2}}
YAML
}
if out=$(vmim crypto-vm-to-z15 '{"kubernetes.io/hostname": "z15-a"}' 2>&1); then
    die "the migration to z15-a was admitted: $out"
fi
out=${out#*denied the request: }
echo "  refused by vmim.validate.crypto.s390x.dev: $out" | fold -s -w 120
say "a migration without a destination is admitted and steered to the prepared compatible nodes"
vmim crypto-vm-migration >/dev/null
echo "  addedNodeSelector of vmim/crypto-vm-migration: $(k -n default get vmim crypto-vm-migration -o jsonpath='{.spec.addedNodeSelector}')"
echo "  nodes with that label: $(k get nodes -l "crypto.s390x.dev/prepared-$uuid=true" -o jsonpath='{.items[*].metadata.name}')"
k -n default delete vmim crypto-vm-migration >/dev/null

cat <<MSG

The demo keeps running. Explore it with:
  export KUBECONFIG=$DEMO/cp/admin.kubeconfig
  kubectl get cpt,cnode -o wide
  kubectl get cpt crypto-vm -o yaml
  $BIN inventory --sysfs-root $DEMO/z16-a/sys
  $BIN check --source $DEMO/z16-a/sys --target $DEMO/z15-a/sys --uuid $uuid
  kubectl create -f - <<<'{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstanceMigration","metadata":{"generateName":"m-","namespace":"default"},"spec":{"vmiName":"crypto-vm"}}'
  $BIN sim ctl --control $DEMO/z16-b/sim.sock '{"op":"card","id":1,"rawType":13}'   # age a card on z16-b
Logs: $DEMO/*.log and $DEMO/<node>/*.log.   Stop everything: make demo-down
MSG
