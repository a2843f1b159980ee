//! KubeVirt's part of a live migration, played by hand with the object shapes of KubeVirt v1.9.0
//! (kubevirt.md §1, testbed.md "KubeVirt's own virt-controller"): the VMIM as virt-api creates it
//! (label `kubevirt.io/vmi-name`, finalizer `kubevirt.io/migrationJobFinalize` from KubeVirt's
//! mutating webhook), its phases (virt-controller, status subresource), the hand-off and the
//! handshake on the VMI's status (virt-controller, then virt-handler; a VMI has no status
//! subresource).
#![allow(dead_code)]

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::vmi_resource;

pub const FINALIZER: &str = "kubevirt.io/migrationJobFinalize";

pub fn vmim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstanceMigration"),
        "virtualmachineinstancemigrations",
    )
}

pub fn vmims(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &vmim_resource())
}

fn vmis(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &vmi_resource())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// A VMIM of `vmi`, as virt-api stores it after `virtctl migrate`; returns its uid.
pub async fn create_vmim(client: &Client, ns: &str, name: &str, vmi: &str) -> String {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubevirt.io/vmi-name": vmi}, "finalizers": [FINALIZER]},
        "spec": {"vmiName": vmi},
    }))
    .expect("a VMIM");
    let created =
        vmims(client, ns).create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("creating VMIM: {e}"));
    created.metadata.uid.expect("a uid")
}

pub async fn get_vmim(client: &Client, ns: &str, name: &str) -> Option<DynamicObject> {
    vmims(client, ns).get_opt(name).await.unwrap_or_else(|e| panic!("reading VMIM {name}: {e}"))
}

/// Writes the VMIM's status (virt-controller's part).
pub async fn vmim_status(client: &Client, ns: &str, name: &str, status: Value) {
    vmims(client, ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
        .await
        .unwrap_or_else(|e| panic!("VMIM status: {e}"));
}

/// Drops KubeVirt's finalizer (virt-controller does once the migration ended).
pub async fn release_vmim(client: &Client, ns: &str, name: &str) {
    let patch = json!({"metadata": {"finalizers": null}});
    match vmims(client, ns).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("VMIM finalizer: {e}"),
    }
}

pub async fn delete_vmim(client: &Client, ns: &str, name: &str) {
    let _ = vmims(client, ns).delete(name, &DeleteParams::default()).await;
}

pub async fn patch_vmi(client: &Client, ns: &str, name: &str, patch: Value) {
    vmis(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("VMI patch: {e}"));
}

fn state(uid: &str, source: &str, target: &str) -> Value {
    json!({"migrationUid": uid, "sourceNode": source, "targetNode": target, "targetPod": format!("virt-launcher-{target}")})
}

/// The target pod is bound (Scheduled), then virt-controller's hand-off (PreparingTarget):
/// `migrationState` on VMIM and VMI, the VMI label `kubevirt.io/migrationTargetNodeName`.
pub async fn hand_off(client: &Client, ns: &str, vmi: &str, vmim: &str, uid: &str, source: &str, target: &str) {
    vmim_status(client, ns, vmim, json!({"phase": "Scheduled"})).await;
    let s = state(uid, source, target);
    patch_vmi(
        client,
        ns,
        vmi,
        json!({"metadata": {"labels": {"kubevirt.io/migrationTargetNodeName": target}}, "status": {"migrationState": s}}),
    )
    .await;
    vmim_status(client, ns, vmim, json!({"phase": "PreparingTarget", "migrationState": s})).await;
}

/// virt-handler's handshake to the end: TargetReady, Running, completed (the VMI moves).
pub async fn complete(client: &Client, ns: &str, vmi: &str, vmim: &str, uid: &str, source: &str, target: &str) {
    let mut s = state(uid, source, target);
    s["targetNodeAddress"] = json!("10.0.0.2");
    patch_vmi(client, ns, vmi, json!({"status": {"migrationState": s}})).await;
    vmim_status(client, ns, vmim, json!({"phase": "TargetReady"})).await;
    s["startTimestamp"] = json!(now());
    patch_vmi(client, ns, vmi, json!({"status": {"migrationState": s}})).await;
    vmim_status(client, ns, vmim, json!({"phase": "Running"})).await;
    s["endTimestamp"] = json!(now());
    s["completed"] = json!(true);
    patch_vmi(
        client,
        ns,
        vmi,
        json!({
            "metadata": {"labels": {"kubevirt.io/nodeName": target, "kubevirt.io/migrationTargetNodeName": null}},
            "status": {"nodeName": target, "migrationState": s},
        }),
    )
    .await;
    vmim_status(client, ns, vmim, json!({"phase": "Succeeded", "migrationState": s})).await;
    release_vmim(client, ns, vmim).await;
}
