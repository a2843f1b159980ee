#!/usr/bin/env bash
# Stops the control plane of STATE_DIR (hack/testbed/up.sh) and removes STATE_DIR.
#
# Usage: hack/testbed/down.sh STATE_DIR
# Stops every process it started: those of the pid files (checked: a stale pid file of a killed run
# may name someone else's process now) and any etcd/kube-* process whose command line names STATE_DIR
# (a run killed before it wrote its pid files). SIGKILL to each process group (or, with
# CRYPTOPASS_TESTBED_GRACEFUL=1, SIGTERM first and SIGKILL after 15 s, in reverse start order); waits
# until they are gone, so that their ports and files are free when it returns.
# Idempotent: nothing running and no STATE_DIR is fine.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

(($# == 1)) || tb_die "usage: $0 STATE_DIR"
STATE=$(tb_abs "$1")
[[ $STATE != / && $STATE != "$HOME" ]] || tb_die "refusing to remove $STATE"

# SIGKILL: the state is removed next, so nothing is gained by a graceful stop (which takes 2-3 s per
# component); CRYPTOPASS_TESTBED_GRACEFUL=1 sends SIGTERM first.
if [[ ${CRYPTOPASS_TESTBED_GRACEFUL:-0} == 1 ]]; then TB_STOP_SIGNAL=TERM; else TB_STOP_SIGNAL=KILL; fi
tb_stop_all "$STATE"
# Refuse to remove anything that does not look like a state dir of ours.
if [[ -d $STATE ]]; then
    if [[ -n $(ls -A "$STATE") && ! -e $STATE/pki && ! -e $STATE/logs && ! -e $STATE/env ]]; then
        tb_die "$STATE does not look like a test-bed state dir (no pki/, logs/ or env): not removing it"
    fi
    rm -rf -- "$STATE"
fi
tb_say "down: $STATE"
