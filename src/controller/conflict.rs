//! Conflicts between passthroughs (architecture.md, "CryptoPassthrough fields", and issue 5 item 3):
//! one effective UUID for two passthroughs → the older wins, the other gets `UuidInUse`; two
//! passthroughs wanting one APQN on a node → the one that precedes there wins, the other is not
//! placed on that node and gets `Conflict` naming the node and the APQNs.
//!
//! Precedence on a node: a passthrough whose VM runs there first (the kernel never lets a queue of
//! a running guest go), then the older one (creationTimestamp, then namespace and name).

use std::collections::BTreeMap;

use crate::ap::{Apqn, Mask, Matrix};
use crate::api::CryptoPassthrough;

use super::inputs::{Cluster, age_key};

/// The matrix a passthrough asks for.
pub fn matrix_of(pt: &CryptoPassthrough) -> Matrix {
    Matrix::new(
        Mask::from_ids(pt.spec.adapters.iter().copied()),
        Mask::from_ids(pt.spec.domains.iter().copied()),
        Mask::from_ids(pt.spec.control_domains.iter().copied()),
    )
}

pub fn key_of(pt: &CryptoPassthrough) -> String {
    format!(
        "{}/{}",
        pt.metadata.namespace.as_deref().unwrap_or_default(),
        pt.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A node this passthrough may not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConflict {
    pub node: String,
    /// `namespace/name` of the passthrough that holds the APQNs there.
    pub holder: String,
    pub apqns: Vec<Apqn>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conflicts {
    /// `namespace/name` of an older passthrough with the same effective UUID.
    pub uuid_in_use: Option<String>,
    /// Per node: the first holder that precedes us (nodes in name order).
    pub nodes: BTreeMap<String, NodeConflict>,
    /// Per node: UUIDs of passthroughs that give way to us there (their mdevs leave the planned state).
    pub yielding: BTreeMap<String, Vec<String>>,
}

/// Whether `pt` claims `node`: a desired entry there, its mdev there, or its VM running there.
fn claims(pt: &CryptoPassthrough, uuid: &str, node: &str, cluster: &Cluster) -> bool {
    if cluster.active_node(pt) == Some(node) {
        return true;
    }
    let Some(cnode) = cluster.nodes.get(node).and_then(|n| n.cnode.as_ref()) else { return false };
    let uid = pt.metadata.uid.as_deref();
    cnode
        .spec
        .mdevs
        .iter()
        .any(|m| m.uuid == uuid || (uid.is_some() && m.passthrough.as_ref().map(|p| p.uid.as_str()) == uid))
        || cnode.status.as_ref().is_some_and(|s| s.mdevs.iter().any(|m| m.uuid == uuid))
}

type Rank = (bool, (Option<k8s_openapi::jiff::Timestamp>, String, String));

fn rank(pt: &CryptoPassthrough, node: &str, cluster: &Cluster) -> Rank {
    (cluster.active_node(pt) != Some(node), age_key(pt))
}

/// The conflicts of `pt` (effective UUID `uuid`) with every other passthrough of `cluster`.
pub fn find(pt: &CryptoPassthrough, uuid: &str, cluster: &Cluster) -> Conflicts {
    let mut out = Conflicts::default();
    let me = age_key(pt);
    let my_uid = pt.metadata.uid.as_deref();
    let others: Vec<_> = cluster.passthroughs.iter().filter(|o| o.metadata.uid.as_deref() != my_uid).collect();

    out.uuid_in_use = others
        .iter()
        .filter(|o| o.effective_uuid().as_deref() == Some(uuid) && age_key(o) < me)
        .min_by_key(|o| age_key(o))
        .map(|o| key_of(o));

    // Only passthroughs sharing an APQN with us matter; usually there are none.
    let my_matrix = matrix_of(pt);
    let rivals: Vec<(&CryptoPassthrough, String, Vec<Apqn>)> = others
        .iter()
        .filter_map(|o| {
            let their_uuid = o.effective_uuid().filter(|u| u != uuid)?;
            let theirs = matrix_of(o);
            let (a, d) = (theirs.adapters.and(&my_matrix.adapters), theirs.domains.and(&my_matrix.domains));
            if a.is_empty() || d.is_empty() {
                return None;
            }
            let shared = Matrix::new(a, d, Mask::empty()).apqns().into_iter().collect();
            Some((o.as_ref(), their_uuid, shared))
        })
        .collect();
    if rivals.is_empty() {
        return out;
    }
    for node in cluster.nodes.keys() {
        let my_rank = rank(pt, node, cluster);
        let mut holder: Option<(Rank, NodeConflict)> = None;
        for (o, their_uuid, shared) in &rivals {
            if !claims(o, their_uuid, node, cluster) {
                continue;
            }
            let r = rank(o, node, cluster);
            if r < my_rank {
                if holder.as_ref().is_none_or(|(best, _)| r < *best) {
                    let c = NodeConflict { node: node.clone(), holder: key_of(o), apqns: shared.clone() };
                    holder = Some((r, c));
                }
            } else {
                out.yielding.entry(node.clone()).or_default().push(their_uuid.clone());
            }
        }
        if let Some((_, c)) = holder {
            out.nodes.insert(node.clone(), c);
        }
    }
    out
}
