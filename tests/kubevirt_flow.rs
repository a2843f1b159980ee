//! The test bed runs KubeVirt's own virt-controller v1.9.0 (testbed.md): VMIs get virt-launcher pods
//! that the real scheduler binds to fake s390x nodes, and VMIMs get target pods placed by KubeVirt's
//! code, with only the kubelet's and virt-handler's parts played by the test (`support::kubevirt`).

mod support;

use support::kubevirt::{KubeVirt, VmiOptions};

#[tokio::test]
async fn kubevirt_flow_vmi_runs_on_the_only_schedulable_node_of_its_pool() {
    let c = support::cluster().await;
    let kv = KubeVirt::new(&c, "kv-run").await;
    let node = kv.node(&c, "kv-run", &[]).await;
    let on = kv.run_vmi("vm", &VmiOptions::default()).await;
    assert_eq!(on, node.name);
    let vmi = kv.vmi("vm").await;
    assert_eq!(vmi.data.pointer("/status/phase").and_then(|v| v.as_str()), Some("Running"));
    assert_eq!(vmi.metadata.labels.as_ref().and_then(|l| l.get(support::kubevirt::NODE_NAME_LABEL)), Some(&node.name));
}
