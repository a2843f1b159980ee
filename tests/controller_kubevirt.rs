//! The KubeVirt side, against the real KubeVirt CRDs: a KubeVirt CR that lets virt-handler sweep
//! our mdevs is reported in status (`KubeVirtProtectsMdevs`) and as a Warning event; the VMI's
//! own `LiveMigratable` condition is mirrored apart from our verdicts.

mod controller_support;
mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use controller_support::*;
use support::{FakeNode, SimAgent, TestNamespace, cluster, eventually, machine, unique};

fn kubevirt_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubevirt.io", "v1", "KubeVirt"), "kubevirts")
}

#[tokio::test]
async fn serial_an_unprotecting_kubevirt_cr_is_a_warning_in_status_and_events_until_it_protects_our_mdevs() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "kubevirt").await;
    let run = unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &sel).await;
    let _a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (c.client.clone(), ns.name.clone());

    let kv_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "kubevirt", &kubevirt_resource());
    let kv_name = unique("kv");
    let kv: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": kv_name, "namespace": "kubevirt"},
        "spec": {"configuration": {}},
    }))
    .expect("a KubeVirt CR");
    kv_api.create(&PostParams::default(), &kv).await.expect("creating the KubeVirt CR");
    /// Deletes the KubeVirt CR on drop (with a fresh client: the test's runtime may be gone).
    struct Gone(std::path::PathBuf, String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let name = self.1.clone();
            support::cluster::cleanup(&self.0, move |client| async move {
                let api: Api<DynamicObject> = Api::namespaced_with(client, "kubevirt", &kubevirt_resource());
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
    let _gone = Gone(c.kubeconfig.clone(), kv_name.clone());

    create_passthrough(&client, &ns, "p1", spec("vm1", &[0], &[0x48], json!(0), &sel)).await;
    let p = passthrough_until(&client, &ns, "p1", "KubeVirtProtectsMdevs False", |p| {
        condition_is(p, "KubeVirtProtectsMdevs", "False")
    })
    .await;
    let msg = condition_message(&p, "KubeVirtProtectsMdevs");
    assert!(msg.starts_with("VirtHandlerSweepsMdevs: ") && msg.contains("externalResourceProvider: true"), "{msg}");
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning event about the sweep", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("VirtHandlerSweepsMdevs"))
    })
    .await;

    // The VMI runs; KubeVirt says it cannot live-migrate (host devices): mirrored, not ours.
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &na.name, Some(("False", "HostDeviceNotLiveMigratable"))).await;
    let p = passthrough_until(&client, &ns, "p1", "LiveMigratable mirrored", |p| {
        condition_is(p, "KubeVirtLiveMigratable", "False") && condition_is(p, "Ready", "True")
    })
    .await;
    assert!(condition_message(&p, "KubeVirtLiveMigratable").starts_with("HostDeviceNotLiveMigratable"));

    // Protect our mdevs: the warning clears.
    let patch = json!({"spec": {"configuration": {"permittedHostDevices": {"mediatedDevices": [
        {"mdevNameSelector": "VFIO AP Passthrough Device", "resourceName": "crypto.s390x.dev/vfio-ap", "externalResourceProvider": true}
    ]}}}});
    kv_api.patch(&kv_name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patching the KubeVirt CR");
    let p = passthrough_until(&client, &ns, "p1", "KubeVirtProtectsMdevs True", |p| {
        condition_is(p, "KubeVirtProtectsMdevs", "True")
    })
    .await;
    assert!(condition_message(&p, "KubeVirtProtectsMdevs").starts_with("ExternalResourceProvider"));
    drop(ctl);
}
