//! The migration gate end to end with KubeVirt's own virt-controller (issue 6, item 8): our
//! controller prepares a passthrough on simulated s390x hosts, our webhooks are registered with a
//! `caBundle` and called by kube-apiserver over TLS, virt-controller turns an admitted VMIM into a
//! target pod and the real kube-scheduler places it. The test plays only kubelet and virt-handler.
//! `serial_*`: the controller's leader Lease is one per cluster.

mod controller_support;
mod support;
mod webhook_cluster;
mod webhook_support;

use serde_json::json;

use controller_support::{ControllerProcess, condition_is, create_passthrough, node_entry, passthrough_until, spec};
use support::{KubeVirt, SimAgent, VmiOptions, cluster, machine};
use webhook_cluster::{GateServer, Registered, migrate};

const DOMAIN: u8 = 0x45;

#[tokio::test]
async fn serial_an_admitted_migration_lands_on_a_prepared_compatible_node_never_on_a_free_incompatible_one() {
    let c = cluster().await;
    let kv = KubeVirt::new(&c, "gate-kv").await;
    let ns = kv.namespace().to_string();
    let client = c.client.clone();

    // The VM starts on the only schedulable host of the pool, a z16; then a second, equivalent
    // z16 and a z15 (older CEX7 cards: the kernel refuses z16 → z15) join, both free.
    let na = kv.node(&c, "z16a", &[]).await;
    let a = SimAgent::start(&c, &na, machine("z16-cca")).await;
    let source = kv.run_vmi("vm1", &VmiOptions::default()).await;
    assert_eq!(source, a.node);
    let nb = kv.node(&c, "z16b", &[]).await;
    let nc = kv.node(&c, "z15", &[]).await;
    let b = SimAgent::start(&c, &nb, machine("z16-b")).await;
    let old = SimAgent::start(&c, &nc, machine("z15-cex7")).await;

    let mut ctl = ControllerProcess::start(&c, "gate-kv").await;
    ctl.wait_ready();
    let pool = [(support::kubevirt::POOL_LABEL, kv.pool.as_str())];
    let pt = create_passthrough(&client, &ns, "p1", spec("vm1", &[0, 1], &[DOMAIN], json!(1), &pool)).await;
    let uuid = pt.metadata.uid.clone().expect("a uid");
    let p = passthrough_until(&client, &ns, "p1", "active on z16a, z16b a prepared standby, migration ready", |p| {
        condition_is(p, "MigrationReady", "True")
            && node_entry(p, &b.node).is_some_and(|n| n.prepared)
            && node_entry(p, &old.node).is_some_and(|n| n.verdict == "Incompatible")
    })
    .await;
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid) && !old.has_mdev(&uuid), "{:?}", p.status);

    // Our gate, registered for this namespace, served from its own watch caches.
    let gate = GateServer::start(&client, &ns).await;
    let _registered = Registered::install(&c, &ns, &gate, "true").await;

    // A migration to the z15 is refused at create, in the kernel's words.
    let to_z15 = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": "to-z15-", "namespace": ns},
        "spec": {"vmiName": "vm1", "addedNodeSelector": {"kubernetes.io/hostname": old.node}},
    });
    let message = support::eventually("kube-apiserver to call our gate", || {
        let (client, v) = (client.clone(), to_z15.clone());
        async move {
            match migrate(&client, &v).await {
                Err(kube::Error::Api(s)) if s.message.contains("denied the request") => Some(s.message),
                Err(_) => None,
                Ok(o) => panic!("the migration to the z15 was admitted: {:?}", o.data),
            }
        }
    })
    .await;
    assert!(message.contains("AP type of source (0e) not compatible with target (0d)"), "{message}");
    assert!(message.contains(&old.node), "{message}");

    // A migration without a destination: admitted, steered by our label; virt-controller's target
    // pod carries it and kube-scheduler binds it to the prepared z16b, never to the free z15.
    let m = kv.migrate("vm1", &[], &[]).await;
    let vmim = kv.vmim(&m).await;
    let key = cryptopass::api::prepared_label(&uuid);
    assert_eq!(vmim.data["spec"]["addedNodeSelector"][&key], json!("true"), "{:?}", vmim.data["spec"]);
    let pod = kv.target_pod_created(&m).await;
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.clone()).unwrap_or_default();
    assert_eq!(selector.get(&key).map(String::as_str), Some("true"), "target pod nodeSelector {selector:?}");
    let (_, target) = kv.target_pod(&m).await;
    assert_eq!(target, b.node, "kube-scheduler placed the target on a prepared compatible node");

    // The handshake completes: the VM runs on z16b, the passthrough follows it, z16a stays a
    // prepared standby (same UUID on both), the z15 never got an mdev.
    assert_eq!(kv.complete_migration("vm1", &m).await, b.node);
    passthrough_until(&client, &ns, "p1", "z16b active, z16a a prepared standby", |p| {
        p.status.as_ref().and_then(|s| s.active_node.as_deref()) == Some(b.node.as_str())
            && node_entry(p, &a.node).is_some_and(|n| n.prepared && n.role == "Standby")
            && condition_is(p, "MigrationReady", "True")
    })
    .await;
    assert!(a.has_mdev(&uuid) && b.has_mdev(&uuid) && !old.has_mdev(&uuid));
    assert!(gate.requests("mutate", "mutated") >= 1, "our mutating webhook patched the VMIM");
    ctl.stop();
}
