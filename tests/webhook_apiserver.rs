//! The migration gate called by the real kube-apiserver over TLS (testbed.md): our configurations
//! from deploy/webhooks.yaml registered with `clientConfig.url` and a `caBundle`, narrowed by
//! `matchConditions` to the VMIs of this test's passthroughs, VMIMs created as virt-api creates
//! them after `virtctl migrate`. The passthroughs' status is written by the test (status
//! subresource), so these tests run in the serial group: no controller runs meanwhile.

mod support;
mod webhook_cluster;
mod webhook_support;

use serde_json::{Value, json};

use cryptopass::webhook::scope;
use support::{FakeNode, TestNamespace, cluster, unique};
use webhook_cluster::*;
use webhook_support::{key, node_entry, passthrough, status, vmim};

const FACILITY: &str = "Facility bit 3 set in source queue 01.0005; Facility bit 3 not set in target queue 01.0005";

fn denied(webhook: &str, message: &str) -> String {
    format!("admission webhook \"{webhook}\" denied the request: {message}")
}

fn validate_denied(message: &str) -> String {
    denied(cryptopass::webhook::VALIDATING_WEBHOOK, message)
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Nodes a (active) and b (prepared standby, zone z1) carry every passthrough's label; c none.
struct Bed {
    c: support::Cluster,
    ns: TestNamespace,
    a: FakeNode,
    b: FakeNode,
    cn: FakeNode,
    zone: String,
    uuids: Vec<(String, String)>,
}

impl Bed {
    async fn new(vms: &[&str]) -> Bed {
        let c = cluster().await;
        let ns = TestNamespace::create(&c, "gate").await;
        let uuids: Vec<(String, String)> = vms.iter().map(|v| (v.to_string(), new_uuid())).collect();
        let keys: Vec<String> = uuids.iter().map(|(_, u)| key(u)).collect();
        let zone = unique("zone-key");
        let mut labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "true")).collect();
        let a = FakeNode::create_with_labels(&c, "gate-a", &labels).await;
        labels.push((zone.as_str(), "z1"));
        let b = FakeNode::create_with_labels(&c, "gate-b", &labels).await;
        let cn = FakeNode::create(&c, "gate-c").await;
        Bed { c, ns, a, b, cn, zone, uuids }
    }

    fn uuid(&self, vm: &str) -> &str {
        self.uuids.iter().find(|(v, _)| v == vm).map(|(_, u)| u.as_str()).expect("a VM of the bed")
    }

    fn vmim(&self, vm: &str, added: Option<Value>) -> Value {
        vmim(&self.ns.name, vm, added, &[])
    }

    /// `p-<vm>` of VM `vm`, active on a, with the standard status of the bed.
    async fn passthrough(&self, vm: &str, spec: Value, ready: bool, nodes: Vec<Value>) {
        let mut pt = passthrough(&self.ns.name, &format!("p-{vm}"), vm, self.uuid(vm));
        if let Some(m) = spec.as_object() {
            for (k, v) in m {
                pt["spec"][k] = v.clone();
            }
        }
        passthrough_with_status(&self.c.client, &self.ns.name, pt, status(self.uuid(vm), &self.a.name, ready, nodes))
            .await;
    }

    /// Active a, prepared Equivalent standby b, incompatible candidate c.
    fn good_nodes(&self) -> Vec<Value> {
        vec![
            node_entry(&self.a.name, "Active", true, "Equivalent", json!([])),
            node_entry(&self.b.name, "Standby", true, "Equivalent", json!([])),
            node_entry(
                &self.cn.name,
                "Candidate",
                false,
                "Incompatible",
                json!([{"code": "FacilityDiffers", "apqn": "01.0005", "message": FACILITY}]),
            ),
        ]
    }

    fn expression(&self) -> String {
        scope::expression(&self.uuids.iter().map(|(v, _)| format!("{}/{v}", self.ns.name)).collect())
    }
}

#[tokio::test]
async fn serial_kube_apiserver_steers_admitted_vmims_and_refuses_each_reason_with_its_message() {
    let bed = Bed::new(&["vm-ok", "vm-off", "vm-notready", "vm-kernel", "vm-none"]).await;
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    let (a, b, cn) = (bed.a.name.clone(), bed.b.name.clone(), bed.cn.name.clone());
    let kernel = format!(
        "source host {a} cannot migrate vfio-ap guests: its kernel lacks vfio-ap migration (`migratable` missing \
         from /sys/devices/vfio_ap/matrix/features)"
    );
    bed.passthrough("vm-ok", json!({}), true, bed.good_nodes()).await;
    bed.passthrough("vm-off", json!({"migration": {"enabled": false}}), true, bed.good_nodes()).await;
    bed.passthrough("vm-notready", json!({}), false, bed.good_nodes()).await;
    let kernel_reason = json!([{"code": "KernelCannotMigrate", "message": kernel}]);
    bed.passthrough(
        "vm-kernel",
        json!({}),
        true,
        vec![
            node_entry(&a, "Active", true, "Incompatible", kernel_reason.clone()),
            node_entry(&b, "Standby", true, "Incompatible", kernel_reason),
        ],
    )
    .await;
    bed.passthrough(
        "vm-none",
        json!({}),
        true,
        vec![
            node_entry(&a, "Active", true, "Equivalent", json!([])),
            node_entry(
                &b,
                "Candidate",
                false,
                "Incompatible",
                json!([{"code": "FacilityDiffers", "apqn": "01.0005", "message": FACILITY}]),
            ),
            node_entry(&cn, "Standby", false, "Compatible", json!([])),
        ],
    )
    .await;
    for vm in ["vm-ok", "vm-off", "vm-notready", "vm-kernel", "vm-none", "vm-plain"] {
        running_vmi(&client, &ns, vm, &a, json!({})).await;
    }
    let server = GateServer::start(&client, &ns).await;
    let _registered = Registered::install(&bed.c, &ns, &server, &bed.expression()).await;
    let off = "CryptoPassthrough p-vm-off: migration is disabled (spec.migration.enabled: false)";
    until_refused(&client, &bed.vmim("vm-off", None), &validate_denied(off)).await;

    // A VMI without a passthrough: untouched, and never even sent to us (matchConditions).
    let sent = |s: &GateServer| {
        ["allowed", "denied", "mutated", "error"]
            .iter()
            .map(|d| s.requests("mutate", d) + s.requests("validate", d))
            .sum::<u64>()
    };
    let before = sent(&server);
    let plain = migrate(&client, &bed.vmim("vm-plain", None)).await.expect("a VMIM of a VMI without passthrough");
    assert!(plain.metadata.name.as_deref().is_some_and(|n| n.starts_with("kubevirt-migrate-vm-")));
    assert_eq!(plain.data["spec"], json!({"vmiName": "vm-plain"}), "untouched");
    assert_eq!(sent(&server), before, "kube-apiserver did not call us for it");

    // Admitted, and steered onto prepared nodes by our pair.
    let k = key(bed.uuid("vm-ok"));
    let ok = migrate(&client, &bed.vmim("vm-ok", None)).await.expect("an admitted VMIM");
    assert_eq!(ok.data["spec"]["addedNodeSelector"], json!({k.clone(): "true"}));
    let ok = migrate(&client, &bed.vmim("vm-ok", Some(json!({bed.zone.clone(): "z1"})))).await.expect("admitted");
    assert_eq!(ok.data["spec"]["addedNodeSelector"], json!({k.clone(): "true", bed.zone.clone(): "z1"}));
    assert!(server.requests("mutate", "mutated") >= 2 && server.requests("validate", "allowed") >= 2);

    // Each reason, with its message, as `kubectl` and `virtctl` show it.
    let cases = [
        ("vm-off", None, off.to_string()),
        (
            "vm-notready",
            None,
            format!(
                "CryptoPassthrough p-vm-notready is not Ready (NotSynced: waiting for the agent of the active node \
                 {a} to sync mdev {})",
                bed.uuid("vm-notready")
            ),
        ),
        ("vm-kernel", None, format!("CryptoPassthrough p-vm-kernel: active node {a}: {kernel}")),
        (
            "vm-none",
            None,
            format!(
                "CryptoPassthrough p-vm-none: no prepared compatible target for a VM on {a}: {b} Incompatible: \
                 {FACILITY}; {cn} not prepared yet"
            ),
        ),
        (
            "vm-ok",
            Some(json!({bed.zone.clone(): "elsewhere"})),
            format!(
                "CryptoPassthrough p-vm-ok: no prepared compatible target for a VM on {a}: {b} has {}=z1, not \
                 elsewhere; {cn} Incompatible: {FACILITY}",
                bed.zone
            ),
        ),
        (
            "vm-ok",
            Some(json!({k.clone(): "false"})),
            format!(
                "CryptoPassthrough p-vm-ok: addedNodeSelector sets {k}=false; cryptopass steers the target with \
                 {k}=true, leave that key out"
            ),
        ),
    ];
    for (vm, added, message) in cases {
        let got = refusal(migrate(&client, &bed.vmim(vm, added.clone())).await);
        assert_eq!(got, validate_denied(&message), "{vm} {added:?}");
        assert!(got.len() < 400, "one or two lines: {} characters", got.len());
    }

    // An evacuation (a drain) gets the same rules; the message says that the drain waits.
    let evac = vmim(&ns, "vm-off", None, &[("kubevirt.io/evacuationMigration", &a)]);
    assert_eq!(
        refusal(migrate(&client, &evac).await),
        validate_denied(&format!("evacuation of node {a} waits: {off}"))
    );
    let evac = vmim(&ns, "vm-ok", None, &[("kubevirt.io/evacuationMigration", &a)]);
    migrate(&client, &evac).await.expect("an admitted evacuation");
}

#[tokio::test]
async fn serial_with_every_replica_down_only_the_vmims_of_our_vmis_are_refused() {
    let bed = Bed::new(&["vm-ok"]).await;
    let (client, ns) = (bed.c.client.clone(), bed.ns.name.clone());
    bed.passthrough("vm-ok", json!({"migration": {"enabled": false}}), true, bed.good_nodes()).await;
    running_vmi(&client, &ns, "vm-ok", &bed.a.name, json!({})).await;
    running_vmi(&client, &ns, "vm-plain", &bed.a.name, json!({})).await;
    let mut server = GateServer::start(&client, &ns).await;
    let registered = Registered::install(&bed.c, &ns, &server, &bed.expression()).await;
    let off = "CryptoPassthrough p-vm-ok: migration is disabled (spec.migration.enabled: false)";
    until_refused(&client, &bed.vmim("vm-ok", None), &validate_denied(off)).await;

    server.stop().await;
    migrate(&client, &bed.vmim("vm-plain", None))
        .await
        .expect("a VMI without passthrough is not blocked by our outage");
    let err = refusal(migrate(&client, &bed.vmim("vm-ok", None)).await);
    let url = format!("https://{}/mutate-vmim", server.addr);
    assert!(
        err.contains(&format!("failed calling webhook \"{}\"", cryptopass::webhook::MUTATING_WEBHOOK))
            && err.contains(&url),
        "failurePolicy Fail refuses our VMI's VMIM: {err}"
    );

    // As shipped (`false`), nothing is sent to us: even our VMI's VMIM passes an outage.
    registered.set_expression(&client, scope::NOTHING).await;
    support::eventually("the shipped matchConditions to take effect", || {
        let (client, v) = (client.clone(), bed.vmim("vm-ok", None));
        async move { migrate_dry(&client, &v).await.ok().map(|_| ()) }
    })
    .await;
}
