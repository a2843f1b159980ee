use crate::controller::inputs::SweepProtection;
use crate::controller::kubevirt::{KubeVirt, sweep_protection};

fn kv(spec: serde_json::Value) -> KubeVirt {
    serde_json::from_value(serde_json::json!({"metadata": {"name": "kubevirt", "namespace": "kubevirt"}, "spec": spec}))
        .unwrap()
}

#[test]
fn virt_handler_sweeps_our_mdevs_unless_the_kubevirt_cr_protects_them() {
    let none = kv(serde_json::json!({}));
    match sweep_protection([&none]) {
        SweepProtection::Unprotected { message } => {
            assert!(message.contains("externalResourceProvider: true"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let disabled = kv(serde_json::json!({"configuration": {"mediatedDevicesConfiguration": {"enabled": false}}}));
    assert!(matches!(
        sweep_protection([&disabled]),
        SweepProtection::Protected { reason: "MediatedDevicesConfigurationDisabled", .. }
    ));
    let external = kv(serde_json::json!({"configuration": {"permittedHostDevices": {"mediatedDevices": [
        {"mdevNameSelector": "VFIO AP Passthrough Device", "resourceName": "crypto.s390x.dev/vfio-ap", "externalResourceProvider": true}]}}}));
    assert!(matches!(
        sweep_protection([&external]),
        SweepProtection::Protected { reason: "ExternalResourceProvider", .. }
    ));
    let not_external = kv(serde_json::json!({"configuration": {"permittedHostDevices": {"mediatedDevices": [
        {"mdevNameSelector": "VFIO AP Passthrough Device", "resourceName": "x"}]}}}));
    assert!(
        matches!(sweep_protection([&not_external]), SweepProtection::Unprotected { .. }),
        "KubeVirt would manage (and sweep) that type"
    );
    assert_eq!(sweep_protection(std::iter::empty()), SweepProtection::NoKubeVirt);
}

#[test]
fn a_vmi_subset_reads_phase_node_and_live_migratable() {
    let v: crate::controller::kubevirt::Vmi = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns"},
        "spec": {"domain": {"devices": {}}},
        "status": {"phase": "Running", "nodeName": "n1", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "LiveMigratable", "status": "False", "reason": "HostDeviceNotLiveMigratable", "message": "m"}]}
    }))
    .unwrap();
    let view = v.view();
    assert_eq!(view.running_on(), Some("n1"));
    assert_eq!(view.live_migratable.map(|c| c.reason).as_deref(), Some("HostDeviceNotLiveMigratable"));
}
