#!/usr/bin/env bash
# Scale benchmark (issue 5 item 7; not a test): N passthroughs over M simulated s390x nodes on a
# real local control plane. Measures the time until every CryptoPassthrough is Ready=True, the
# controller's peak RSS (VmHWM) and the API requests per passthrough (apiserver_request_total
# before/after). Goals: < 60 s, <= 50 MiB. Prints the figures and writes hack/bench-scale/RESULTS.md.
#
# Usage: hack/bench-scale/run.sh            (NODES=100 PER_NODE=10: 1,000 passthroughs)
# Env:   NODES, PER_NODE (at most 10), TIMEOUT (s, default 600), FLEET_RESCAN (s, default 60),
#        FLEET_PASS_MS (least ms between two passes of one agent; default: the agent's), MACHINE (default z16-cca),
#        PROFILE=release|debug (which build of cryptopass, default release), CRYPTOPASS_BIN (use this
#        binary instead of building one), RESULTS (file, or "-"
#        for none), KEEP=1 (leave everything running and print where).
#
# Layout. Every node is a copy of MACHINE (four CEX8 adapters 0-3, domains 0x40-0x54 for vfio_ap).
# Node i carries the labels bench.cryptopass.dev/g<i> and bench.cryptopass.dev/g<i-1 mod M>; the
# PER_NODE passthroughs of group i select g<i>, so their candidates are nodes i and i+1 only.
# Passthrough k of group i: VMI running on node i, adapter (i mod 2), usage and control domain
# 0x40+k, standby 1 (-> node i+1). A node holds its own group's mdevs (adapter i mod 2) and the
# standbys of group i-1 (the other adapter): APQNs are distinct per node, no Conflict by design.
# M must be even for the wrap-around (group M-1 on node 0) to keep the adapters apart.
#
# Processes. The agents of all nodes run in ONE process, `cryptopass agent-fleet` (hidden): one
# in-process simulator FUSE-mounted per node and one unchanged agent loop per node, each with its
# own CryptoNode, Lease and state dir. The fleet uses the ADMIN kubeconfig (per-node least-privilege
# tokens are what the integration tests and the demo use). The controller runs as in the demo: its
# own process, its own ServiceAccount token and the deploy/ RBAC.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NODES=${NODES:-100}
PER_NODE=${PER_NODE:-10}
TIMEOUT=${TIMEOUT:-600}
MACHINE=${MACHINE:-$ROOT/hack/machines/z16-cca.yaml}
PROFILE=${PROFILE:-release}
# The agents' periodic re-scan (spec changes are applied at once): at the agent's default of 5 s, 100
# simulated hosts re-read their whole AP tree 20 times a second, which alone saturates 2 cores.
FLEET_RESCAN=${FLEET_RESCAN:-60}
# The least time between two passes of one agent (empty: the agent's default, 1 s).
FLEET_PASS_MS=${FLEET_PASS_MS:-}
RESULTS=${RESULTS:-$ROOT/hack/bench-scale/RESULTS.md}
TOTAL=$((NODES * PER_NODE))
NS=cryptopass
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'bench-scale: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 && -c /dev/fuse ]] || die "needs root and /dev/fuse (the simulated nodes are FUSE mounts)"
((PER_NODE >= 1 && PER_NODE <= 10)) || die "PER_NODE must be 1..10 (domains 0x40-0x49)"
((NODES >= 2 && NODES % 2 == 0)) || die "NODES must be even and >= 2 (see Layout)"

say "building cryptopass ($PROFILE) and the test bed (cached)"
if [[ -n ${CRYPTOPASS_BIN:-} ]]; then
    BIN=$CRYPTOPASS_BIN # a binary built before (e.g. of another commit, to compare)
elif [[ $PROFILE == release ]]; then
    (cd "$ROOT" && cargo build --quiet --release --bin cryptopass)
    BIN=$ROOT/target/$PROFILE/cryptopass
else
    (cd "$ROOT" && cargo build --quiet --bin cryptopass)
    BIN=$ROOT/target/$PROFILE/cryptopass
fi
bash "$ROOT/hack/testbed/build.sh" >&2

WORK=$(mktemp -d /tmp/cryptopass-bench.XXXXXX)
FLEET_PID= CTRL_PID=
cleanup() {
    local rc=$?
    if [[ ${KEEP:-0} == 1 && $rc == 0 ]]; then
        say "kept running: source $WORK/cp/env; fleet pid $FLEET_PID, controller pid $CTRL_PID"
        return
    fi
    [[ -n $CTRL_PID ]] && kill "$CTRL_PID" 2>/dev/null || true
    if [[ -n $FLEET_PID ]]; then
        kill "$FLEET_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$FLEET_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$FLEET_PID" 2>/dev/null || true
    fi
    # Mounts a killed fleet left behind.
    grep -o " $WORK/fleet/[^ ]*/sys " /proc/mounts 2>/dev/null | while read -r m; do umount -l "$m" || true; done
    bash "$ROOT/hack/testbed/down.sh" "$WORK/cp" >/dev/null 2>&1 || true
    if ((rc != 0)); then
        mkdir -p /tmp/cryptopass-bench-logs
        cp "$WORK"/*.log /tmp/cryptopass-bench-logs/ 2>/dev/null || true
        say "failed: logs copied to /tmp/cryptopass-bench-logs"
    fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "control plane in $WORK/cp"
bash "$ROOT/hack/testbed/up.sh" "$WORK/cp" >&2
# shellcheck source=/dev/null
source "$WORK/cp/env"
k() { kubectl --request-timeout=60s "$@"; }
k apply --server-side -f "$ROOT/crds/" >/dev/null
k wait --for=condition=Established crd/cryptopassthroughs.crypto.s390x.dev crd/cryptonodes.crypto.s390x.dev >/dev/null
k apply --server-side -f "$ROOT/deploy/namespace.yaml" >/dev/null
k apply --server-side -f "$ROOT/deploy/rbac-agent.yaml" -f "$ROOT/deploy/rbac-controller.yaml" >/dev/null

say "$NODES fake s390x Nodes"
python3 "$ROOT/hack/bench-scale/gen.py" nodes "$NODES" >"$WORK/nodes.yaml"
python3 "$ROOT/hack/bench-scale/gen.py" node-status "$NODES" >"$WORK/node-status.yaml"
k apply --server-side -f "$WORK/nodes.yaml" >/dev/null
k apply --server-side --subresource=status -f "$WORK/node-status.yaml" >/dev/null

say "the agent fleet ($NODES simulated $(basename "$MACHINE" .yaml) hosts, one process) and the controller"
mkdir -p "$WORK/fleet"
setsid "$BIN" agent-fleet --count "$NODES" --prefix bench- --machine "$MACHINE" --work-dir "$WORK/fleet" \
    --kubeconfig "$KUBECONFIG" --namespace $NS --rescan-seconds "$FLEET_RESCAN" \
    ${FLEET_PASS_MS:+--pass-interval-ms "$FLEET_PASS_MS"} >"$WORK/fleet.log" 2>&1 &
FLEET_PID=$!
kc=$WORK/controller.kubeconfig
kubectl config view --raw --minify >"$kc"
kubectl --kubeconfig "$kc" config set-credentials bench-controller \
    --token="$(k -n $NS create token cryptopass-controller --duration 24h)" >/dev/null
kubectl --kubeconfig "$kc" config set-context --current --user=bench-controller >/dev/null
CTRL_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid "$BIN" controller --kubeconfig "$kc" --namespace $NS --metrics-addr "127.0.0.1:$CTRL_PORT" \
    >"$WORK/controller.log" 2>&1 &
CTRL_PID=$!

# All agents reporting (a CryptoNode with status per node) and the controller's caches synced.
deadline=$((SECONDS + 180))
while :; do
    n=$(k get cnode -o jsonpath='{range .items[?(@.status.observedGeneration)]}x{end}' 2>/dev/null | wc -c)
    ready=$(curl -fs "http://127.0.0.1:$CTRL_PORT/readyz" 2>/dev/null || true)
    ((n >= NODES)) && [[ -n $ready ]] && break
    kill -0 "$FLEET_PID" 2>/dev/null || die "the agent fleet exited (see fleet.log)"
    kill -0 "$CTRL_PID" 2>/dev/null || die "the controller exited (see controller.log)"
    ((SECONDS < deadline)) || die "after 180 s: $n/$NODES CryptoNodes reported, controller readyz '${ready}'"
    sleep 1
done
say "$NODES CryptoNodes reported, controller ready"

say "$TOTAL VMIs, Running on their nodes (status written as virt-handler would)"
python3 "$ROOT/hack/bench-scale/gen.py" vmis "$NODES" "$PER_NODE" >"$WORK/vmis.yaml"
k apply --server-side -f "$WORK/vmis.yaml" >/dev/null
sleep 2 # let the controller see the VMIs before the baseline

metrics() { k get --raw /metrics | python3 "$ROOT/hack/bench-scale/gen.py" requests; }
metrics >"$WORK/req.before"
LOAD_START=$(uptime | sed 's/.*load average/load average/')
say "creating $TOTAL CryptoPassthroughs (8 parallel kubectl create)"
python3 "$ROOT/hack/bench-scale/gen.py" passthroughs "$NODES" "$PER_NODE" "$WORK/cpt"
T0=$(date +%s.%N)
ls "$WORK"/cpt/*.yaml | xargs -P 8 -I{} kubectl --request-timeout=60s create -f {} >/dev/null
T_CREATED=$(date +%s.%N)
say "created in $(python3 -c "print(f'{$T_CREATED-$T0:.1f}')") s; waiting for Ready=True on all"
rss_peak=0
while :; do
    ready=$(k get cpt -A -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' | grep -c '^True$' || true)
    rss=$(awk '/VmRSS/{print $2}' "/proc/$CTRL_PID/status" 2>/dev/null || echo 0)
    ((rss > rss_peak)) && rss_peak=$rss
    T_NOW=$(date +%s.%N)
    printf '  %6.1f s  Ready %4d/%d  controller RSS %d MiB\n' "$(python3 -c "print($T_NOW-$T0)")" "$ready" "$TOTAL" $((rss / 1024)) >&2
    ((ready >= TOTAL)) && break
    kill -0 "$CTRL_PID" 2>/dev/null || die "the controller exited (see controller.log)"
    kill -0 "$FLEET_PID" 2>/dev/null || die "the agent fleet exited (see fleet.log)"
    if python3 -c "import sys; sys.exit(0 if $T_NOW-$T0 > $TIMEOUT else 1)"; then
        say "not all Ready after ${TIMEOUT} s: reporting what was measured"
        k get cpt -A -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status} {.reason}{"\n"}{end}{end}' |
            sort | uniq -c >&2 || true
        break
    fi
    sleep 1
done
T_READY=$(date +%s.%N)
metrics >"$WORK/req.after"
hwm=$(awk '/VmHWM/{print $2}' "/proc/$CTRL_PID/status")
cnode_bytes=$(k get cnode bench-0 -o json | wc -c)
ctl_metrics=$(curl -fs "http://127.0.0.1:$CTRL_PORT/metrics" | grep -E '^cryptopass_reconcile(_errors)?_total|^cryptopass_reconcile_duration_seconds_(sum|count)' || true)
fleet_hwm=$(awk '/VmHWM/{print $2}' "/proc/$FLEET_PID/status")
ctl_cpu=$(awk '{print ($14+$15)/100}' "/proc/$CTRL_PID/stat")
fleet_cpu=$(awk '{print ($14+$15)/100}' "/proc/$FLEET_PID/stat")
api_cpu=$(awk '{print ($14+$15)/100}' "/proc/$(cat "$WORK/cp/kube-apiserver.pid")/stat" 2>/dev/null || echo '?')

report=$(python3 "$ROOT/hack/bench-scale/gen.py" report "$WORK/req.before" "$WORK/req.after" "$TOTAL" \
    "$T0" "$T_CREATED" "$T_READY" "$hwm" "$rss_peak" "$fleet_hwm" "$ctl_cpu" "$fleet_cpu" "$api_cpu" \
    "$NODES" "$PER_NODE" "$PROFILE" "$(basename "$MACHINE")" "$ready" "$(uptime | sed 's/.*load average/load average/')" "$FLEET_RESCAN" \
    "$LOAD_START" "$FLEET_PASS_MS" "$cnode_bytes")
{
    echo "$report"
    echo
    echo "Controller metrics at the end:"
    echo '```'
    echo "${ctl_metrics:-(none)}"
    echo '```'
} >"$WORK/report.md"
cat "$WORK/report.md"
if [[ $RESULTS != - ]]; then
    cp "$WORK/report.md" "$RESULTS"
    say "written to $RESULTS"
fi
((ready >= TOTAL)) || exit 3
