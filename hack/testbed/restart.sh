#!/usr/bin/env bash
# Restarts one component of the control plane of STATE_DIR with the same flags and ports (for tests
# such as "an apiserver restart loses nothing"), and waits until it serves again.
#
# Usage: hack/testbed/restart.sh [--kill] STATE_DIR etcd|kube-apiserver|kube-controller-manager|kube-scheduler|virt-controller
#   default: a graceful stop (SIGTERM; the apiserver takes about 13 s to drain); --kill: SIGKILL, a crash.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

TB_STOP_SIGNAL=TERM
if [[ ${1:-} == --kill ]]; then
    TB_STOP_SIGNAL=KILL
    shift
fi
(($# == 2)) || tb_die "usage: $0 [--kill] STATE_DIR COMPONENT"
STATE=$(tb_abs "$1")
COMP=$2
[[ " ${TB_COMPONENTS[*]} " == *" $COMP "* ]] || tb_die "unknown component '$COMP' (${TB_COMPONENTS[*]})"
[[ -f $STATE/env && -f $STATE/$COMP.args ]] || tb_die "no running test bed in $STATE"
# shellcheck source=/dev/null
source "$STATE/env"

t0=$(tb_now_ms)
pid=$(cat "$STATE/$COMP.pid" 2>/dev/null || true)
if tb_ours "$STATE" "$pid" "$COMP"; then
    tb_stop "$pid"
fi
tb_start "$STATE" "$COMP"
case $COMP in
etcd)
    read -r _ port < <(grep '^etcd-client ' "$STATE/ports")
    tb_wait "$STATE" "etcd" etcd etcdctl --endpoints="http://127.0.0.1:$port" --dial-timeout=1s endpoint health
    ;;
kube-apiserver)
    readyz() { [[ $(kubectl --request-timeout=2s get --raw /readyz 2>&1) == ok ]]; }
    tb_wait "$STATE" "kube-apiserver /readyz" "etcd kube-apiserver" readyz
    ;;
kube-controller-manager | kube-scheduler)
    # No leader election: serving again once the new process (alive: tb_wait checks) answers ok.
    tb_wait "$STATE" "$COMP to serve" "etcd kube-apiserver $COMP" tb_serving "$STATE" "$COMP"
    ;;
virt-controller)
    # Its Lease identity is the hostname: the new process takes the old one's Lease over at once.
    tb_wait "$STATE" "virt-controller to lead" "etcd kube-apiserver $COMP" tb_virt_controller_leader "$STATE"
    ;;
esac
tb_say "$COMP restarted in $(($(tb_now_ms) - t0)) ms"
