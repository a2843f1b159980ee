#!/usr/bin/env bash
# make demo-down: stops the demo's controller, agents and simulators, unmounts, stops the control plane.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${CRYPTOPASS_DEMO_DIR:-$ROOT/.cache/demo}
[[ -d $DEMO ]] || { echo "demo-down: nothing in $DEMO"; exit 0; }
stop() { # pidfile
    local p; p=$(cat "$1" 2>/dev/null) || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
stop "$DEMO/controller.pid"
for d in "$DEMO"/*/; do [[ -f $d/agent.pid ]] && stop "$d/agent.pid"; done
for d in "$DEMO"/*/; do
    [[ -f $d/sim.pid ]] && stop "$d/sim.pid"
    if grep -qs " ${d%/}/sys " /proc/mounts; then umount -l "${d%/}/sys" 2>/dev/null || true; fi
done
[[ -d $DEMO/cp ]] && bash "$ROOT/hack/testbed/down.sh" "$DEMO/cp"
rm -rf "$DEMO"
echo "demo-down: stopped and unmounted"
