#!/usr/bin/env bash
# Admission benchmark of the migration gate (issue 6 item 9; testbed.md, "Measuring admission
# latency"; not a test): VMIMs through the real kube-apiserver with dryRun=All at a fixed rate, for a
# VMI with a passthrough and one without, without and with our webhook configurations, the cluster
# holding PASSTHROUGHS passthroughs; plus the handler's own latency (its histogram, and in process).
# Goals: handler p99 < 200 µs, added p99 < 2 ms at 100 requests/s.
#
# Usage: hack/bench-admission/run.sh
# Env:   RATE (requests/s, default 100), DURATION (s per series, default 15), PASSTHROUGHS (default 1000),
#        RESULTS (file, default hack/bench-admission/RESULTS.md; "-" for none).
# Uses the control plane of CRYPTOPASS_TEST_KUBECONFIG when set, else starts one of its own (and stops it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RESULTS=${RESULTS:-$ROOT/hack/bench-admission/RESULTS.md}
export RATE=${RATE:-100} DURATION=${DURATION:-15} PASSTHROUGHS=${PASSTHROUGHS:-1000}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

STATE=
if [[ -z ${CRYPTOPASS_TEST_KUBECONFIG:-} ]]; then
    bash "$ROOT/hack/testbed/build.sh" >&2
    STATE=$(mktemp -d /tmp/cryptopass-bench-admission.XXXXXX)
    trap 'bash "$ROOT/hack/testbed/down.sh" "$STATE" >/dev/null 2>&1 || true; rm -rf "$STATE"' EXIT
    say "starting a control plane in $STATE"
    bash "$ROOT/hack/testbed/up.sh" "$STATE" >&2
    # shellcheck source=/dev/null
    source "$STATE/env"
fi

say "cargo bench --bench admission (RATE=$RATE DURATION=$DURATION PASSTHROUGHS=$PASSTHROUGHS)"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(mktemp)
(cd "$ROOT" && cargo bench --quiet --bench admission) | tee "$out"
if [[ $RESULTS != - ]]; then
    {
        echo "# Admission benchmark (hack/bench-admission/run.sh)"
        echo
        echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores (load average before the run: $LOAD), Kubernetes ${CRYPTOPASS_K8S_VERSION:-?}, release build."
        cat "$out"
    } >"$RESULTS"
    say "figures written to $RESULTS"
fi
rm -f "$out"
