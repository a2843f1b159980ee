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
wait_for() { # what command args… — polls the command (0.2 s) for up to 120 s, prints its output
    local what=$1 out; shift
    for _ in $(seq 600); do out=$("$@" 2>/dev/null) && [[ -n $out ]] && { echo "$out"; return 0; }; sleep 0.2; done
    die "timed out waiting for $what (logs in $DEMO)"
}
bound_pod() { k -n default get pods -l "$1" -o jsonpath='{range .items[?(@.spec.nodeName)]}{.metadata.name}{"\n"}{end}' | head -n1; }
vmi_phase() { [[ $(k -n default get vmi crypto-vm -o jsonpath='{.status.phase}') == "$1" ]] && echo "$1"; }
vmim_phase() { [[ $(k -n default get vmim "$1" -o jsonpath='{.status.phase}') == "$2" ]] && echo "$2"; }
last_outcome() { [[ $(k -n default get cpt crypto-vm -o jsonpath='{.status.lastMigration.outcome}') == "$1" ]] && echo "$1"; }
cpt_active() { [[ $(k -n default get cpt crypto-vm -o jsonpath='{.status.activeNode}') == "$1" ]] && echo "$1"; }
# The kubelet's part (no kubelet here): a pod's status Running or Succeeded, every container alike.
kubelet_pod() { # pod Running|Succeeded
    k -n default get pod "$1" -o json | python3 -c '
import json, sys, datetime
pod, phase = json.load(sys.stdin), sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
up = phase == "Running"
def st(c):
    state = {"running": {"startedAt": now}} if up else {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
    return {"name": c["name"], "ready": up, "started": up, "restartCount": 0, "image": c.get("image", ""), "imageID": "", "state": state}
spec = pod["spec"]
ours = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
conds = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] not in ours]
conds += [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]
conds += [{"type": t, "status": "True" if up else "False", "lastTransitionTime": now} for t in ours[1:]]
status = {"phase": phase, "conditions": conds, "hostIP": "127.0.0.1", "podIP": "10.244.0.2", "podIPs": [{"ip": "10.244.0.2"}],
          "startTime": now, "containerStatuses": [st(c) for c in spec["containers"]],
          "initContainerStatuses": [st(c) for c in spec.get("initContainers", [])]}
print(json.dumps({"status": status}))' "$2" >"$DEMO/pod-status.json"
    k -n default patch pod "$1" --subresource=status --type=merge --patch-file "$DEMO/pod-status.json" >/dev/null
}

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
  labels: {kubernetes.io/arch: s390x, kubernetes.io/os: linux, kubernetes.io/hostname: $node,
           kubevirt.io/schedulable: "$([[ $node == z16-a ]] && echo true || echo false)"}
YAML
    # What a kubelet and virt-handler would report: Ready, capacity incl. KubeVirt's device plugins.
    res='{"cpu":"8","memory":"32Gi","pods":"110","ephemeral-storage":"100Gi","devices.kubevirt.io/kvm":"1k","devices.kubevirt.io/tun":"1k","devices.kubevirt.io/vhost-net":"1k"}'
    k patch node "$node" --subresource=status --type=merge -p \
        "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Demo\",\"message\":\"simulated\"}],\"capacity\":$res,\"allocatable\":$res}}" >/dev/null
    k patch node "$node" --type=merge -p '{"spec":{"taints":null}}' >/dev/null  # no kubelet lifts not-ready
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

say "a sample VM, started by KubeVirt's virt-controller on z16-a (the demo plays kubelet and virt-handler)"
# The test bed's virt-controller writes only in namespaces that opt in (hack/testbed/virt-controller-scope.yaml).
k label namespace default cryptopass-test/virt-controller=true --overwrite >/dev/null
k apply -f "$ROOT/deploy/examples/vm.yaml" >/dev/null
vmi_uid=$(k -n default get vmi crypto-vm -o jsonpath='{.metadata.uid}')
launcher=$(wait_for "the virt-launcher pod to be bound" bound_pod "kubevirt.io/created-by=$vmi_uid,!kubevirt.io/migrationJobUID")
kubelet_pod "$launcher" Running
wait_for "virt-controller to schedule the VMI" vmi_phase Scheduled >/dev/null
k -n default patch vmi crypto-vm --type=merge -p \
    '{"status":{"phase":"Running","migrationMethod":"LiveMigration","selinuxContext":"none","conditions":[{"type":"Ready","status":"True"},{"type":"LiveMigratable","status":"True"}]}}' >/dev/null
echo "  vmi/crypto-vm Running on $(k -n default get vmi crypto-vm -o jsonpath='{.status.nodeName}') (pod $launcher)"
for node in z16-b z15-a; do k label node "$node" kubevirt.io/schedulable=true --overwrite >/dev/null; done
k apply -f "$ROOT/deploy/examples/passthrough.yaml" >/dev/null
say "waiting for the passthrough to be Ready"
k -n default wait --for=condition=Ready cpt/crypto-vm --timeout=180s || {
    k -n default get cpt crypto-vm -o yaml; die "not Ready (logs in $DEMO)"; }
k -n default wait --for=condition=MigrationReady cpt/crypto-vm --timeout=120s >/dev/null || {
    k -n default get cpt crypto-vm -o yaml; die "no prepared compatible standby (logs in $DEMO)"; }

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
say "a migration without a destination is admitted and steered to a prepared compatible node"
vmim crypto-vm-migration >/dev/null
echo "  addedNodeSelector of vmim/crypto-vm-migration: $(k -n default get vmim crypto-vm-migration -o jsonpath='{.spec.addedNodeSelector}')"
echo "  nodes with that label: $(k get nodes -l "crypto.s390x.dev/prepared-$uuid=true" -o jsonpath='{.items[*].metadata.name}')"
vmim_uid=$(k -n default get vmim crypto-vm-migration -o jsonpath='{.metadata.uid}')
target=$(wait_for "the target pod to be bound" bound_pod "kubevirt.io/migrationJobUID=$vmim_uid")
target_node=$(k -n default get pod "$target" -o jsonpath='{.spec.nodeName}')
echo "  virt-controller's target pod $target: bound by kube-scheduler to $target_node (z15-a is free but not prepared)"
say "the migration runs (the demo plays virt-handler's handshake) and the VM moves to $target_node"
kubelet_pod "$target" Running
wait_for "the VMIM to prepare its target" vmim_phase crypto-vm-migration PreparingTarget >/dev/null
vpatch() { k -n default patch vmi crypto-vm --type=merge -p "$1" >/dev/null; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
vpatch '{"status":{"migrationState":{"targetNodeAddress":"127.0.0.1","targetDirectMigrationNodePorts":{"49152":0}}}}'
wait_for "TargetReady" vmim_phase crypto-vm-migration TargetReady >/dev/null
vpatch "{\"status\":{\"migrationState\":{\"startTimestamp\":\"$(now)\"}}}"
wait_for "Running" vmim_phase crypto-vm-migration Running >/dev/null
vpatch "{\"metadata\":{\"labels\":{\"kubevirt.io/nodeName\":\"$target_node\"}},\"status\":{\"nodeName\":\"$target_node\",\"migrationState\":{\"completed\":true,\"endTimestamp\":\"$(now)\"}}}"
wait_for "the VMIM to succeed" vmim_phase crypto-vm-migration Succeeded >/dev/null
kubelet_pod "$launcher" Succeeded
wait_for "the passthrough's active node to follow the VM" cpt_active "$target_node" >/dev/null
echo "  vmim/crypto-vm-migration Succeeded; cpt/crypto-vm active on $(k -n default get cpt crypto-vm -o jsonpath='{.status.activeNode}')"
wait_for "the passthrough to record the migration" last_outcome Succeeded >/dev/null
echo "  status.lastMigration: $(k -n default get cpt crypto-vm -o jsonpath='{.status.lastMigration}')"
k -n default get cpt crypto-vm -o wide

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
