//! An apiserver restart loses nothing (issue 5 item 5): with the controller and two agents running
//! and a passthrough Ready, kube-apiserver is restarted (`hack/testbed/restart.sh`). The watches of
//! every process break and come back; afterwards the passthrough is still Ready (its condition
//! never changed: same transition time), no mdev was removed or made again (the simulators' write
//! logs name no write about its UUID), and a passthrough created after the restart becomes Ready.
//!
//! Named `exclusive_*`: it restarts the one shared apiserver, so it runs with no other test.

mod controller_support;
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use controller_support::*;
use cryptopass::api::condition::find;
use support::{FakeNode, SimAgent, TestNamespace, cluster, machine, repo, unique, wait_until};

/// `hack/testbed/restart.sh STATE kube-apiserver`: returns once the new apiserver is ready.
fn restart_apiserver() {
    let state = std::env::var("CRYPTOPASS_TESTBED_STATE").unwrap_or_else(|_| {
        panic!("CRYPTOPASS_TESTBED_STATE is not set: run with the test bed's env (source STATE/env)")
    });
    let out = Command::new("bash")
        .arg(repo().join("hack/testbed/restart.sh"))
        .arg(&state)
        .arg("kube-apiserver")
        .output()
        .unwrap_or_else(|e| panic!("running hack/testbed/restart.sh: {e}"));
    assert!(
        out.status.success(),
        "restarting kube-apiserver failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the apiserver authorizes `verb resource` for the ServiceAccount `sa` of the release
/// namespace (a SubjectAccessReview through `kubectl auth can-i`). A restarted kube-apiserver is
/// ready (`/readyz`) before its RBAC caches are filled: until then it answers 403 to our identities.
fn authorized(sa: &str, verb: &str, resource: &str) -> bool {
    let out = Command::new("kubectl")
        .args(["auth", "can-i", verb, resource, "-n", "cryptopass"])
        .arg(format!("--as=system:serviceaccount:cryptopass:{sa}"))
        .output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes")
}

/// The `Ready` condition's status and last transition time.
fn ready_since(p: &cryptopass::api::CryptoPassthrough) -> Option<(String, String)> {
    let c = find(&p.status.as_ref()?.conditions, "Ready")?;
    Some((c.status.clone(), format!("{:?}", c.last_transition_time)))
}

#[tokio::test]
async fn exclusive_an_apiserver_restart_loses_nothing() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "apirestart").await;
    let run = unique("run");
    let sel = [("cryptopass-test-run", run.as_str())];
    let na = FakeNode::create_with_labels(&c, "z16a", &sel).await;
    let nb = FakeNode::create_with_labels(&c, "z16b", &sel).await;
    let mut a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let mut b = SimAgent::start(&c, &nb, machine("z16-b")).await;
    let (client, ns) = (c.client.clone(), ns.name.clone());
    let mut controller = ControllerProcess::start(&c, "restart").await;
    controller.wait_ready();

    let p1 = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[0x46], json!(1), &sel)).await;
    let uuid = p1.metadata.uid.clone().expect("uid");
    create_vmi(&client, &ns, "vm1").await;
    set_vmi_running(&client, &ns, "vm1", &a.node, None).await;
    let before = passthrough_until(&client, &ns, "p1", "p1 Ready with a prepared standby", |p| {
        condition_is(p, "Ready", "True") && p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2)
    })
    .await;
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid), "p1's mdev on both hosts before the restart");
    let writes = (a.writes(), b.writes());

    restart_apiserver();
    wait_until(Duration::from_secs(180), "the restarted apiserver to authorize our identities again", || {
        authorized("cryptopass-controller", "watch", "cryptopassthroughs.crypto.s390x.dev")
            && authorized("cryptopass-agent", "update", "leases.coordination.k8s.io")
    });

    // Every process outlived the outage (their watches and Lease renewals failed meanwhile).
    assert!(controller.running(), "the controller exited:\n{}", controller.log_text());
    assert!(a.agent_running() && b.agent_running(), "an agent exited:\n{}\n{}", a.log(), b.log());
    // A passthrough created after the restart is placed and prepared: the controller's and the
    // agents' watches came back.
    create_passthrough(&client, &ns, "p2", spec("vm2", &[0, 1], &[0x47], json!(1), &sel)).await;
    create_vmi(&client, &ns, "vm2").await;
    set_vmi_running(&client, &ns, "vm2", &b.node, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let p2 = loop {
        let p = get_passthrough(&client, &ns, "p2").await;
        if let Some(p) = p
            .as_ref()
            .filter(|p| condition_is(p, "Ready", "True") && p.status.as_ref().is_some_and(|s| s.prepared_nodes == 2))
        {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "p2 not Ready with a prepared standby 120 s after the restart: {:?}\nmetrics: {}\ncontroller log:\n{}",
            p.and_then(|p| p.status),
            controller
                .http_get("/metrics")
                .map(|(_, b)| b
                    .lines()
                    .filter(|l| l.starts_with("cryptopass_reconcile"))
                    .collect::<Vec<_>>()
                    .join("\n"))
                .unwrap_or_default(),
            controller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let uuid2 = p2.metadata.uid.clone().expect("uid");
    assert!(a.has_mdev(&uuid2) && b.has_mdev(&uuid2), "p2's mdev on both hosts");

    // p1 stayed Ready all along (same transition time), on the same nodes, with the same mdevs.
    let after = get_passthrough(&client, &ns, "p1").await.expect("p1");
    assert_eq!(ready_since(&after), ready_since(&before), "p1's Ready condition changed across the restart");
    if after.status.as_ref().map(|s| &s.nodes) != before.status.as_ref().map(|s| &s.nodes) {
        let cn = b.crypto_node(&client).await.map(|c| (c.spec, c.status.map(|s| (s.mdevs, s.conditions))));
        panic!(
            "p1's nodes changed: {:?}\nbefore: {:?}\nb: {cn:?}\nwrites on b: {:?}",
            after.status.map(|s| s.nodes),
            before.status.map(|s| s.nodes),
            writes_about(&b, &uuid, writes.1)
        );
    }
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid), "p1's mdev on both hosts after the restart");
    for (host, since) in [(&a, writes.0), (&b, writes.1)] {
        let about = writes_about(host, &uuid, since);
        assert!(
            about.is_empty(),
            "writes about p1 on {} across the apiserver restart: {about:?}\ncontroller log:\n{}",
            host.node,
            controller.log_text()
        );
    }
    assert!(controller.running() && a.agent_running() && b.agent_running(), "a process exited at the end");
}
