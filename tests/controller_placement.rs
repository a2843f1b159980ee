//! The controller against the real control plane, with simulated s390x hosts of different
//! hardware and their agents, each with its own least-privilege identity (deploy/ RBAC).
//! Named `serial_*`: the leader Lease `cryptopass-controller` is one per cluster, so controller
//! tests take turns (nextest's `serial` group).

mod controller_support;
mod support;

use serde_json::json;

use controller_support::*;
use support::{FakeNode, SimAgent, TestNamespace, cluster, eventually, machine, unique};

/// Three hosts: two equivalent z16s, a z15 (older AP type: z16 → z15 refused by the kernel).
struct Bed {
    c: support::Cluster,
    ns: TestNamespace,
    run: String,
    a: SimAgent,
    b: SimAgent,
    old: SimAgent,
    _nodes: Vec<FakeNode>,
}

async fn bed(prefix: &str) -> Bed {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, prefix).await;
    let run = unique("run");
    let labels = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &labels).await;
    let nb = FakeNode::create_with_labels(&c, "z16b", &labels).await;
    let nc = FakeNode::create_with_labels(&c, "z15", &labels).await;
    let a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let b = SimAgent::start(&c, &nb, machine("z16-b")).await;
    let old = SimAgent::start(&c, &nc, machine("z15-cex7")).await;
    Bed { c, ns, run, a, b, old, _nodes: vec![na, nb, nc] }
}

impl Bed {
    fn selector(&self) -> [(&str, &str); 1] {
        [("cryptopass-test-run", self.run.as_str())]
    }
}

const DOMAIN: u8 = 0x41;

#[tokio::test]
async fn serial_create_prepares_one_uuid_on_active_and_standby_nodes_never_on_an_incompatible_one() {
    let bed = bed("place").await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let pt = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    let uuid = pt.metadata.uid.clone().expect("a uid");

    // Before the VM runs: prepared on 1 + standby equivalent nodes, ready for `kubectl wait`.
    let (ok, out) = kubectl_wait(&bed.c.kubeconfig, &ns, "p1", "Ready", 90);
    assert!(ok, "kubectl wait --for=condition=Ready: {out}\ncontroller log:\n{}", ctl.log_text());
    let p = eventually("both z16s prepared", || async {
        get_passthrough(&client, &ns, "p1").await.filter(|p| p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2))
    })
    .await;
    assert_eq!(p.status.as_ref().and_then(|s| s.uuid.as_deref()), Some(uuid.as_str()));
    assert!(bed.a.has_mdev(&uuid) && bed.b.has_mdev(&uuid), "the same UUID on both z16 simulators");

    // The z15 is judged in the kernel's words and never prepared.
    let z15 = node_entry(&p, &bed.old.node).expect("the z15 is listed");
    assert_eq!(z15.verdict, "Incompatible", "{z15:?}");
    assert!(!z15.prepared);
    let r = z15.reasons.iter().find(|r| r.code == "ApTypeNotCompatible").unwrap_or_else(|| panic!("{z15:?}"));
    assert!(r.message.contains("AP type of source (0e) not compatible with target (0d)"), "{}", r.message);
    assert!(!bed.old.has_mdev(&uuid));

    // The VM starts on z16a: it is the active node, z16b its Equivalent standby.
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &bed.a.node, Some(("False", "HostDeviceNotLiveMigratable"))).await;
    let p = eventually("z16a active, z16b an equivalent prepared standby, migration ready", || async {
        get_passthrough(&client, &ns, "p1").await.filter(|p| {
            p.status.as_ref().and_then(|s| s.active_node.as_deref()) == Some(bed.a.node.as_str())
                && node_entry(p, &bed.b.node)
                    .is_some_and(|n| n.role == "Standby" && n.prepared && n.verdict == "Equivalent")
                && condition_is(p, "MigrationReady", "True")
        })
    })
    .await;
    assert_eq!(node_entry(&p, &bed.a.node).map(|n| n.role.as_str()), Some("Active"));
    assert!(condition_is(&p, "Ready", "True"));
    assert!(condition_is(&p, "KubeVirtLiveMigratable", "False"), "KubeVirt's condition, mirrored apart");
    // The prepared label on the two z16s only.
    for (n, want) in [(&bed.a.node, true), (&bed.b.node, true), (&bed.old.node, false)] {
        eventually(&format!("label on {n} = {want}"), || async {
            (labeled(&client, n, &uuid).await == want).then_some(())
        })
        .await;
    }
    // /metrics: the names of architecture.md.
    let (code, body) = ctl.http_get("/metrics").expect("/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("cryptopass_reconcile_total{controller=\"cryptopassthrough\"}"), "{body}");
    let series =
        format!("cryptopass_passthrough_nodes{{namespace=\"{ns}\",passthrough=\"p1\",verdict=\"Incompatible\"}} 1");
    assert!(body.contains(&series), "{series} in\n{body}");
    let apqns = format!(
        "cryptopass_incompatible_apqns{{namespace=\"{ns}\",passthrough=\"p1\",node=\"{}\",reason=\"ApTypeNotCompatible\"}}",
        bed.old.node
    );
    assert!(body.contains(&apqns), "{apqns} in\n{body}");
}

/// A running VM on z16a with z16b its prepared standby.
async fn running(bed: &Bed, name: &str, vm: &str) -> (String, String) {
    let (client, ns) = (&bed.c.client, bed.ns.name.as_str());
    let pt = create_passthrough(client, ns, name, spec(vm, &[0, 1], &[DOMAIN], json!(1), &bed.selector())).await;
    let uuid = pt.metadata.uid.clone().expect("a uid");
    create_vmi(client, ns, vm).await;
    set_vmi_running(client, ns, vm, &bed.a.node, None).await;
    passthrough_until(client, ns, name, "z16a active and synced, z16b a prepared equivalent standby", |p| {
        condition_is(p, "Ready", "True")
            && p.status.as_ref().and_then(|s| s.active_node.as_deref()) == Some(bed.a.node.as_str())
            && node_entry(p, &bed.b.node).is_some_and(|n| n.prepared && n.verdict == "Equivalent")
    })
    .await;
    (pt.metadata.uid.clone().unwrap_or_default(), uuid)
}

#[tokio::test]
async fn serial_a_hardware_change_in_one_host_updates_its_verdict_and_what_is_prepared() {
    let bed = bed("hw").await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (uid, uuid) = running(&bed, "p1", "vm1").await;

    // Card 01 of z16b now reports an older AP type (raw 0x0d): z16a → z16b is refused.
    let r = bed.b.ctl(json!({"op": "card", "id": 1, "rawType": 13}));
    assert!(r.ok, "{:?}", r.error);
    let p = passthrough_until(&client, &ns, "p1", "z16b incompatible, no migration target", |p| {
        node_entry(p, &bed.b.node).is_some_and(|n| n.verdict == "Incompatible" && !n.prepared)
            && condition_is(p, "MigrationReady", "False")
    })
    .await;
    let b = node_entry(&p, &bed.b.node).expect("z16b listed");
    let r = b.reasons.iter().find(|r| r.code == "ApTypeNotCompatible").unwrap_or_else(|| panic!("{b:?}"));
    assert_eq!(r.apqn.as_deref(), Some("01.0041"));
    assert!(r.message.contains("not compatible with target (0d)"), "{}", r.message);
    eventually("z16b's mdev released", || async {
        (!bed.b.has_mdev(&uuid) && !has_entry(&client, &bed.b.node, &uid).await).then_some(())
    })
    .await;
    eventually("z16b's label removed", || async { (!labeled(&client, &bed.b.node, &uuid).await).then_some(()) }).await;
    assert!(bed.a.has_mdev(&uuid), "the active node keeps its mdev");

    // Back to a CEX8: prepared again.
    assert!(bed.b.ctl(json!({"op": "card", "id": 1, "rawType": 14})).ok);
    passthrough_until(&client, &ns, "p1", "z16b equivalent and prepared again", |p| {
        node_entry(p, &bed.b.node).is_some_and(|n| n.verdict == "Equivalent" && n.prepared)
            && condition_is(p, "MigrationReady", "True")
    })
    .await;
    assert!(bed.b.has_mdev(&uuid));
    drop(ctl);
}

#[tokio::test]
async fn serial_deleting_a_passthrough_removes_its_mdevs_everywhere_but_never_while_in_use() {
    let bed = bed("del").await;
    let mut ctl = ControllerProcess::start(&bed.c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (uid, uuid) = running(&bed, "p1", "vm1").await;
    bed.a.set_in_use(&uuid, true);

    delete_passthrough(&client, &ns, "p1").await;
    eventually("the standby's mdev, entry and label released", || async {
        (!bed.b.has_mdev(&uuid)
            && !has_entry(&client, &bed.b.node, &uid).await
            && !labeled(&client, &bed.b.node, &uuid).await)
            .then_some(())
    })
    .await;
    let p = passthrough_until(&client, &ns, "p1", "Releasing while the guest holds the mdev", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == "Releasing")
    })
    .await;
    assert!(condition_message(&p, "Ready").contains(&bed.a.node), "{}", condition_message(&p, "Ready"));
    assert!(bed.a.has_mdev(&uuid), "never removed while in use");

    bed.a.set_in_use(&uuid, false);
    eventually("the passthrough gone, its mdevs removed everywhere", || async {
        (get_passthrough(&client, &ns, "p1").await.is_none() && !bed.a.has_mdev(&uuid) && !bed.b.has_mdev(&uuid))
            .then_some(())
    })
    .await;
    assert!(!has_entry(&client, &bed.a.node, &uid).await);
    assert!(!labeled(&client, &bed.a.node, &uuid).await);
    assert!(!bed.old.has_mdev(&uuid));
    let (_, body) = ctl.http_get("/metrics").expect("/metrics");
    assert!(
        !body.contains(&format!("namespace=\"{ns}\",passthrough=\"p1\"")),
        "a deleted passthrough leaves no series"
    );
}
