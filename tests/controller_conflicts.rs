//! Two passthroughs competing for one APQN, against the real control plane: the older one wins on
//! every node, the younger gets `Conflict` naming the nodes and the APQNs and is placed nowhere
//! until the older one is gone. Two passthroughs with one UUID: the younger gets `UuidInUse`.

mod controller_support;
mod support;

use serde_json::json;

use controller_support::*;
use support::{FakeNode, SimAgent, TestNamespace, cluster, eventually, machine, unique};

#[tokio::test]
async fn serial_the_older_passthrough_wins_an_apqn_and_the_younger_waits_with_a_conflict_naming_nodes_and_apqns() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "conflict").await;
    let run = unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &sel).await;
    let nb = FakeNode::create_with_labels(&c, "z16b", &sel).await;
    let a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let b = SimAgent::start(&c, &nb, machine("z16-b")).await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (c.client.clone(), ns.name.clone());

    let old = create_passthrough(&client, &ns, "old", spec("vm-old", &[0, 1], &[0x42], json!("All"), &sel)).await;
    let old_uuid = old.metadata.uid.clone().expect("uid");
    passthrough_until(&client, &ns, "old", "the older one prepared on both nodes", |p| {
        p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2)
    })
    .await;
    // The younger wants 01.0042 and 01.0043.
    let young =
        create_passthrough(&client, &ns, "young", spec("vm-young", &[1], &[0x42, 0x43], json!("All"), &sel)).await;
    let young_uid = young.metadata.uid.clone().expect("uid");
    let p = passthrough_until(&client, &ns, "young", "Conflict on both nodes", |p| condition_is(p, "Conflict", "True"))
        .await;
    let msg = condition_message(&p, "Conflict");
    assert!(msg.starts_with("ApqnConflict: "), "{msg}");
    for n in [&a.node, &b.node] {
        assert!(msg.contains(&format!("node {n}: APQNs 01.0042 are held by {ns}/old")), "{msg}");
    }
    assert!(!msg.contains("01.0043"), "only the shared APQN: {msg}");
    assert!(condition_is(&p, "Ready", "False"));
    assert!(!has_entry(&client, &a.node, &young_uid).await && !has_entry(&client, &b.node, &young_uid).await);
    assert!(!a.has_mdev(&young_uid) && !b.has_mdev(&young_uid));
    assert!(a.has_mdev(&old_uuid) && b.has_mdev(&old_uuid), "the older one keeps its mdevs");

    // The older one goes: the younger is placed.
    delete_passthrough(&client, &ns, "old").await;
    passthrough_until(&client, &ns, "young", "the younger prepared, no conflict", |p| {
        condition_is(p, "Conflict", "False") && p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2)
    })
    .await;
    assert!(a.has_mdev(&young_uid) && b.has_mdev(&young_uid));
    assert!(!a.has_mdev(&old_uuid) && !b.has_mdev(&old_uuid));
    drop(ctl);
}

#[tokio::test]
async fn serial_two_passthroughs_with_one_uuid_the_younger_gets_uuid_in_use() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "uuid").await;
    let run = unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &sel).await;
    let a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let mut ctl = ControllerProcess::start(&c, "ctl").await;
    ctl.wait_ready();
    let (client, ns) = (c.client.clone(), ns.name.clone());
    let uuid = format!("{}-0000-4000-8000-000000000001", &support::suffix());
    let mut s = spec("vm1", &[0], &[0x44], json!(0), &sel);
    s["uuid"] = json!(uuid);
    create_passthrough(&client, &ns, "first", s.clone()).await;
    passthrough_until(&client, &ns, "first", "the first one Ready", |p| condition_is(p, "Ready", "True")).await;
    s["vmName"] = json!("vm2");
    s["domains"] = json!([0x45]);
    s["controlDomains"] = json!([0x45]);
    create_passthrough(&client, &ns, "second", s).await;
    let p = passthrough_until(&client, &ns, "second", "UuidInUse", |p| condition_is(p, "Conflict", "True")).await;
    let msg = condition_message(&p, "Conflict");
    assert!(msg.starts_with("UuidInUse: ") && msg.contains(&format!("{ns}/first")), "{msg}");
    eventually("the first one still holds its mdev", || async { a.has_mdev(&uuid).then_some(()) }).await;
    let first = get_passthrough(&client, &ns, "first").await.expect("first");
    assert!(condition_is(&first, "Ready", "True") && condition_is(&first, "Conflict", "False"));
    drop(ctl);
}
