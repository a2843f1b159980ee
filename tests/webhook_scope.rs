//! The leader keeps the webhooks' `matchConditions` equal to the passthroughs (architecture.md,
//! "Webhooks"): an entry `namespace/vmName` per passthrough, applied with its own field manager,
//! only while it leads and only once its cache synced, repaired when someone puts `false` back.

mod support;
mod webhook_cluster;
mod webhook_support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::sync::{oneshot, watch};

use cryptopass::api::CryptoPassthrough;
use cryptopass::webhook::scope::{self, FIELD_MANAGER, Keeper};
use cryptopass::webhook::watch::Watches;
use support::{TestNamespace, cluster, eventually, unique};
use webhook_cluster::Registered;
use webhook_support::{Pki, passthrough};

#[tokio::test]
async fn the_leader_keeps_the_match_conditions_equal_to_the_passthroughs_and_repairs_them() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c, "scope").await;
    let client = c.client.clone();
    // Nobody serves this address: with `false` (as shipped) nothing is ever sent there.
    let reg =
        Registered::install_at(&c, &ns.name, "127.0.0.1:9".parse().expect("addr"), &Pki::new("ca").ca_pem(), "false")
            .await;
    let watches = Watches::start(client.clone(), Some(&ns.name));
    let (leader_tx, leader_rx) = watch::channel(false);
    let keeper = Keeper {
        validating: reg.validate.clone(),
        mutating: reg.mutate.clone(),
        poll: Duration::from_millis(50),
        repair: Duration::from_secs(1),
        ..Keeper::new(client.clone(), watches.caches.passthroughs.clone(), leader_rx)
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(keeper.run(watches.synced(), async move { drop(stop_rx.await) }));

    let api: Api<CryptoPassthrough> = Api::namespaced(client.clone(), &ns.name);
    let nowhere = json!({"nodeSelector": {"cryptopass-test-nowhere": unique("none")}});
    for (name, vm) in [("p1", "vm1"), ("p2", "vm2")] {
        let mut pt = passthrough(&ns.name, name, vm, &uuid::Uuid::new_v4().to_string());
        pt["spec"]["placement"] = nowhere.clone();
        let pt: CryptoPassthrough = serde_json::from_value(pt).expect("a passthrough");
        api.create(&PostParams::default(), &pt).await.expect("created");
    }
    let expected = |vms: &[&str]| {
        let e: BTreeSet<String> = vms.iter().map(|v| format!("{}/{v}", ns.name)).collect();
        Some(scope::expression(&e))
    };
    let until = |what: &'static str, want: Option<String>| {
        let (reg, client) = (&reg, client.clone());
        async move {
            eventually(what, || {
                let (client, want) = (client.clone(), want.clone());
                async move {
                    let (v, m) = reg.expressions(&client).await;
                    (v == want && m == want).then_some(())
                }
            })
            .await
        }
    };

    leader_tx.send(true).expect("the keeper listens");
    until("both passthroughs' VMIs in both configurations", expected(&["vm1", "vm2"])).await;
    let live = Api::<ValidatingWebhookConfiguration>::all(client.clone()).get(&reg.validate).await.expect("config");
    let managers: Vec<String> =
        live.metadata.managed_fields.iter().flatten().filter_map(|f| f.manager.clone()).collect();
    assert!(managers.iter().any(|m| m == FIELD_MANAGER), "applied by its own field manager: {managers:?}");

    api.delete("p2", &DeleteParams::default()).await.expect("deleted");
    until("the deleted passthrough's entry to go", expected(&["vm1"])).await;

    // A `helm upgrade` (or an admin) puts the shipped `false` back: repaired.
    reg.set_expression_as(&client, "helm", "false").await;
    until("the leader to repair the expression", expected(&["vm1"])).await;

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the keeper stops").expect("ran");
}

#[test]
fn the_apply_body_is_a_valid_partial_configuration() {
    let body = scope::apply_body("MutatingWebhookConfiguration", "cfg", "vmim.mutate.crypto.s390x.dev", "false");
    let _: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
        serde_json::from_value(body).expect("deserializes as the typed configuration");
}
