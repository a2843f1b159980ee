//! The agent survives what happens to it: a clean restart (SIGTERM) and a crash (SIGKILL) lose
//! nothing and write nothing to sysfs; a hardware change is reported by the next re-scan without
//! a spec change; a deleted CryptoNode is created again.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::cnode::{self, apply_mdevs, condition, mdev, observed, observed_current};
use support::{FakeNode, SimAgent, cluster, eventually, machine};

use cryptopass::api::CryptoNode;

const U1: &str = "4b1d0000-0000-4000-8000-00000000b001";

/// The agent's Lease's `renewTime`.
async fn renewed(c: &support::Cluster, node: &str) -> Option<MicroTime> {
    let l = Api::<Lease>::namespaced(c.client.clone(), support::RELEASE_NAMESPACE)
        .get_opt(&format!("cryptopass-agent-{node}"))
        .await
        .ok()??;
    l.spec?.renew_time
}

/// Waits until the running agent process has finished `n` passes (its own metrics).
async fn passes(agent: &SimAgent, n: f64) {
    eventually(&format!("{n} passes of the agent"), || async {
        (agent.metric("cryptopass_agent_apply_duration_seconds_count").unwrap_or(0.0) >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_restart_or_a_crash_of_the_agent_loses_nothing_and_writes_nothing() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z15").await;
    let mut agent = SimAgent::start(&c, &node, machine("z15-cex7")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    apply_mdevs(&c.client, &node.name, &cnode::manager("pt-uid-rs"), &[mdev(U1, &[0, 1], &[0x44], &[0x44], true)])
        .await;
    let before = eventually("the mdev synced", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed_current(n) && observed(n, U1).is_some_and(|o| o.synced))
    })
    .await;
    let writes = agent.writes();
    assert!(writes >= 2, "create + ap_config at least, got {writes}");
    let first_renewal = eventually("the Lease", || renewed(&c, &node.name)).await;

    agent.restart_agent();
    passes(&agent, 2.0).await;
    assert_eq!(
        agent.writes(),
        writes,
        "a restarted agent writes nothing to a converged host: {:?}\n{}",
        agent.ctl(json!({"op": "writes"})).writes,
        agent.log()
    );
    assert!(agent.has_mdev(U1));
    let after = agent.crypto_node(&c.client).await.unwrap();
    assert!(observed(&after, U1).is_some_and(|o| o.synced && o.managed), "still ours and synced");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "and its status is unchanged");

    agent.kill_agent();
    agent.start_agent();
    passes(&agent, 2.0).await;
    assert_eq!(agent.writes(), writes, "nor after a crash");
    let after = agent.crypto_node(&c.client).await.unwrap();
    assert!(observed(&after, U1).is_some_and(|o| o.synced && o.managed));
    assert!(condition(&after, "Synced").unwrap().is_true());
    eventually("the Lease renewed (every 10 s)", || async {
        renewed(&c, &node.name).await.filter(|t| *t > first_renewal)
    })
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_agent_cleanly() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let mut agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    let status = agent.stop_agent();
    assert!(status.success(), "exit status {status}:\n{}", agent.log());
}

#[tokio::test]
async fn a_hardware_change_is_reported_by_the_next_rescan() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    let card3_online = |n: &CryptoNode| n.status.as_ref()?.cards.iter().find(|c| c.id == 3).map(|c| c.online);
    eventually("card 03 online in status", || async {
        agent.crypto_node(&c.client).await.filter(|n| card3_online(n) == Some(true))
    })
    .await;
    let r = agent.ctl(json!({"op": "card", "id": 3, "online": false}));
    assert!(r.ok, "{:?}", r.error);
    eventually("card 03 offline in status", || async {
        agent.crypto_node(&c.client).await.filter(|n| card3_online(n) == Some(false))
    })
    .await;
}

#[tokio::test]
async fn a_deleted_crypto_node_is_created_again() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    let first = eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    Api::<CryptoNode>::all(c.client.clone()).delete(&node.name, &DeleteParams::default()).await.unwrap();
    eventually("a new CryptoNode with a status", || async {
        agent
            .crypto_node(&c.client)
            .await
            .filter(|n| n.metadata.uid != first.metadata.uid && condition(n, "Synced").is_some())
    })
    .await;
}
