//! Entries whose passthrough is gone without the finalizer having run (someone removed it by
//! hand, or the object was force-deleted): the leader gives them up, from the caches, so their
//! agents release the mdevs (never while in use — that is the agent's rule) and the labels go.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::apply::manager;
use super::error::Result;
use super::watch::Stores;
use crate::api::{CryptoNode, CryptoPassthrough, prepared_label};

/// How often the leader looks for orphans.
pub const PERIOD: Duration = Duration::from_secs(60);

/// An entry on `node` of a passthrough (uid, UUID) that no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Orphan {
    pub node: String,
    pub uid: String,
    pub uuid: String,
}

/// Pure: the entries of `cnodes` naming a passthrough uid that `passthroughs` do not have.
pub fn orphans<'a>(
    cnodes: impl IntoIterator<Item = &'a CryptoNode>,
    passthroughs: impl IntoIterator<Item = &'a CryptoPassthrough>,
) -> Vec<Orphan> {
    let live: BTreeSet<&str> = passthroughs.into_iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
    let mut out: Vec<Orphan> = cnodes
        .into_iter()
        .flat_map(|c| {
            let node = c.name_any();
            c.spec.mdevs.iter().filter_map(move |m| {
                let uid = &m.passthrough.as_ref()?.uid;
                (!uid.is_empty()).then(|| Orphan { node: node.clone(), uid: uid.clone(), uuid: m.uuid.clone() })
            })
        })
        .filter(|o| !live.contains(o.uid.as_str()))
        .collect();
    out.sort();
    out
}

/// Gives up every orphaned entry and its labels; returns how many entries.
pub async fn collect(client: &Client, stores: &Stores) -> Result<usize> {
    let cnodes = stores.cnodes.state();
    let pts = stores.passthroughs.state();
    let found = orphans(cnodes.iter().map(|c| c.as_ref()), pts.iter().map(|p| p.as_ref()));
    let cn_api: Api<CryptoNode> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    for o in &found {
        tracing::info!(node = %o.node, uid = %o.uid, uuid = %o.uuid, "giving up the entry of a passthrough that is gone");
        let pp = PatchParams::apply(&manager(&o.uid));
        let body =
            json!({"apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoNode", "metadata": {"name": o.node}});
        cn_api.patch(&o.node, &pp, &Patch::Apply(&body)).await?;
        let key = prepared_label(&o.uuid);
        for n in stores.nodes.state().iter().filter(|n| n.labels().contains_key(&key)) {
            let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name_any()}});
            node_api.patch(&n.name_any(), &pp, &Patch::Apply(&body)).await?;
        }
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CryptoNodeSpec, DesiredMdev, PassthroughRef};

    fn entry(uuid: &str, uid: &str) -> DesiredMdev {
        DesiredMdev {
            uuid: uuid.into(),
            passthrough: Some(PassthroughRef { namespace: "ns".into(), name: "p".into(), uid: uid.into() }),
            adapters: vec![1],
            domains: vec![5],
            control_domains: vec![],
            migratable: true,
            role: None,
            verdict: None,
        }
    }

    #[test]
    fn entries_of_passthroughs_that_are_gone_are_orphans_and_nothing_else_is() {
        let mut live = crate::controller::tests::passthrough("p");
        live.metadata.uid = Some("live".into());
        let c = CryptoNode::new("n1", CryptoNodeSpec { mdevs: vec![entry("u1", "live"), entry("u2", "gone")] });
        let mut foreign = entry("u3", "");
        foreign.passthrough = None;
        let d = CryptoNode::new("n2", CryptoNodeSpec { mdevs: vec![foreign] });
        let found = orphans([&c, &d], [&live]);
        assert_eq!(found, vec![Orphan { node: "n1".into(), uid: "gone".into(), uuid: "u2".into() }]);
    }
}
