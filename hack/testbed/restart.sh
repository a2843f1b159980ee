#!/usr/bin/env bash
# Restarts one component of the control plane of STATE_DIR with the same flags and ports (for tests
# such as "an apiserver restart loses nothing"), and waits until it serves again.
#
# Usage: hack/testbed/restart.sh [--kill] STATE_DIR etcd|kube-apiserver|kube-controller-manager|kube-scheduler
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

lease_holder() { kubectl --request-timeout=2s -n kube-system get lease "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
t0=$(tb_now_ms)
old_holder=
case $COMP in kube-controller-manager | kube-scheduler) old_holder=$(lease_holder "$COMP" || true) ;; esac
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
*)
    # No serving port (--secure-port=0): serving again once the new process holds the leader Lease
    # (after the old one's lease expires, up to 15 s).
    new_leader() { local h; h=$(lease_holder "$COMP") && [[ -n $h && $h != "$old_holder" ]]; }
    tb_wait "$STATE" "$COMP to take the leader Lease" "etcd kube-apiserver $COMP" new_leader
    ;;
esac
tb_say "$COMP restarted in $(($(tb_now_ms) - t0)) ms"
