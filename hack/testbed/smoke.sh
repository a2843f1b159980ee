#!/usr/bin/env bash
# Smoke check of a running test bed (hack/testbed/up.sh STATE_DIR): TLS with the real CA, token
# authentication, RBAC, the KubeVirt CRDs, virt-controller (leading, with kubevirt's least-privilege
# RBAC), and a fake s390x Node created and deleted by the admin.
#
# Usage: hack/testbed/smoke.sh STATE_DIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

(($# == 1)) || tb_die "usage: $0 STATE_DIR"
STATE=$(tb_abs "$1")
[[ -f $STATE/env ]] || tb_die "no test bed in $STATE (run hack/testbed/up.sh $STATE)"
# shellcheck source=/dev/null
source "$STATE/env"
t0=$(tb_now_ms)
fail() { tb_die "smoke: $*"; }
pass() { tb_say "smoke: ok: $*"; }
k() { kubectl --request-timeout=10s "$@"; }

# TLS + token: the admin kubeconfig verifies the server against the CA from the apiserver's cert dir.
[[ $(k get --raw /readyz) == ok ]] || fail "/readyz is not ok"
pass "/readyz over TLS (CA $CRYPTOPASS_TEST_CA) with the admin token"
# ... and the server is not trusted without that CA.
if out=$(kubectl --kubeconfig=/dev/null --server="$CRYPTOPASS_TEST_APISERVER" --token=x --request-timeout=5s \
    get --raw /readyz 2>&1); then
    fail "the apiserver was trusted without its CA: $out"
fi
grep -q 'certificate' <<<"$out" || fail "expected a certificate error without the CA, got: $out"
pass "without the CA the client refuses the server's certificate"
# Token authentication is enforced: an unknown token is refused.
if out=$(k --token=not-a-valid-token get namespaces 2>&1); then fail "an unknown token was accepted"; fi
grep -q 'Unauthorized\|must be logged in' <<<"$out" || fail "expected Unauthorized for an unknown token, got: $out"
pass "an unknown token is Unauthorized"

# The KubeVirt CRDs.
for crd in virtualmachineinstancemigrations virtualmachineinstances virtualmachines kubevirts; do
    [[ $(k get crd "$crd.kubevirt.io" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}') == True ]] ||
        fail "CRD $crd.kubevirt.io is not Established"
done
k get namespace kubevirt >/dev/null || fail "namespace kubevirt is missing"
pass "KubeVirt CRDs (vmim, vmi, vm, kubevirt) Established; namespace kubevirt"

# RBAC: the admin (system:masters) may create nodes; the scheduler's identity may not.
[[ $(k auth can-i create nodes 2>/dev/null) == yes ]] || fail "admin cannot create nodes"
[[ $(k auth can-i create nodes --as=system:kube-scheduler 2>/dev/null || true) == no ]] ||
    fail "system:kube-scheduler may create nodes: RBAC is not in force"
pass "RBAC: admin may create nodes, system:kube-scheduler may not"

# KubeVirt's virt-controller: leads (GET /leader over TLS, verified against its certificate), holds its
# Lease in kubevirt, and runs as its ServiceAccount with kubevirt's roles: it may create pods and
# patch VMIs, but not delete nodes or read secrets outside kubevirt.
[[ ${CRYPTOPASS_TEST_VIRT_CONTROLLER:-} == 1 ]] || fail "CRYPTOPASS_TEST_VIRT_CONTROLLER is not 1 in $STATE/env"
tb_virt_controller_leader "$STATE" >/dev/null || fail "virt-controller does not lead ($CRYPTOPASS_TEST_VIRT_CONTROLLER_URL/leader)"
[[ -n $(k -n kubevirt get lease virt-controller -o jsonpath='{.spec.holderIdentity}') ]] ||
    fail "virt-controller holds no Lease kubevirt/virt-controller"
vc=system:serviceaccount:kubevirt:kubevirt-controller
[[ $(k auth can-i create pods --as="$vc" -A 2>/dev/null) == yes ]] || fail "$vc may not create pods"
[[ $(k auth can-i patch virtualmachineinstances.kubevirt.io --as="$vc" -A 2>/dev/null) == yes ]] ||
    fail "$vc may not patch VMIs"
[[ $(k auth can-i delete nodes --as="$vc" 2>/dev/null || true) == no ]] || fail "$vc may delete nodes: not least privilege"
[[ $(k auth can-i get secrets -n default --as="$vc" 2>/dev/null || true) == no ]] ||
    fail "$vc may read secrets in default: not least privilege"
tb_virt_controller_confined >/dev/null || fail "virt-controller may write in namespace default (virt-controller-scope.yaml)"
pass "virt-controller leads over TLS as $vc (RBAC: creates pods, patches VMIs; no node deletes, no secrets outside kubevirt; no writes in namespaces that do not opt in)"

# A service account's token (signed with the test bed's key) authenticates, and RBAC limits it.
ns=smoke-$$-$RANDOM
node=smoke-s390x-$$-$RANDOM
cleanup() {
    k delete node "$node" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
k create namespace "$ns" >/dev/null
k -n "$ns" create serviceaccount smoke >/dev/null
sa_token=$(k -n "$ns" create token smoke --duration=10m)
[[ $(k --token="$sa_token" auth whoami -o jsonpath='{.status.userInfo.username}') == "system:serviceaccount:$ns:smoke" ]] ||
    fail "the service-account token does not authenticate as system:serviceaccount:$ns:smoke"
if out=$(k --token="$sa_token" get nodes 2>&1); then fail "a bare service account may list nodes"; fi
grep -q 'Forbidden\|forbidden' <<<"$out" || fail "expected Forbidden for the service account, got: $out"
pass "a service-account token authenticates and is Forbidden to list nodes"

# A fake s390x node: create, read back, delete.
k apply --server-side --field-manager=cryptopass-smoke -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels:
    kubernetes.io/arch: s390x
    kubernetes.io/os: linux
    kubernetes.io/hostname: $node
EOF
[[ $(k get node "$node" -o jsonpath='{.metadata.labels.kubernetes\.io/arch}') == s390x ]] ||
    fail "node $node does not carry kubernetes.io/arch=s390x"
k get nodes -l "kubernetes.io/arch=s390x,kubernetes.io/hostname=$node" -o name | grep -qx "node/$node" ||
    fail "node $node is not selected by its labels"
k delete node "$node" --wait=true >/dev/null
if k get node "$node" >/dev/null 2>&1; then fail "node $node still exists after delete"; fi
pass "fake s390x node $node created, selected by its labels and deleted"
tb_say "smoke: all checks passed in $(($(tb_now_ms) - t0)) ms"
