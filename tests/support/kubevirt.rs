//! KubeVirt's own virt-controller in the test bed (testbed.md, "KubeVirt's own virt-controller"). No
//! kubelet and no virt-handler run: the test plays them (pod status; VMI status and the migration
//! handshake), and KubeVirt's code does the rest — it renders virt-launcher pods (bound by the real
//! scheduler), moves VMIs to Scheduled on the pod's node, turns a VMIM into a target pod (nodeSelector =
//! `addedNodeSelector` ∪ the VMI's, required anti-affinity to the source node) and drives the VMIM
//! through Pending → Scheduling → Scheduled → PreparingTarget → TargetReady → Running → Succeeded, or
//! to Failed (e.g. an unschedulable target pod after `kubevirt.io/migrationUnschedulablePodTimeoutSeconds`).
//!
//! Isolation: virt-controller writes only in namespaces that opt in (`hack/testbed/virt-controller-scope.yaml`;
//! tests that write VMI status by hand elsewhere stay undisturbed). [`KubeVirt::new`] makes such a
//! namespace and a node "pool" label unique to the test: its nodes ([`KubeVirt::node`]) carry it, its
//! VMIs select it, so parallel tests never land on each other's nodes. All waits poll with the deadline
//! of [`super::eventually`].
//!
//! ```ignore
//! let c = support::cluster().await;
//! let kv = support::KubeVirt::new(&c, "flow").await;
//! let a = kv.node(&c, "a", &[]).await;
//! kv.run_vmi("vm", &VmiOptions::default()).await;           // → Running on `a`
//! let b = kv.node(&c, "b", &[("zone", "x")]).await;
//! let m = kv.migrate("vm", &[("zone", "x")], &[]).await;     // as virt-api after `virtctl migrate`
//! let (_pod, target) = kv.target_pod(&m).await;              // bound by the real scheduler: b
//! kv.complete_migration("vm", &m).await;                     // handshake → Succeeded, VMI on b
//! ```
#![allow(dead_code)]

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::cluster::{Cluster, TestNamespace, cleanup, client_from};
use super::nodes::FakeNode;
use super::{eventually, suffix, unique};

/// `1` in the test bed's env when virt-controller runs (hack/testbed/up.sh).
pub const VIRT_CONTROLLER_ENV: &str = "CRYPTOPASS_TEST_VIRT_CONTROLLER";
/// The namespace label that lets virt-controller write there (hack/testbed/virt-controller-scope.yaml).
pub const OPT_IN_LABEL: &str = "cryptopass-test/virt-controller";
/// The node label of a test's pool (value: [`KubeVirt::pool`]); every VMI of the test selects it.
pub const POOL_LABEL: &str = "cryptopass-test/pool";
/// VMIM annotation: seconds an unschedulable target pod may stay Pending before the VMIM fails (default 300).
pub const UNSCHEDULABLE_TIMEOUT: &str = "kubevirt.io/migrationUnschedulablePodTimeoutSeconds";
/// The VMI label virt-controller and virt-handler keep equal to `status.nodeName`.
pub const NODE_NAME_LABEL: &str = "kubevirt.io/nodeName";
/// The label of a migration's target pod: the VMIM's uid.
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";
/// The label of every virt-launcher pod: the VMI's uid.
pub const CREATED_BY_LABEL: &str = "kubevirt.io/created-by";
/// Reason of a `LiveMigratable` False condition for a VMI with host devices (e.g. our AP mdevs).
pub const HOST_DEVICE_NOT_LIVE_MIGRATABLE: &str = "HostDeviceNotLiveMigratable";

pub fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    )
}

pub fn vmim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstanceMigration"),
        "virtualmachineinstancemigrations",
    )
}

/// What a VMI looks like beyond the defaults (s390x, 1 GiB, the pool's node selector).
#[derive(Clone, Debug, Default)]
pub struct VmiOptions {
    /// Extra `spec.nodeSelector` entries.
    pub node_selector: Vec<(String, String)>,
    /// `spec.evictionStrategy` (e.g. `LiveMigrate`); unset by default.
    pub eviction_strategy: Option<String>,
    /// Extra `metadata.labels`.
    pub labels: Vec<(String, String)>,
    /// `Some(reason)`: virt-handler reports `LiveMigratable` False with this reason (e.g.
    /// [`HOST_DEVICE_NOT_LIVE_MIGRATABLE`]); `None`: True.
    pub not_live_migratable: Option<String>,
    /// Merged (JSON merge patch) into the VMI's `spec` last, e.g.
    /// `{"domain": {"devices": {"hostDevices": [...]}}}`.
    pub extra_spec: Option<Value>,
}

impl VmiOptions {
    pub fn selector(mut self, key: &str, value: &str) -> Self {
        self.node_selector.push((key.into(), value.into()));
        self
    }
    pub fn eviction(mut self, strategy: &str) -> Self {
        self.eviction_strategy = Some(strategy.into());
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }
    pub fn not_live_migratable(mut self, reason: &str) -> Self {
        self.not_live_migratable = Some(reason.into());
        self
    }
    pub fn spec(mut self, extra: Value) -> Self {
        self.extra_spec = Some(extra);
        self
    }
}

/// One test's corner of KubeVirt: a namespace virt-controller acts in and a node pool of its own.
/// Dropping it force-deletes the namespace's pods (no kubelet finishes them), then the namespace.
pub struct KubeVirt {
    pub ns: TestNamespace,
    /// The value of [`POOL_LABEL`] on this test's nodes.
    pub pool: String,
    pub client: Client,
    kubeconfig: PathBuf,
}

impl KubeVirt {
    /// A namespace labelled [`OPT_IN_LABEL`] (waits until virt-controller may write there) and a fresh pool.
    /// Panics (never skips) when the test bed runs no virt-controller.
    pub async fn new(c: &Cluster, prefix: &str) -> KubeVirt {
        if std::env::var(VIRT_CONTROLLER_ENV).as_deref() != Ok("1") {
            panic!(
                "{VIRT_CONTROLLER_ENV} is not 1: these tests need KubeVirt's virt-controller of the test bed \
                 (hack/testbed/up.sh starts it; `source STATE/env`)"
            );
        }
        let ns = TestNamespace::create(c, prefix).await;
        let patch = json!({"metadata": {"labels": {OPT_IN_LABEL: "true"}}});
        Api::<Namespace>::all(c.client.clone())
            .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("labelling namespace {}: {e}", ns.name));
        wait_opted_in(&ns.name).await;
        KubeVirt { pool: unique(prefix), client: c.client.clone(), kubeconfig: c.kubeconfig.clone(), ns }
    }

    pub fn namespace(&self) -> &str {
        &self.ns.name
    }

    /// The pool's node label: a node made elsewhere (e.g. `FakeNode::create_with_labels` for a
    /// `SimAgent`) joins the pool with it and `FakeNode::untaint`.
    pub fn pool_label(&self) -> (&'static str, &str) {
        (POOL_LABEL, &self.pool)
    }

    /// A Ready, untainted s390x node of this test's pool, as virt-controller needs it (labels
    /// `kubernetes.io/arch=s390x`, `kubernetes.io/os=linux`, `kubevirt.io/schedulable=true`, capacity
    /// incl. `ephemeral-storage` and `devices.kubevirt.io/{kvm,tun,vhost-net}`), plus `labels`.
    pub async fn node(&self, c: &Cluster, prefix: &str, labels: &[(&str, &str)]) -> FakeNode {
        let mut all: Vec<(&str, &str)> = labels.to_vec();
        all.push((POOL_LABEL, &self.pool));
        let node = FakeNode::create_with_labels(c, prefix, &all).await;
        node.untaint(c).await;
        node
    }

    fn vmis(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), self.namespace(), &vmi_resource())
    }

    fn vmims(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), self.namespace(), &vmim_resource())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    /// A VMI as virt-api would leave it (virt-api defaults `spec.architecture`; here it is s390x),
    /// selecting this test's pool plus `opts.node_selector`.
    pub async fn create_vmi(&self, name: &str, opts: &VmiOptions) -> DynamicObject {
        let mut selector = serde_json::Map::new();
        selector.insert(POOL_LABEL.into(), json!(self.pool));
        for (k, v) in &opts.node_selector {
            selector.insert(k.clone(), json!(v));
        }
        let labels: serde_json::Map<String, Value> = opts.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut spec = json!({
            "architecture": "s390x",
            "nodeSelector": selector,
            "domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}},
        });
        if let Some(s) = &opts.eviction_strategy {
            spec["evictionStrategy"] = json!(s);
        }
        if let Some(extra) = &opts.extra_spec {
            merge(&mut spec, extra);
        }
        let vmi: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": self.namespace(), "labels": labels},
            "spec": spec,
        }))
        .expect("a VMI");
        self.vmis()
            .create(&PostParams::default(), &vmi)
            .await
            .unwrap_or_else(|e| panic!("creating VMI {}/{name}: {e}", self.namespace()))
    }

    pub async fn vmi(&self, name: &str) -> DynamicObject {
        self.vmis().get(name).await.unwrap_or_else(|e| panic!("VMI {}/{name}: {e}", self.namespace()))
    }

    /// `status.phase` and `status.nodeName` of a VMI.
    pub async fn vmi_phase_node(&self, name: &str) -> (Option<String>, Option<String>) {
        let vmi = self.vmi(name).await;
        (str_at(&vmi.data, "/status/phase"), str_at(&vmi.data, "/status/nodeName"))
    }

    /// Polls until the VMI is in `phase` on some node; returns that node.
    pub async fn wait_vmi_phase(&self, name: &str, phase: &str) -> String {
        let what = format!("VMI {}/{name} to be {phase} on a node", self.namespace());
        eventually(&what, || async move {
            match self.vmi_phase_node(name).await {
                (Some(p), Some(n)) if p == phase && !n.is_empty() => Some(n),
                _ => None,
            }
        })
        .await
    }

    /// The VMI's virt-launcher pod (not a migration target) once the scheduler has bound it.
    pub async fn launcher_pod(&self, vmi: &str) -> Pod {
        let uid = self.vmi(vmi).await.uid().expect("a VMI uid");
        let lp = ListParams::default().labels(&format!("{CREATED_BY_LABEL}={uid},!{MIGRATION_JOB_LABEL}"));
        let what = format!("the virt-launcher pod of VMI {}/{vmi} to be bound", self.namespace());
        let (pods, lp) = (self.pods(), &lp);
        eventually(&what, || {
            let pods = pods.clone();
            async move { pods.list(lp).await.ok()?.items.into_iter().find(|p| node_of(p).is_some()) }
        })
        .await
    }

    /// The kubelet's part: the pod is Running, every container started and ready.
    pub async fn kubelet_running(&self, pod: &str) {
        let p = self.pods().get(pod).await.unwrap_or_else(|e| panic!("pod {pod}: {e}"));
        let now = now();
        let spec = p.spec.clone().unwrap_or_default();
        let running = |c: &Container| {
            json!({"name": c.name, "ready": true, "started": true, "restartCount": 0,
                   "image": c.image.clone().unwrap_or_default(), "imageID": "",
                   "state": {"running": {"startedAt": now}}})
        };
        let containers: Vec<Value> = spec.containers.iter().map(running).collect();
        let inits: Vec<Value> = spec.init_containers.iter().flatten().map(running).collect();
        let conditions = pod_conditions(&p, "True", &now);
        let ip = format!("10.244.{}.{}", rand_octet(), rand_octet());
        let status = json!({"status": {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
            "conditions": conditions, "containerStatuses": containers, "initContainerStatuses": inits,
        }});
        self.pods()
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("marking pod {pod} Running: {e}"));
    }

    /// The kubelet's part when the guest has left: the pod Succeeded (every container exited 0).
    pub async fn kubelet_succeeded(&self, pod: &str) {
        let p = self.pods().get(pod).await.unwrap_or_else(|e| panic!("pod {pod}: {e}"));
        let now = now();
        let spec = p.spec.clone().unwrap_or_default();
        let done = |c: &Container| {
            json!({"name": c.name, "ready": false, "started": false, "restartCount": 0,
                   "image": c.image.clone().unwrap_or_default(), "imageID": "",
                   "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}})
        };
        let containers: Vec<Value> = spec.containers.iter().map(done).collect();
        let inits: Vec<Value> = spec.init_containers.iter().flatten().map(done).collect();
        let status = json!({"status": {
            "phase": "Succeeded", "conditions": pod_conditions(&p, "False", &now),
            "containerStatuses": containers, "initContainerStatuses": inits,
        }});
        self.pods()
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("marking pod {pod} Succeeded: {e}"));
    }

    /// virt-handler's part once the domain runs (a plain patch: the VMI has no status subresource):
    /// `phase: Running`, conditions `Ready` and `LiveMigratable` (True, or False with
    /// `opts.not_live_migratable`), `migrationMethod: LiveMigration`, `selinuxContext: "none"`.
    pub async fn handler_running(&self, name: &str, opts: &VmiOptions) {
        let now = now();
        let migratable = match &opts.not_live_migratable {
            None => json!({"type": "LiveMigratable", "status": "True", "lastTransitionTime": now}),
            Some(reason) => json!({"type": "LiveMigratable", "status": "False", "reason": reason,
                                   "message": "set by the test (virt-handler)", "lastTransitionTime": now}),
        };
        let patch = json!({"status": {
            "phase": "Running", "migrationMethod": "LiveMigration", "selinuxContext": "none",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}, migratable],
        }});
        self.patch_vmi(name, &patch).await;
    }

    async fn patch_vmi(&self, name: &str, patch: &Value) {
        self.vmis()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patching VMI {}/{name}: {e}", self.namespace()));
    }

    /// Starts a VM the way KubeVirt does, playing kubelet and virt-handler: the VMI → its
    /// virt-launcher pod, bound by the real scheduler → pod Running → VMI Scheduled on that node (by
    /// virt-controller) → virt-handler's status → VMI Running. Returns the node.
    pub async fn run_vmi(&self, name: &str, opts: &VmiOptions) -> String {
        self.create_vmi(name, opts).await;
        let pod = self.launcher_pod(name).await;
        let node = node_of(&pod).expect("a bound pod");
        self.kubelet_running(&pod.name_any()).await;
        let scheduled = self.wait_vmi_phase(name, "Scheduled").await;
        assert_eq!(scheduled, node, "virt-controller put VMI {name} on another node than its pod's");
        self.handler_running(name, opts).await;
        self.wait_vmi_phase(name, "Running").await
    }

    /// A VMIM as virt-api creates it after `virtctl migrate` (its webhook adds the label
    /// `kubevirt.io/vmi-name` and the finalizer); `added` is `spec.addedNodeSelector` (none when empty).
    /// Returns the VMIM's name.
    pub async fn migrate(&self, vmi: &str, added: &[(&str, &str)], annotations: &[(&str, &str)]) -> String {
        let mut spec = json!({"vmiName": vmi});
        if !added.is_empty() {
            let sel: serde_json::Map<String, Value> = added.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            spec["addedNodeSelector"] = Value::Object(sel);
        }
        let annotations: serde_json::Map<String, Value> =
            annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let vmim: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {
                "generateName": "kubevirt-migrate-vm-", "namespace": self.namespace(), "annotations": annotations,
                "labels": {"kubevirt.io/vmi-name": vmi}, "finalizers": ["kubevirt.io/migrationJobFinalize"],
            },
            "spec": spec,
        }))
        .expect("a VMIM");
        self.vmims()
            .create(&PostParams::default(), &vmim)
            .await
            .unwrap_or_else(|e| panic!("creating a VMIM of {}/{vmi}: {e}", self.namespace()))
            .name_any()
    }

    pub async fn vmim(&self, name: &str) -> DynamicObject {
        self.vmims().get(name).await.unwrap_or_else(|e| panic!("VMIM {}/{name}: {e}", self.namespace()))
    }

    pub async fn vmim_phase(&self, name: &str) -> Option<String> {
        str_at(&self.vmim(name).await.data, "/status/phase")
    }

    /// Polls until the VMIM is in `phase`.
    pub async fn wait_vmim_phase(&self, name: &str, phase: &str) {
        let what = format!("VMIM {}/{name} to be {phase}", self.namespace());
        eventually(&what, || async move { (self.vmim_phase(name).await.as_deref() == Some(phase)).then_some(()) }).await
    }

    /// The migration's target pod as soon as virt-controller has created it (bound or not).
    pub async fn target_pod_created(&self, vmim: &str) -> Pod {
        self.find_target_pod(vmim, false).await
    }

    /// The migration's target pod once the real scheduler has bound it: (pod, node).
    pub async fn target_pod(&self, vmim: &str) -> (String, String) {
        let pod = self.find_target_pod(vmim, true).await;
        let node = node_of(&pod).expect("a bound pod");
        (pod.name_any(), node)
    }

    async fn find_target_pod(&self, vmim: &str, bound: bool) -> Pod {
        let uid = self.vmim(vmim).await.uid().expect("a VMIM uid");
        let lp = ListParams::default().labels(&format!("{MIGRATION_JOB_LABEL}={uid}"));
        let what =
            format!("the target pod of VMIM {}/{vmim}{}", self.namespace(), if bound { " to be bound" } else { "" });
        let (pods, lp) = (self.pods(), &lp);
        eventually(&what, || {
            let pods = pods.clone();
            async move { pods.list(lp).await.ok()?.items.into_iter().find(|p| !bound || node_of(p).is_some()) }
        })
        .await
    }

    /// The rest of a migration whose target pod is bound, playing kubelet and virt-handler: target pod
    /// Running → VMIM PreparingTarget (virt-controller hands `status.migrationState` over) → the
    /// handshake as three VMI patches (TargetReady, Running, Succeeded with `status.nodeName` and label
    /// [`NODE_NAME_LABEL`] = target) → the source pod Succeeded. Returns the target node.
    pub async fn complete_migration(&self, vmi: &str, vmim: &str) -> String {
        let (source_pod, target) = self.prepare_target(vmi, vmim).await;
        let patch = json!({"status": {"migrationState": {
            "targetNodeAddress": "127.0.0.1", "targetDirectMigrationNodePorts": {"49152": 0},
        }}});
        self.patch_vmi(vmi, &patch).await;
        self.wait_vmim_phase(vmim, "TargetReady").await;
        self.patch_vmi(vmi, &json!({"status": {"migrationState": {"startTimestamp": now()}}})).await;
        self.wait_vmim_phase(vmim, "Running").await;
        let patch = json!({
            "metadata": {"labels": {NODE_NAME_LABEL: target}},
            "status": {"nodeName": target, "migrationState": {"completed": true, "endTimestamp": now()}},
        });
        self.patch_vmi(vmi, &patch).await;
        self.wait_vmim_phase(vmim, "Succeeded").await;
        // The guest has left the source: its pod ends (or the next migration waits for it).
        self.kubelet_succeeded(&source_pod).await;
        target
    }

    /// The failure path after the target pod is bound: target pod Running → PreparingTarget, then
    /// virt-handler reports the migration failed (`completed` and `failed`) → VMIM Failed; the VMI stays
    /// on its source node.
    pub async fn fail_migration(&self, vmi: &str, vmim: &str) {
        self.prepare_target(vmi, vmim).await;
        let patch = json!({"status": {"migrationState": {
            "startTimestamp": now(), "endTimestamp": now(), "completed": true, "failed": true,
            "failureReason": "set by the test (virt-handler)",
        }}});
        self.patch_vmi(vmi, &patch).await;
        self.wait_vmim_phase(vmim, "Failed").await;
    }

    /// Target pod Running → virt-controller hands the migration over (VMIM PreparingTarget, VMI
    /// `status.migrationState` naming this VMIM and the target node). Returns the source pod's name and
    /// the target node.
    async fn prepare_target(&self, vmi: &str, vmim: &str) -> (String, String) {
        let (target_pod, target) = self.target_pod(vmim).await;
        self.kubelet_running(&target_pod).await;
        self.wait_vmim_phase(vmim, "PreparingTarget").await;
        let uid = self.vmim(vmim).await.uid().expect("a VMIM uid");
        let what = format!("VMI {}/{vmi}'s migrationState for VMIM {vmim}", self.namespace());
        let (uid, target_ref) = (&uid, &target);
        let source_pod = eventually(&what, || async move {
            let vmi = self.vmi(vmi).await;
            let state = vmi.data.pointer("/status/migrationState")?;
            let ours = state.get("migrationUid")?.as_str()? == uid && state.get("targetNode")?.as_str()? == target_ref;
            ours.then(|| state.get("sourcePod").and_then(Value::as_str).map(str::to_string)).flatten()
        })
        .await;
        (source_pod, target)
    }
}

impl Drop for KubeVirt {
    fn drop(&mut self) {
        // No kubelet: pods bound to fake nodes would stay Terminating and hold the namespace.
        let ns = self.ns.name.clone();
        cleanup(&self.kubeconfig, move |client| async move {
            let dp = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::background() };
            let _ = Api::<Pod>::namespaced(client, &ns).delete_collection(&dp, &ListParams::default()).await;
        });
    }
}

/// virt-controller may write in `ns`: a server-side dry-run pod create with its own credentials passes
/// the scope policy (the apiserver sees the namespace's new label a moment after the patch).
async fn wait_opted_in(ns: &str) {
    let state = std::env::var("CRYPTOPASS_TESTBED_STATE").expect("CRYPTOPASS_TESTBED_STATE (the test bed's env)");
    let vc = client_from(&PathBuf::from(state).join("virt-controller.kubeconfig")).await;
    let pods: Api<Pod> = Api::namespaced(vc, ns);
    let probe = Pod {
        metadata: ObjectMeta { name: Some(format!("opt-in-probe-{}", suffix())), ..ObjectMeta::default() },
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some("x".into()), ..Container::default() }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let pp = PostParams { dry_run: true, ..PostParams::default() };
    let what = format!("virt-controller to be allowed to write in namespace {ns}");
    let (pods, probe, pp) = (&pods, &probe, &pp);
    eventually(&what, || async move { pods.create(pp, probe).await.ok().map(|_| ()) }).await;
}

/// The pod's conditions with PodScheduled True and Initialized/ContainersReady/Ready = `ready`; other
/// types (KubeVirt's readiness gate) kept as they are.
fn pod_conditions(p: &Pod, ready: &str, now: &str) -> Vec<Value> {
    const OURS: [&str; 4] = ["PodScheduled", "Initialized", "ContainersReady", "Ready"];
    let mut out: Vec<Value> = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !OURS.contains(&c.type_.as_str()))
        .map(|c| serde_json::to_value(c).expect("a pod condition"))
        .collect();
    out.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}));
    for t in &OURS[1..] {
        out.push(json!({"type": t, "status": ready, "lastTransitionTime": now}));
    }
    out
}

/// RFC 7386 JSON merge patch of `patch` into `doc`.
fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(str::to_string)
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn rand_octet() -> u8 {
    1 + uuid::Uuid::new_v4().as_bytes()[0] % 250
}
