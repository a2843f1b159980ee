//! The test bed runs KubeVirt's own virt-controller v1.9.0 (testbed.md): VMIs get virt-launcher pods
//! that the real scheduler binds to fake s390x nodes, and VMIMs get target pods placed by KubeVirt's
//! code, with only the kubelet's and virt-handler's parts played by the test (`support::kubevirt`).
//! Each test has its own namespace and node pool, so they run in parallel with everything else.

mod support;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::ListParams;
use support::kubevirt::{KubeVirt, NODE_NAME_LABEL, POOL_LABEL, UNSCHEDULABLE_TIMEOUT, VmiOptions};

fn label<'a>(o: &'a kube::api::DynamicObject, key: &str) -> Option<&'a str> {
    o.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test]
async fn kubevirt_flow_vmi_runs_on_the_only_schedulable_node_of_its_pool() {
    let c = support::cluster().await;
    let kv = KubeVirt::new(&c, "kv-run").await;
    let node = kv.node(&c, "kv-run", &[]).await;

    let on = kv.run_vmi("vm", &VmiOptions::default()).await;

    assert_eq!(on, node.name);
    let vmi = kv.vmi("vm").await;
    assert_eq!(vmi.data.pointer("/status/phase").and_then(|v| v.as_str()), Some("Running"));
    assert_eq!(label(&vmi, NODE_NAME_LABEL), Some(node.name.as_str()));
    // The launcher pod is KubeVirt's: its image and the VMI's node selector (s390x, the pool).
    let pod = kv.launcher_pod("vm").await;
    let spec = pod.spec.expect("a pod spec");
    assert!(spec.containers.iter().any(|c| c.name == "compute"), "no compute container: {:?}", spec.containers);
    let selector = spec.node_selector.unwrap_or_default();
    assert_eq!(selector.get("kubernetes.io/arch").map(String::as_str), Some("s390x"));
    assert_eq!(selector.get(POOL_LABEL), Some(&kv.pool));
}

#[tokio::test]
async fn kubevirt_flow_migration_with_added_node_selector_lands_on_the_labelled_node_and_moves_the_vmi() {
    let c = support::cluster().await;
    let kv = KubeVirt::new(&c, "kv-mig").await;
    let source = kv.node(&c, "kv-mig-src", &[]).await;
    kv.run_vmi("vm", &VmiOptions::default().eviction("LiveMigrate")).await;
    // Two free nodes: only one carries the label the migration asks for.
    let key = format!("cryptopass-test/target-{}", support::suffix());
    let labelled = kv.node(&c, "kv-mig-lab", &[(&key, "yes")]).await;
    let unlabelled = kv.node(&c, "kv-mig-free", &[]).await;
    let vmi_uid = kube::ResourceExt::uid(&kv.vmi("vm").await).expect("a VMI uid");

    let m = kv.migrate("vm", &[(&key, "yes")], &[]).await;

    // KubeVirt renders the target pod: addedNodeSelector ∪ the VMI's selector, anti-affinity to the source.
    let pod = kv.target_pod_created(&m).await;
    let spec = pod.spec.clone().expect("a pod spec");
    let selector = spec.node_selector.clone().unwrap_or_default();
    assert_eq!(selector.get(&key).map(String::as_str), Some("yes"), "target pod nodeSelector: {selector:?}");
    assert_eq!(selector.get(POOL_LABEL), Some(&kv.pool), "target pod nodeSelector: {selector:?}");
    let anti = spec
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    assert!(
        anti.iter().any(|t| t.topology_key == "kubernetes.io/hostname"
            && serde_json::to_string(&t.label_selector).unwrap_or_default().contains(&vmi_uid)),
        "no required anti-affinity to the VMI's own pods per host: {anti:?}"
    );
    // The real scheduler binds it to the labelled node, never to the unlabelled free one.
    let (_, target) = kv.target_pod(&m).await;
    assert_eq!(target, labelled.name, "the target pod went to {target}, not the labelled node");
    assert_ne!(target, unlabelled.name);

    let moved_to = kv.complete_migration("vm", &m).await;

    assert_eq!(moved_to, labelled.name);
    let vmi = kv.vmi("vm").await;
    assert_eq!(vmi.data.pointer("/status/nodeName").and_then(|v| v.as_str()), Some(labelled.name.as_str()));
    assert_eq!(label(&vmi, NODE_NAME_LABEL), Some(labelled.name.as_str()));
    assert_eq!(vmi.data.pointer("/status/phase").and_then(|v| v.as_str()), Some("Running"));
    assert_eq!(kv.vmim_phase(&m).await.as_deref(), Some("Succeeded"));
    assert_ne!(source.name, labelled.name);
}

#[tokio::test]
async fn kubevirt_flow_unschedulable_migration_target_fails_after_its_timeout_and_the_vmi_stays() {
    let c = support::cluster().await;
    let kv = KubeVirt::new(&c, "kv-unsched").await;
    let source = kv.node(&c, "kv-uns-src", &[]).await;
    kv.run_vmi("vm", &VmiOptions::default()).await;
    // A free node, but without the label the migration asks for.
    let _free = kv.node(&c, "kv-uns-free", &[]).await;
    let key = format!("cryptopass-test/nowhere-{}", support::suffix());

    let m = kv.migrate("vm", &[(&key, "yes")], &[(UNSCHEDULABLE_TIMEOUT, "2")]).await;

    // The target pod exists; the real scheduler finds no node for it.
    let pod = kv.target_pod_created(&m).await;
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.clone()).unwrap_or_default();
    assert_eq!(selector.get(&key).map(String::as_str), Some("yes"), "target pod nodeSelector: {selector:?}");
    kv.wait_vmim_phase(&m, "Failed").await;

    // Failed for that reason, in KubeVirt's words (its events on the VMIM; the pod is gone by now):
    // the scheduler reported the target pod unschedulable, and the timeout deleted it.
    let events: Api<Event> = Api::namespaced(kv.client.clone(), kv.namespace());
    let lp = ListParams::default().fields(&format!("involvedObject.name={m}"));
    let (events, lp) = (&events, &lp);
    let reasons = support::eventually("virt-controller's events of the unschedulable target pod", || async move {
        let list = events.list(lp).await.ok()?;
        let got: Vec<(String, String)> =
            list.items.into_iter().map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default())).collect();
        let unschedulable = got.iter().any(|(r, _)| r == "migrationTargetPodUnschedulable");
        let timed_out = got.iter().any(|(r, msg)| r == "SuccessfulDelete" && msg.contains("timeout period exceeded"));
        (unschedulable && timed_out).then_some(got)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(kv.client.clone(), kv.namespace());
    let name = kube::ResourceExt::name_any(&pod);
    let gone = pods.get_opt(&name).await.expect("reading the target pod");
    assert!(
        gone.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the timed-out target pod {name} is still there ({reasons:?})"
    );
    let vmi = kv.vmi("vm").await;
    assert_eq!(vmi.data.pointer("/status/nodeName").and_then(|v| v.as_str()), Some(source.name.as_str()));
    assert_eq!(label(&vmi, NODE_NAME_LABEL), Some(source.name.as_str()));
    assert_eq!(vmi.data.pointer("/status/phase").and_then(|v| v.as_str()), Some("Running"));
}

#[tokio::test]
async fn kubevirt_flow_migration_failed_by_the_handler_fails_the_vmim_and_the_vmi_stays() {
    let c = support::cluster().await;
    let kv = KubeVirt::new(&c, "kv-fail").await;
    let source = kv.node(&c, "kv-fail-src", &[]).await;
    kv.run_vmi("vm", &VmiOptions::default()).await;
    let other = kv.node(&c, "kv-fail-dst", &[]).await;

    let m = kv.migrate("vm", &[], &[]).await;
    let (_, target) = kv.target_pod(&m).await;
    assert_eq!(target, other.name, "anti-affinity keeps the target off the source node");
    kv.fail_migration("vm", &m).await;

    let vmi = kv.vmi("vm").await;
    assert_eq!(vmi.data.pointer("/status/nodeName").and_then(|v| v.as_str()), Some(source.name.as_str()));
    assert_eq!(label(&vmi, NODE_NAME_LABEL), Some(source.name.as_str()));
    assert_eq!(vmi.data.pointer("/status/migrationState/failed").and_then(|v| v.as_bool()), Some(true));
}
