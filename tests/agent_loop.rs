//! The long-running agent against the real control plane, over a simulated host, with its own
//! least-privilege identity (a token bound to a pod on its fake node): it creates and reports its
//! CryptoNode, makes the mdevs of `spec.mdevs` with the same UUID, reports refusals with the
//! kernel's errno, and removes what is no longer desired — never while a guest uses it.

mod support;

use cryptopass::api::convert::status_from_inventory;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::cnode::{self, apply_mdevs, condition, mdev, observed, observed_current};
use support::{FakeNode, SimAgent, cluster, eventually, machine};

const U1: &str = "4b1d0000-0000-4000-8000-00000000a001";
const U2: &str = "4b1d0000-0000-4000-8000-00000000a002";

#[tokio::test]
async fn the_agent_creates_its_crypto_node_reporting_the_inventory_of_its_host() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    let cn = eventually("the agent's CryptoNode with a status", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed_current(n) && condition(n, "Synced").is_some())
    })
    .await;
    let status = cn.status.as_ref().unwrap();
    let want = status_from_inventory(&agent.inventory());
    assert_eq!(status.kernel, want.kernel, "kernel profile, release, features");
    assert_eq!(status.kernel.release.as_deref(), Some("6.19.0-cp"), "from the host's snapshot.json");
    assert_eq!(status.kernel.profile, "unknown", "migratable in features, no mdev yet");
    assert_eq!((&status.cards, &status.queue_groups), (&want.cards, &want.queue_groups));
    // 4 adapters × 85 domains, grouped per adapter: host queues 0-63, vfio_ap queues 64-84.
    assert_eq!(status.queue_groups.iter().map(|g| g.domains.len()).sum::<usize>(), 340);
    assert!(status.queue_groups.len() <= 8, "{:?}", status.queue_groups);
    assert_eq!((&status.apmask, &status.aqmask, status.card_count), (&want.apmask, &want.aqmask, 4));
    assert!(status.mdevs.is_empty());
    let synced = condition(&cn, "Synced").unwrap();
    assert_eq!((synced.status.as_str(), synced.observed_generation), ("True", cn.metadata.generation));

    let lease = eventually("the agent's Lease", || async {
        Api::<Lease>::namespaced(c.client.clone(), support::RELEASE_NAMESPACE)
            .get_opt(&format!("cryptopass-agent-{}", node.name))
            .await
            .ok()
            .flatten()
    })
    .await;
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(node.name.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert!(spec.renew_time.is_some());

    assert_eq!(agent.http_get("/healthz").map(|r| r.0), Some(200));
    let host_queues: usize = want
        .queue_groups
        .iter()
        .filter(|q| q.driver.as_deref().is_some_and(|d| d != "vfio_ap"))
        .map(|q| q.domains.len())
        .sum();
    assert_eq!(
        agent.metric("cryptopass_agent_queues{driver=\"host\"}"),
        Some(host_queues as f64),
        "{}",
        agent.metrics()
    );
    assert!(agent.metric("cryptopass_agent_apply_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert_eq!(agent.writes(), 0, "nothing desired: nothing written");
}

#[tokio::test]
async fn an_mdev_in_the_spec_appears_on_the_host_with_the_same_uuid_and_is_reported_synced() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    let m = cnode::manager("pt-uid-1");
    apply_mdevs(&c.client, &node.name, &m, &[mdev(U1, &[0, 1], &[0x40, 0x41], &[0x40], true)]).await;

    let cn = eventually("the mdev reported synced", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed_current(n) && observed(n, U1).is_some_and(|o| o.synced))
    })
    .await;
    let inv = agent.inventory();
    let on_host = inv.mdevs.get(U1).expect("the mdev exists on the simulated host, same UUID");
    assert_eq!(on_host.matrix.adapters.ids(), vec![0, 1]);
    assert_eq!(on_host.matrix.domains.ids(), vec![0x40, 0x41]);
    assert_eq!(on_host.matrix.control.ids(), vec![0x40]);
    let o = observed(&cn, U1).unwrap();
    assert!(o.managed && o.last_error.is_none(), "{o:?}");
    assert_eq!((o.adapters.clone(), o.domains.clone()), (vec![0, 1], vec![0x40, 0x41]));
    assert_eq!(cn.status.as_ref().unwrap().kernel.profile, "latest", "our mdev reveals the profile");
    assert!(condition(&cn, "Synced").unwrap().is_true());
    assert_eq!(agent.metric("cryptopass_agent_mdevs{state=\"synced\"}"), Some(1.0), "{}", agent.metrics());
    assert!(agent.metric("cryptopass_agent_sysfs_writes_total{result=\"ok\"}").unwrap_or(0.0) >= 2.0);

    // A second passthrough's entry, by its own field manager, beside the first.
    apply_mdevs(&c.client, &node.name, &cnode::manager("pt-uid-2"), &[mdev(U2, &[2], &[0x42], &[], false)]).await;
    eventually("both mdevs synced", || async {
        agent
            .crypto_node(&c.client)
            .await
            .filter(|n| observed_current(n) && [U1, U2].iter().all(|u| observed(n, u).is_some_and(|o| o.synced)))
    })
    .await;
    assert!(agent.has_mdev(U1) && agent.has_mdev(U2));
}

#[tokio::test]
async fn a_refused_mdev_reports_the_reason_and_the_kernels_errno_name() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    // z16 has 85 domains (0-84): domain 90 does not exist.
    apply_mdevs(&c.client, &node.name, &cnode::manager("pt-uid-r"), &[mdev(U1, &[0], &[90], &[], false)]).await;
    let cn = eventually("the refusal in status", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed_current(n) && observed(n, U1).is_some())
    })
    .await;
    let o = observed(&cn, U1).unwrap();
    assert!(!o.synced);
    let e = o.last_error.as_ref().expect("lastError");
    assert_eq!((e.reason.as_str(), e.errno.as_deref()), ("IdAboveMaximum", Some("ENODEV")), "{e:?}");
    let synced = condition(&cn, "Synced").unwrap();
    assert_eq!((synced.status.as_str(), synced.reason.as_str()), ("False", "IdAboveMaximum"));
    assert!(!agent.has_mdev(U1));
    assert_eq!(agent.writes(), 0, "a refusal writes nothing");
    assert_eq!(agent.metric("cryptopass_agent_mdevs{state=\"failed\"}"), Some(1.0));
}

#[tokio::test]
async fn removing_the_entry_removes_the_mdev_but_never_while_a_guest_uses_it() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    let m = cnode::manager("pt-uid-rm");
    apply_mdevs(&c.client, &node.name, &m, &[mdev(U1, &[0], &[0x43], &[0x43], true)]).await;
    eventually("the mdev synced", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed(n, U1).is_some_and(|o| o.synced))
    })
    .await;
    agent.set_in_use(U1, true);

    let cn = apply_mdevs(&c.client, &node.name, &m, &[]).await;
    assert!(cn.spec.mdevs.is_empty(), "the manager gave its entry up");
    let cn = eventually("the removal waiting for the guest", || async {
        agent.crypto_node(&c.client).await.filter(|n| {
            observed_current(n)
                && observed(n, U1).and_then(|o| o.last_error.as_ref()).is_some_and(|e| e.reason == "MdevInUse")
        })
    })
    .await;
    assert!(agent.has_mdev(U1), "never removed while in use");
    assert!(observed(&cn, U1).unwrap().in_use);
    assert_eq!(condition(&cn, "Synced").unwrap().reason, "MdevInUse");

    agent.set_in_use(U1, false);
    eventually("the mdev removed once released (next re-scan)", || async {
        let n = agent.crypto_node(&c.client).await?;
        (!agent.has_mdev(U1) && observed(&n, U1).is_none() && condition(&n, "Synced")?.is_true()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_write_the_kernel_fails_is_reported_with_its_errno_and_retried_by_the_next_pass() {
    let c = cluster().await;
    let node = FakeNode::create(&c, "z16").await;
    let agent = SimAgent::start(&c, &node, machine("z16-cca")).await;
    eventually("the CryptoNode", || agent.crypto_node(&c.client)).await;
    let r = agent.ctl(serde_json::json!({"op": "fail_write", "n": 1, "errno": libc::EIO}));
    assert!(r.ok, "{:?}", r.error);
    apply_mdevs(&c.client, &node.name, &cnode::manager("pt-uid-f"), &[mdev(U1, &[1], &[0x45], &[], false)]).await;
    let cn = eventually("the failure in status", || async {
        agent
            .crypto_node(&c.client)
            .await
            .filter(|n| observed_current(n) && observed(n, U1).and_then(|o| o.last_error.as_ref()).is_some())
    })
    .await;
    let e = observed(&cn, U1).unwrap().last_error.clone().unwrap();
    assert_eq!((e.reason.as_str(), e.errno.as_deref()), ("WriteFailed", Some("EIO")), "{e:?}");
    assert!(e.message.contains("create"), "names the attribute: {}", e.message);
    assert_eq!(condition(&cn, "Synced").unwrap().reason, "WriteFailed");
    assert!(agent.metric("cryptopass_agent_sysfs_writes_total{result=\"error\"}").unwrap_or(0.0) >= 1.0);
    eventually("the next pass creates it", || async {
        agent.crypto_node(&c.client).await.filter(|n| observed(n, U1).is_some_and(|o| o.synced))
    })
    .await;
    assert!(agent.has_mdev(U1));
}
