//! Controller restarts and leader hand-over lose nothing: two replicas of `cryptopass controller`
//! (each with the controller's own identity) elect one leader on the Lease
//! `cryptopass-controller`; killing it hands over, and the state kept in the API (CryptoNode
//! entries, labels, status) lets the next leader go on without moving or recreating any mdev.

mod controller_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use controller_support::*;
use support::{FakeNode, RELEASE_NAMESPACE, SimAgent, TestNamespace, cluster, eventually_within, machine, unique};

async fn holder(client: &kube::Client) -> Option<String> {
    let lease =
        Api::<Lease>::namespaced(client.clone(), RELEASE_NAMESPACE).get_opt("cryptopass-controller").await.ok()??;
    lease.spec?.holder_identity
}

#[tokio::test]
async fn serial_leader_hand_over_and_restarts_lose_nothing() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "ha").await;
    let run = unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &sel).await;
    let nb = FakeNode::create_with_labels(&c, "z16b", &sel).await;
    let a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let b = SimAgent::start(&c, &nb, machine("z16-b")).await;
    let (client, ns) = (c.client.clone(), ns.name.clone());
    let mut one = ControllerProcess::start(&c, "one").await;
    let mut two = ControllerProcess::start(&c, "two").await;
    one.wait_ready();
    two.wait_ready();
    let names = [one.identity_name.clone(), two.identity_name.clone()];
    let leader = eventually_within(Duration::from_secs(60), "one of our two replicas to lead", || async {
        holder(&client).await.filter(|h| names.contains(h))
    })
    .await;

    let p = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[0x46], json!(1), &sel)).await;
    let uuid = p.metadata.uid.clone().expect("uid");
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &a.node, None).await;
    let before = passthrough_until(&client, &ns, "p1", "Ready and migration-ready", |p| {
        condition_is(p, "Ready", "True") && condition_is(p, "MigrationReady", "True")
    })
    .await;
    let writes = (a.writes(), b.writes());

    // The leader crashes: the other replica takes the Lease once it expires (15 s).
    let (crashed, survivor) = if leader == one.identity_name { (&mut one, &mut two) } else { (&mut two, &mut one) };
    crashed.kill();
    let next = eventually_within(Duration::from_secs(60), "the other replica to take the Lease", || async {
        holder(&client).await.filter(|h| *h == survivor.identity_name)
    })
    .await;
    assert_eq!(next, survivor.identity_name);
    // The new leader works: a second passthrough gets placed…
    create_passthrough(&client, &ns, "p2", spec("vm2", &[0, 1], &[0x47], json!(1), &sel)).await;
    passthrough_until(&client, &ns, "p2", "p2 prepared by the new leader", |p| {
        condition_is(p, "Ready", "True") && p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2)
    })
    .await;
    // …and nothing of p1 moved or was made again.
    let after = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert_eq!(after.status.as_ref().map(|s| &s.nodes), before.status.as_ref().map(|s| &s.nodes));
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid));

    // A clean restart of the leader, with the crashed replica back as a standby: again nothing lost.
    crashed.restart();
    survivor.restart();
    survivor.wait_ready();
    crashed.wait_ready();
    eventually_within(Duration::from_secs(60), "a leader among the restarted replicas", || async {
        holder(&client).await.filter(|h| names.contains(h))
    })
    .await;
    // Deleting p2 proves a leader acts after the restart; p1's writes on the hosts stay those of p2 only.
    delete_passthrough(&client, &ns, "p2").await;
    eventually_within(Duration::from_secs(60), "p2 released", || async {
        get_passthrough(&client, &ns, "p2").await.is_none().then_some(())
    })
    .await;
    let p1 = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert_eq!(p1.status.as_ref().map(|s| &s.nodes), before.status.as_ref().map(|s| &s.nodes), "p1 untouched");
    assert!(condition_is(&p1, "Ready", "True") && condition_is(&p1, "MigrationReady", "True"));
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid));
    // p1's mdevs were never removed or made again: no write about its UUID since the snapshot.
    for (host, since) in [(&a, writes.0), (&b, writes.1)] {
        let about = writes_about(host, &uuid, since);
        assert!(about.is_empty(), "writes about p1 on {} after hand-over and restarts: {about:?}", host.node);
    }
}
