//! The migration lifecycle against the real control plane, with simulated s390x hosts and their
//! real agents: a target that turns incompatible is aborted before virt-handler's handshake, a
//! completed migration moves the active node and releases the old node's mdev once its guest let
//! go, a failed migration loses nothing, and `evictionStrategy: External` evacuations get their
//! VMIM from the controller. KubeVirt's part is played by hand with its object shapes
//! (`controller_support::migration`). Named `serial_*` (one leader Lease per cluster).

mod controller_support;
mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use controller_support::migration::*;
use controller_support::*;
use support::{FakeNode, SimAgent, TestNamespace, cluster, eventually, machine, unique};

const DOMAIN: u8 = 0x41;

struct Bed {
    c: support::Cluster,
    ns: TestNamespace,
    run: String,
    agents: Vec<SimAgent>,
    _nodes: Vec<FakeNode>,
}

/// One simulated host per machine file, all labeled for this run.
async fn bed(prefix: &str, machines: &[(&str, &str)]) -> Bed {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, prefix).await;
    let run = unique("run");
    let labels = [("cryptopass-test-run", run.as_str())];
    let (mut agents, mut nodes) = (Vec::new(), Vec::new());
    for (node_prefix, m) in machines {
        let n = FakeNode::create_with_labels(&c, node_prefix, &labels).await;
        agents.push(SimAgent::start(&c, &n, machine(m)).await);
        nodes.push(n);
    }
    Bed { c, ns, run, agents, _nodes: nodes }
}

impl Bed {
    fn selector(&self) -> [(&str, &str); 1] {
        [("cryptopass-test-run", self.run.as_str())]
    }
    fn node(&self, i: usize) -> &str {
        &self.agents[i].node
    }
}

fn last(p: &cryptopass::api::CryptoPassthrough) -> Option<&cryptopass::api::LastMigration> {
    p.status.as_ref()?.last_migration.as_ref()
}

fn active(p: &cryptopass::api::CryptoPassthrough) -> Option<&str> {
    p.status.as_ref()?.active_node.as_deref()
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
    let bed = bed("abort", &[("z16a", "z16-cca"), ("z16b", "z16-b")]).await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (a, b) = (bed.node(0).to_string(), bed.node(1).to_string());
    create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &a, Some(("True", ""))).await;
    passthrough_until(&client, &ns, "p1", "running on z16a with z16b a prepared equivalent standby", |p| {
        active(p) == Some(a.as_str()) && node_entry(p, &b).is_some_and(|n| n.prepared && n.verdict == "Equivalent")
    })
    .await;

    // virtctl migrate: the VMIM; KubeVirt schedules the target onto z16b and hands off.
    let m = unique("migrate");
    let uid = create_vmim(&client, &ns, &m, "vm1").await;
    vmim_status(&client, &ns, &m, json!({"phase": "Scheduling"})).await;
    hand_off(&client, &ns, "vm1", &m, &uid, &a, &b).await;
    let p = passthrough_until(&client, &ns, "p1", "the target verified", |p| {
        last(p).is_some_and(|l| l.migration == m && l.target.as_deref() == Some(b.as_str()) && l.verdict.is_some())
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!(
        (l.outcome.as_str(), l.verdict.as_deref(), l.source.as_deref()),
        ("Running", Some("Equivalent"), Some(a.as_str()))
    );

    // Before virt-handler's handshake, z16b's card 01 turns into an older AP type.
    let r = bed.agents[1].ctl(json!({"op": "card", "id": 1, "rawType": 13}));
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
    // The VMIM was deleted (KubeVirt's finalizer holds it until virt-controller aborted).
    let vmim = get_vmim(&client, &ns, &m).await.expect("held by KubeVirt's finalizer");
    assert!(vmim.metadata.deletion_timestamp.is_some(), "deleted: KubeVirt aborts a deleted migration");
    let e = event(&client, &ns, "VirtualMachineInstance", "MigrationAborted").await;
    assert!(e.message.as_deref().is_some_and(|t| t.contains("(0d)")), "{e:?}");
    event(&client, &ns, "CryptoPassthrough", "MigrationAborted").await;

    // KubeVirt ends it: Failed with the abort succeeded; our record stays ours, counted once.
    let s = json!({"migrationUid": uid, "sourceNode": a, "targetNode": b, "failed": true, "abortStatus": "Succeeded"});
    patch_vmi(&client, &ns, "vm1", json!({"status": {"migrationState": s}})).await;
    vmim_status(&client, &ns, &m, json!({"phase": "Failed", "migrationState": s})).await;
    release_vmim(&client, &ns, &m).await;
    eventually("the VMIM gone", || async { get_vmim(&client, &ns, &m).await.is_none().then_some(()) }).await;
    // Nothing lost: z16a stays active with its mdev; z16b (incompatible, no longer a target) is released.
    let uuid = p.status.as_ref().and_then(|s| s.uuid.clone()).expect("uuid");
    eventually("z16b's mdev released after the migration ended", || async {
        (!bed.agents[1].has_mdev(&uuid)).then_some(())
    })
    .await;
    let p = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert_eq!(active(&p), Some(a.as_str()));
    assert!(bed.agents[0].has_mdev(&uuid));
    assert_eq!(last(&p), Some(&l), "the abort's record stays");
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(body.contains("cryptopass_migrations_total{outcome=\"Aborted\"} 1"), "{body}");
    assert_eq!(ctl.log_text().matches("aborting a migration").count(), 1, "aborted once:\n{}", ctl.log_text());
}

#[tokio::test]
async fn serial_a_completed_migration_moves_the_active_node_and_releases_the_old_mdev_once_unused() {
    // z15 → z16 is allowed (a newer AP type on the target), z16 → z15 is not: after the move the
    // z15 is no standby of the VM any more.
    let bed = bed("handover", &[("z15", "z15-cex7"), ("z16a", "z16-cca"), ("z16b", "z16-b")]).await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (old, t1, t2) = (bed.node(0).to_string(), bed.node(1).to_string(), bed.node(2).to_string());
    let pt = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    let uuid = pt.metadata.uid.clone().expect("uid");
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &old, Some(("False", "HostDeviceNotLiveMigratable"))).await;
    let p = passthrough_until(&client, &ns, "p1", "running on the z15 with a prepared compatible z16", |p| {
        active(p) == Some(old.as_str())
            && node_entry(p, &old).is_some_and(|n| n.prepared)
            && [&t1, &t2].iter().any(|t| node_entry(p, t).is_some_and(|n| n.prepared && n.verdict == "Compatible"))
    })
    .await;
    let target =
        [&t1, &t2].into_iter().find(|t| node_entry(&p, t).is_some_and(|n| n.prepared)).expect("a prepared z16").clone();
    let other = if target == t1 { t2.clone() } else { t1.clone() };
    // The guest holds the mdev on the z15 (its agent reports it, as it would for a guest that ran
    // there for a while).
    bed.agents[0].set_in_use(&uuid, true);
    eventually("the z15's agent reports the mdev in use", || async {
        let cn = bed.agents[0].crypto_node(&client).await?;
        support::cnode::observed(&cn, &uuid).is_some_and(|m| m.in_use).then_some(())
    })
    .await;

    let m = unique("migrate");
    let uid = create_vmim(&client, &ns, &m, "vm1").await;
    hand_off(&client, &ns, "vm1", &m, &uid, &old, &target).await;
    passthrough_until(&client, &ns, "p1", "the target verified", |p| {
        last(p).is_some_and(|l| l.migration == m && l.verdict.as_deref() == Some("Compatible"))
    })
    .await;
    complete(&client, &ns, "vm1", &m, &uid, &old, &target).await;

    // The active node moves; the other z16 becomes the (equivalent) standby; the z15 is now
    // incompatible (z16 → z15) but keeps its entry and mdev while its guest holds it.
    let p = passthrough_until(&client, &ns, "p1", "active moved, standby recomputed", |p| {
        active(p) == Some(target.as_str())
            && node_entry(p, &other).is_some_and(|n| n.prepared && n.verdict == "Equivalent" && n.role == "Standby")
            && node_entry(p, &old).is_some_and(|n| n.verdict == "Incompatible")
            && last(p).is_some_and(|l| l.outcome == "Succeeded")
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!((l.source.as_deref(), l.target.as_deref()), (Some(old.as_str()), Some(target.as_str())));
    assert!(l.end_time.is_some() && l.duration_seconds.is_some(), "{l:?}");
    assert!(has_entry(&client, &old, pt.metadata.uid.as_deref().unwrap_or_default()).await, "in use: kept");
    assert!(bed.agents[0].has_mdev(&uuid));
    eventually("the z15's label removed", || async { (!labeled(&client, &old, &uuid).await).then_some(()) }).await;
    event(&client, &ns, "CryptoPassthrough", "MigrationSucceeded").await;

    // The source QEMU let go: the z15's mdev is released (read back from its simulator).
    bed.agents[0].set_in_use(&uuid, false);
    eventually("the z15's mdev released", || async { (!bed.agents[0].has_mdev(&uuid)).then_some(()) }).await;
    assert!(bed.agents[1].has_mdev(&uuid) || bed.agents[2].has_mdev(&uuid));
    assert!(bed.agents.iter().skip(1).all(|a| a.has_mdev(&uuid)), "both z16s hold the mdev: active and standby");
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(body.contains("cryptopass_migrations_total{outcome=\"Succeeded\"} 1"), "{body}");
}

#[tokio::test]
async fn serial_a_migration_that_fails_loses_nothing_and_records_why() {
    let bed = bed("fail", &[("z16a", "z16-cca"), ("z16b", "z16-b")]).await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (a, b) = (bed.node(0).to_string(), bed.node(1).to_string());
    let pt = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    let uuid = pt.metadata.uid.clone().expect("uid");
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &a, None).await;
    passthrough_until(&client, &ns, "p1", "running with a prepared standby", |p| {
        active(p) == Some(a.as_str()) && condition_is(p, "MigrationReady", "True")
    })
    .await;
    // The target pod never schedules: virt-controller fails the VMIM after its timeout.
    let m = unique("migrate");
    create_vmim(&client, &ns, &m, "vm1").await;
    vmim_status(&client, &ns, &m, json!({"phase": "Scheduling"})).await;
    passthrough_until(&client, &ns, "p1", "the migration followed", |p| {
        last(p).is_some_and(|l| l.migration == m && l.outcome == "Running")
    })
    .await;
    vmim_status(&client, &ns, &m, json!({"phase": "Failed"})).await;
    release_vmim(&client, &ns, &m).await;
    let p = passthrough_until(&client, &ns, "p1", "the failure recorded", |p| {
        last(p).is_some_and(|l| l.migration == m && l.outcome == "Failed")
    })
    .await;
    let l = last(&p).expect("lastMigration");
    assert_eq!(l.reason.as_deref(), Some("MigrationFailed"));
    assert_eq!(l.target, None, "never placed");
    assert_eq!(active(&p), Some(a.as_str()));
    assert!(condition_is(&p, "MigrationReady", "True"), "the standby is still prepared");
    assert!(bed.agents[0].has_mdev(&uuid) && bed.agents[1].has_mdev(&uuid), "nothing lost");
    assert!(labeled(&client, &b, &uuid).await);
    event(&client, &ns, "CryptoPassthrough", "MigrationFailed").await;
}

#[tokio::test]
async fn serial_an_external_eviction_gets_its_migration_from_the_controller_or_an_event_why_not() {
    let bed = bed("evict", &[("z16a", "z16-cca"), ("z16b", "z16-b"), ("z15", "z15-cex7")]).await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (a, b, old) = (bed.node(0).to_string(), bed.node(1).to_string(), bed.node(2).to_string());
    let pt = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    let uuid = pt.metadata.uid.clone().expect("uid");
    create_vmi(&client, &ns, "vm1").await;
    patch_vmi(&client, &ns, "vm1", json!({"spec": {"evictionStrategy": "External"}})).await;
    set_vmi_running(&client, &ns, "vm1", &a, Some(("True", ""))).await;
    passthrough_until(&client, &ns, "p1", "running with a prepared standby", |p| {
        active(p) == Some(a.as_str()) && node_entry(p, &b).is_some_and(|n| n.prepared && n.verdict == "Equivalent")
    })
    .await;

    // A drain of z16a: KubeVirt only marks the VMI; the controller creates the VMIM.
    patch_vmi(&client, &ns, "vm1", json!({"status": {"evacuationNodeName": a}})).await;
    let vmim = eventually("the evacuation VMIM", || async {
        let list = vmims(&client, &ns).list(&ListParams::default()).await.ok()?;
        list.items.into_iter().next()
    })
    .await;
    let name = vmim.metadata.name.clone().expect("name");
    assert!(name.starts_with("cryptopass-evacuate-vm1-"), "{name}");
    let annotations = vmim.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("kubevirt.io/evacuationMigration"), Some(&a));
    assert_eq!(vmim.data["spec"]["vmiName"], json!("vm1"));
    assert_eq!(vmim.data["spec"]["addedNodeSelector"][cryptopass::api::prepared_label(&uuid)], json!("true"));
    let p =
        passthrough_until(&client, &ns, "p1", "Evacuation condition", |p| condition_is(p, "Evacuation", "True")).await;
    assert!(condition_message(&p, "Evacuation").contains(&name), "{}", condition_message(&p, "Evacuation"));
    event(&client, &ns, "VirtualMachineInstance", "EvacuationMigrationCreated").await;
    // Idempotent: one VMIM, however often the controller looks.
    let list = vmims(&client, &ns).list(&ListParams::default()).await.expect("VMIMs");
    assert_eq!(list.items.len(), 1);

    // The same drain with no compatible target (only the z15 left, z16 → z15 refused): the
    // controller says why the drain waits, on the VMI and the passthrough.
    assert!(bed.agents[1].ctl(json!({"op": "card", "id": 1, "rawType": 13})).ok);
    passthrough_until(&client, &ns, "p1", "z16b incompatible", |p| {
        node_entry(p, &b).is_some_and(|n| n.verdict == "Incompatible")
    })
    .await;
    delete_vmim(&client, &ns, &name).await;
    release_vmim(&client, &ns, &name).await;
    let p = passthrough_until(&client, &ns, "p1", "Evacuation blocked", |p| {
        condition_is(p, "Evacuation", "False") && condition_message(p, "Evacuation").starts_with("NoTarget")
    })
    .await;
    let msg = condition_message(&p, "Evacuation");
    assert!(msg.contains(&format!("the drain of node {a} waits")) && msg.contains("(0d)"), "{msg}");
    assert!(msg.contains(&old) || msg.contains(&b), "names candidates: {msg}");
    let e = event(&client, &ns, "VirtualMachineInstance", "EvacuationBlocked").await;
    assert!(e.type_.as_deref() == Some("Warning"), "{e:?}");
}
