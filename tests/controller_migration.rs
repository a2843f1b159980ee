//! The migration lifecycle end to end: our controller and real agents on simulated s390x hosts,
//! KubeVirt's own virt-controller v1.9.0 turning VMIMs into target pods that the real scheduler
//! places (`support::kubevirt`; the test plays only kubelet and virt-handler). A target that turns
//! incompatible after scheduling is aborted before the handshake; a completed migration moves the
//! active node and releases the old node's mdev once its guest let go; a migration whose target
//! cannot be scheduled fails cleanly and loses nothing; `evictionStrategy: External` evacuations get
//! their VMIM from the controller (or an event saying why the drain waits). Named `serial_*`: the
//! controller's leader Lease is one per cluster.

mod controller_support;
mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use controller_support::migration::{patch_vmi, vmims};
use controller_support::*;
use support::kubevirt::{POOL_LABEL, UNSCHEDULABLE_TIMEOUT};
use support::{FakeNode, KubeVirt, SimAgent, VmiOptions, cluster, eventually, machine};

const DOMAIN: u8 = 0x43;

fn last(p: &cryptopass::api::CryptoPassthrough) -> Option<&cryptopass::api::LastMigration> {
    p.status.as_ref()?.last_migration.as_ref()
}

fn active(p: &cryptopass::api::CryptoPassthrough) -> Option<&str> {
    p.status.as_ref()?.active_node.as_deref()
}

/// A simulated host joining the test's KubeVirt node pool.
async fn host(c: &support::Cluster, kv: &KubeVirt, prefix: &str, m: &str) -> (FakeNode, SimAgent) {
    let n = kv.node(c, prefix, &[]).await;
    let a = SimAgent::start(c, &n, machine(m)).await;
    (n, a)
}

/// The passthrough `p1` of VM `vm1` on the pool's nodes (adapters 0, 1 × one domain, standby 1).
async fn passthrough(kv: &KubeVirt) -> String {
    let pool = [(POOL_LABEL, kv.pool.as_str())];
    let pt =
        create_passthrough(&kv.client, kv.namespace(), "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &pool)).await;
    pt.metadata.uid.expect("a uid")
}

/// An event with this reason about an object of this kind in the namespace.
async fn event(client: &kube::Client, ns: &str, kind: &str, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(&format!("a {reason} event on the {kind}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.involved_object.kind.as_deref() == Some(kind))
    })
    .await
}

#[tokio::test]
async fn serial_a_target_turning_incompatible_after_scheduling_is_aborted_before_the_handshake() {
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "mig-abort").await;
    let (client, ns) = (c.client.clone(), kv.namespace().to_string());
    let (_na, a) = host(&c, &kv, "z16a", "z16-cca").await;
    assert_eq!(kv.run_vmi("vm1", &VmiOptions::default()).await, a.node);
    let (_nb, b) = host(&c, &kv, "z16b", "z16-b").await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let uuid = passthrough(&kv).await;
    passthrough_until(&client, &ns, "p1", "active on z16a, z16b a prepared equivalent standby", |p| {
        active(p) == Some(a.node.as_str())
            && node_entry(p, &b.node).is_some_and(|n| n.prepared && n.verdict == "Equivalent")
    })
    .await;

    // virtctl migrate: virt-controller renders the target pod, the scheduler binds it to z16b
    // (the only other node of the pool). The controller verifies it from the pod's node, before
    // KubeVirt's hand-off.
    let m = kv.migrate("vm1", &[], &[]).await;
    let (target_pod, target) = kv.target_pod(&m).await;
    assert_eq!(target, b.node);
    let p = passthrough_until(&client, &ns, "p1", "the target verified", |p| {
        last(p).is_some_and(|l| l.migration == m && l.target.as_deref() == Some(b.node.as_str()) && l.verdict.is_some())
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!(
        (l.outcome.as_str(), l.verdict.as_deref(), l.source.as_deref()),
        ("Running", Some("Equivalent"), Some(a.node.as_str()))
    );

    // Before the target pod even runs, z16b's card 01 turns into an older AP type.
    let r = b.ctl(json!({"op": "card", "id": 1, "rawType": 13}));
    assert!(r.ok, "{:?}", r.error);
    let p = passthrough_until(&client, &ns, "p1", "the migration aborted", |p| {
        last(p).is_some_and(|l| l.migration == m && l.outcome == "Aborted")
    })
    .await;
    let l = last(&p).expect("lastMigration").clone();
    assert_eq!(l.reason.as_deref(), Some("ApTypeNotCompatible"), "{l:?}");
    assert!(l.message.as_deref().is_some_and(|t| t.contains("not compatible with target (0d)")), "{l:?}");
    assert_eq!(l.verdict.as_deref(), Some("Incompatible"));
    assert!(l.end_time.is_some() && l.duration_seconds.is_some(), "{l:?}");
    let e = event(&client, &ns, "VirtualMachineInstance", "MigrationAborted").await;
    assert!(e.message.as_deref().is_some_and(|t| t.contains("(0d)")), "{e:?}");
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    event(&client, &ns, "CryptoPassthrough", "MigrationAborted").await;

    // KubeVirt ends the deleted migration: the VMIM goes, the handshake never began, the VM stays
    // on z16a with its mdev; z16b (incompatible, no target any more) is released.
    eventually("virt-controller to finish the deleted VMIM", || async {
        vmims(&client, &ns).get_opt(&m).await.ok()?.is_none().then_some(())
    })
    .await;
    let vmi = kv.vmi("vm1").await;
    assert!(vmi.data.pointer("/status/migrationState/targetNodeAddress").is_none(), "no handshake: {:?}", vmi.data);
    assert_eq!(vmi.data.pointer("/status/nodeName"), Some(&json!(a.node)));
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get_opt(&target_pod).await.expect("reading the target pod");
    assert!(pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()), "the target pod is being removed");
    eventually("z16b's mdev released after the migration ended", || async { (!b.has_mdev(&uuid)).then_some(()) }).await;
    let p = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert_eq!(active(&p), Some(a.node.as_str()));
    assert!(a.has_mdev(&uuid));
    assert_eq!(last(&p), Some(&l), "the abort's record stays");
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(body.contains("cryptopass_migrations_total{outcome=\"Aborted\"} 1"), "{body}");
    assert_eq!(ctl.log_text().matches("aborting a migration").count(), 1, "aborted once:\n{}", ctl.log_text());
}

#[tokio::test]
async fn serial_a_completed_migration_moves_the_active_node_and_releases_the_old_mdev_once_unused() {
    // z15 → z16 is allowed (a newer AP type on the target), z16 → z15 is not: after the move the
    // z15 is no standby of the VM any more.
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "mig-move").await;
    let (client, ns) = (c.client.clone(), kv.namespace().to_string());
    let (_nz, z15) = host(&c, &kv, "z15", "z15-cex7").await;
    assert_eq!(kv.run_vmi("vm1", &VmiOptions::default()).await, z15.node);
    let (_n1, z16a) = host(&c, &kv, "z16a", "z16-cca").await;
    let (_n2, z16b) = host(&c, &kv, "z16b", "z16-b").await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let uuid = passthrough(&kv).await;
    let p = passthrough_until(&client, &ns, "p1", "active on the z15 with a prepared compatible z16", |p| {
        active(p) == Some(z15.node.as_str())
            && node_entry(p, &z15.node).is_some_and(|n| n.prepared)
            && [&z16a, &z16b]
                .iter()
                .any(|t| node_entry(p, &t.node).is_some_and(|n| n.prepared && n.verdict == "Compatible"))
    })
    .await;
    let (target, other) =
        if node_entry(&p, &z16a.node).is_some_and(|n| n.prepared) { (&z16a, &z16b) } else { (&z16b, &z16a) };
    // The guest holds the mdev on the z15, and its agent says so.
    z15.set_in_use(&uuid, true);
    eventually("the z15's agent reports the mdev in use", || async {
        let cn = z15.crypto_node(&client).await?;
        support::cnode::observed(&cn, &uuid).is_some_and(|m| m.in_use).then_some(())
    })
    .await;

    // Steered as our mutating webhook would: the target pod lands on the prepared z16.
    let key = cryptopass::api::prepared_label(&uuid);
    let m = kv.migrate("vm1", &[(&key, "true")], &[]).await;
    passthrough_until(&client, &ns, "p1", "the target verified", |p| {
        last(p).is_some_and(|l| l.migration == m && l.verdict.as_deref() == Some("Compatible"))
    })
    .await;
    assert_eq!(kv.complete_migration("vm1", &m).await, target.node);

    // The active node moves; the other z16 becomes the equivalent standby; the z15 is now
    // incompatible (z16 → z15) but keeps its entry and mdev while its guest holds it.
    let p = passthrough_until(&client, &ns, "p1", "active moved, standby recomputed", |p| {
        active(p) == Some(target.node.as_str())
            && node_entry(p, &other.node)
                .is_some_and(|n| n.prepared && n.verdict == "Equivalent" && n.role == "Standby")
            && node_entry(p, &z15.node).is_some_and(|n| n.verdict == "Incompatible")
            && last(p).is_some_and(|l| l.outcome == "Succeeded")
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!((l.source.as_deref(), l.target.as_deref()), (Some(z15.node.as_str()), Some(target.node.as_str())));
    assert_eq!(l.reason.as_deref(), Some("Completed"));
    assert!(l.end_time.is_some() && l.duration_seconds.is_some(), "{l:?}");
    let pt_uid = p.metadata.uid.clone().unwrap_or_default();
    assert!(has_entry(&client, &z15.node, &pt_uid).await, "in use on the z15: its entry stays");
    assert!(z15.has_mdev(&uuid));
    eventually("the z15's label removed", || async { (!labeled(&client, &z15.node, &uuid).await).then_some(()) }).await;
    event(&client, &ns, "CryptoPassthrough", "MigrationSucceeded").await;

    // The source QEMU let go: the z15's mdev is released (read back from its simulator).
    z15.set_in_use(&uuid, false);
    eventually("the z15's mdev released", || async { (!z15.has_mdev(&uuid)).then_some(()) }).await;
    assert!(!has_entry(&client, &z15.node, &pt_uid).await);
    assert!(z16a.has_mdev(&uuid) && z16b.has_mdev(&uuid), "both z16s hold it: active and standby");
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(body.contains("cryptopass_migrations_total{outcome=\"Succeeded\"} 1"), "{body}");
    assert!(body.contains("cryptopass_migration_duration_seconds_count{outcome=\"Succeeded\"} 1"), "{body}");
}

#[tokio::test]
async fn serial_a_migration_whose_target_cannot_be_scheduled_fails_cleanly_and_loses_nothing() {
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "mig-fail").await;
    let (client, ns) = (c.client.clone(), kv.namespace().to_string());
    let (_na, a) = host(&c, &kv, "z16a", "z16-cca").await;
    kv.run_vmi("vm1", &VmiOptions::default()).await;
    let (_nb, b) = host(&c, &kv, "z16b", "z16-b").await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let uuid = passthrough(&kv).await;
    passthrough_until(&client, &ns, "p1", "running with a prepared standby", |p| {
        active(p) == Some(a.node.as_str()) && condition_is(p, "MigrationReady", "True")
    })
    .await;

    // No node carries the label the migration asks for: virt-controller fails it after the
    // unschedulable timeout.
    let nowhere = format!("cryptopass-test/nowhere-{}", support::suffix());
    let m = kv.migrate("vm1", &[(&nowhere, "yes")], &[(UNSCHEDULABLE_TIMEOUT, "2")]).await;
    kv.wait_vmim_phase(&m, "Failed").await;
    let p = passthrough_until(&client, &ns, "p1", "the failure recorded", |p| {
        last(p).is_some_and(|l| l.migration == m && l.outcome == "Failed")
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!((l.reason.as_deref(), l.target.as_deref()), (Some("TargetNotPlaced"), None), "{l:?}");
    assert!(l.end_time.is_some(), "{l:?}");
    assert_eq!(active(&p), Some(a.node.as_str()));
    assert!(condition_is(&p, "MigrationReady", "True"), "the standby is still prepared");
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid), "nothing lost");
    assert!(labeled(&client, &b.node, &uuid).await);
    event(&client, &ns, "CryptoPassthrough", "MigrationFailed").await;
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(body.contains("cryptopass_migrations_total{outcome=\"Failed\"} 1"), "{body}");
}

#[tokio::test]
async fn serial_an_external_eviction_gets_its_migration_from_the_controller_or_an_event_why_not() {
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "mig-evict").await;
    let (client, ns) = (c.client.clone(), kv.namespace().to_string());
    let (_na, a) = host(&c, &kv, "z16a", "z16-cca").await;
    kv.run_vmi("vm1", &VmiOptions::default().eviction("External")).await;
    let (_nb, b) = host(&c, &kv, "z16b", "z16-b").await;
    let (_nc, old) = host(&c, &kv, "z15", "z15-cex7").await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let uuid = passthrough(&kv).await;
    passthrough_until(&client, &ns, "p1", "running with z16b a prepared standby", |p| {
        active(p) == Some(a.node.as_str())
            && node_entry(p, &b.node).is_some_and(|n| n.prepared && n.verdict == "Equivalent")
    })
    .await;

    // z16b turns incompatible; then a drain of z16a (KubeVirt's evacuation controller only marks
    // the VMI of an External VM): no target — the controller says why the drain waits.
    assert!(b.ctl(json!({"op": "card", "id": 1, "rawType": 13})).ok);
    passthrough_until(&client, &ns, "p1", "z16b incompatible", |p| {
        node_entry(p, &b.node).is_some_and(|n| n.verdict == "Incompatible")
    })
    .await;
    patch_vmi(&client, &ns, "vm1", json!({"status": {"evacuationNodeName": a.node}})).await;
    let p = passthrough_until(&client, &ns, "p1", "Evacuation blocked", |p| {
        condition_is(p, "Evacuation", "False") && condition_message(p, "Evacuation").starts_with("NoTarget")
    })
    .await;
    let msg = condition_message(&p, "Evacuation");
    assert!(msg.contains(&format!("the drain of node {} waits", a.node)) && msg.contains("(0d)"), "{msg}");
    assert!(msg.contains(&old.node) && msg.contains(&b.node), "names the candidates: {msg}");
    let e = event(&client, &ns, "VirtualMachineInstance", "EvacuationBlocked").await;
    assert_eq!(e.type_.as_deref(), Some("Warning"), "{e:?}");
    assert!(vmims(&client, &ns).list(&ListParams::default()).await.expect("VMIMs").items.is_empty());

    // z16b is a CEX8 again and prepared: the controller creates the VMIM, steered onto prepared
    // nodes; virt-controller's target pod lands on z16b, never on the free z15.
    assert!(b.ctl(json!({"op": "card", "id": 1, "rawType": 14})).ok);
    let vmim = eventually("the evacuation VMIM", || async {
        vmims(&client, &ns).list(&ListParams::default()).await.ok()?.items.into_iter().next()
    })
    .await;
    let name = vmim.metadata.name.clone().expect("name");
    assert!(name.starts_with("cryptopass-evacuate-vm1-"), "{name}");
    let annotations = vmim.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("kubevirt.io/evacuationMigration"), Some(&a.node));
    assert_eq!(vmim.data["spec"]["vmiName"], json!("vm1"));
    assert_eq!(vmim.data["spec"]["addedNodeSelector"][cryptopass::api::prepared_label(&uuid)], json!("true"));
    event(&client, &ns, "VirtualMachineInstance", "EvacuationMigrationCreated").await;
    let (_, target) = kv.target_pod(&name).await;
    assert_eq!(target, b.node, "placed on the prepared compatible node");
    assert_eq!(kv.complete_migration("vm1", &name).await, b.node);
    let p = passthrough_until(&client, &ns, "p1", "evacuated: active on z16b, no Evacuation condition", |p| {
        active(p) == Some(b.node.as_str())
            && last(p).is_some_and(|l| l.migration == name && l.outcome == "Succeeded")
            && p.status.as_ref().is_some_and(|s| s.conditions.iter().all(|c| c.type_ != "Evacuation"))
    })
    .await;
    assert_eq!(last(&p).and_then(|l| l.source.as_deref()), Some(a.node.as_str()));
    // One VMIM for the whole evacuation.
    assert_eq!(vmims(&client, &ns).list(&ListParams::default()).await.expect("VMIMs").items.len(), 1);
}

#[tokio::test]
async fn serial_on_a_v1_kernel_the_source_mdev_is_migratable_only_while_migration_is_enabled() {
    let c = cluster().await;
    let ns = support::TestNamespace::create(&c, "mig-v1").await;
    let (client, ns) = (c.client.clone(), ns);
    let run = support::unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let n = FakeNode::create_with_labels(&c, "z16v1", &sel).await;
    let host = SimAgent::start(&c, &n, machine("z16-v1")).await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let pt = create_passthrough(&client, &ns.name, "p1", spec("vm1", &[0, 1], &[0x45], json!(1), &sel)).await;
    let uuid = pt.metadata.uid.clone().expect("a uid");
    create_vmi(&client, &ns.name, "vm1").await;
    set_vmi_running(&client, &ns.name, "vm1", &host.node, Some(("True", ""))).await;
    let attr = format!("devices/vfio_ap/matrix/{uuid}/migratable");
    let value = |want: &'static str| {
        let (host, attr) = (&host, &attr);
        async move {
            eventually(&format!("{attr} = {want} in the simulator"), || async move {
                (host.read(attr).as_deref().map(str::trim) == Some(want)).then_some(())
            })
            .await
        }
    };
    value("1").await;

    let api: Api<cryptopass::api::CryptoPassthrough> = Api::namespaced(client.clone(), &ns.name);
    let set = |enabled: bool| {
        let api = api.clone();
        async move {
            let patch = json!({"spec": {"migration": {"enabled": enabled}}});
            api.patch("p1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("patching p1: {e}"));
        }
    };
    set(false).await;
    value("0").await;
    let p = passthrough_until(&client, &ns.name, "p1", "MigrationReady False (disabled)", |p| {
        condition_is(p, "MigrationReady", "False")
    })
    .await;
    assert!(condition_message(&p, "MigrationReady").starts_with("MigrationDisabled"));
    assert!(host.has_mdev(&uuid), "the guest keeps its mdev");
    set(true).await;
    value("1").await;
}

#[tokio::test]
async fn serial_a_drain_that_our_gate_would_refuse_gets_an_event_saying_why_it_waits() {
    // KubeVirt's own evacuation (evictionStrategy LiveMigrate) creates the VMIMs itself; our gate
    // would deny them (the only other node is a z15), and the webhook has no side effects: the
    // controller says why the drain waits, and creates nothing.
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "mig-drain").await;
    let (client, ns) = (c.client.clone(), kv.namespace().to_string());
    let (_na, a) = host(&c, &kv, "z16a", "z16-cca").await;
    kv.run_vmi("vm1", &VmiOptions::default().eviction("LiveMigrate")).await;
    let (_nc, old) = host(&c, &kv, "z15", "z15-cex7").await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    passthrough(&kv).await;
    // Ready first: before the active node's mdev is synced the drain waits for that instead (another
    // event), and the first EvacuationBlocked event is the one this test reads.
    passthrough_until(&client, &ns, "p1", "Ready and active on z16a, the z15 incompatible", |p| {
        condition_is(p, "Ready", "True")
            && active(p) == Some(a.node.as_str())
            && node_entry(p, &old.node).is_some_and(|n| n.verdict == "Incompatible")
    })
    .await;
    patch_vmi(&client, &ns, "vm1", json!({"status": {"evacuationNodeName": a.node}})).await;
    let e = event(&client, &ns, "VirtualMachineInstance", "EvacuationBlocked").await;
    let text = e.message.clone().unwrap_or_default();
    assert!(text.contains(&format!("the drain of node {} waits", a.node)), "{text}");
    assert!(text.contains(&old.node) && text.contains("(0d)"), "names the node in the kernel's words: {text}");
    let p = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert!(condition_is(&p, "Evacuation", "False"), "{:?}", p.status);
    assert!(vmims(&client, &ns).list(&ListParams::default()).await.expect("VMIMs").items.is_empty());
}
