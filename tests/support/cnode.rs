//! CryptoNode helpers: write `spec.mdevs` the way the controller does (server-side apply, one
//! field manager per passthrough: `cryptopass/<passthrough uid>`) and read the agent's status.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use cryptopass::api::condition::find;
use cryptopass::api::node::ObservedMdev;
use cryptopass::api::{Condition, CryptoNode};

/// The field manager the controller uses for one passthrough.
pub fn manager(passthrough_uid: &str) -> String {
    format!("cryptopass/{passthrough_uid}")
}

/// One `spec.mdevs` entry.
pub fn mdev(uuid: &str, adapters: &[u8], domains: &[u8], control: &[u8], migratable: bool) -> Value {
    json!({
        "uuid": uuid,
        "adapters": adapters,
        "domains": domains,
        "controlDomains": control,
        "migratable": migratable,
    })
}

/// Applies `entries` as the whole desired state of field manager `manager` on node `node`
/// (an empty list gives up every entry of that manager). Not forced: a conflict is a bug.
pub async fn apply_mdevs(client: &Client, node: &str, manager: &str, entries: &[Value]) -> CryptoNode {
    let mut body = json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1",
        "kind": "CryptoNode",
        "metadata": {"name": node},
    });
    if !entries.is_empty() {
        body["spec"] = json!({"mdevs": entries});
    }
    Api::<CryptoNode>::all(client.clone())
        .patch(node, &PatchParams::apply(manager), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("applying spec.mdevs of {node} as {manager}: {e}"))
}

/// The status entry of an mdev.
pub fn observed<'a>(n: &'a CryptoNode, uuid: &str) -> Option<&'a ObservedMdev> {
    n.status.as_ref()?.mdevs.iter().find(|m| m.uuid == uuid)
}

pub fn condition<'a>(n: &'a CryptoNode, type_: &str) -> Option<&'a Condition> {
    find(&n.status.as_ref()?.conditions, type_)
}

/// Whether the agent's status describes the current spec (`observedGeneration` caught up).
pub fn observed_current(n: &CryptoNode) -> bool {
    n.status.as_ref().and_then(|s| s.observed_generation).is_some()
        && n.status.as_ref().and_then(|s| s.observed_generation) == n.metadata.generation
}
