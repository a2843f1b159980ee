//! One reconcile, pure: the passthrough and the cluster in, everything to write out (the "build"
//! step of fetch → validate → build → apply → status).

use std::collections::BTreeMap;

use crate::api::{CryptoPassthrough, CryptoPassthroughStatus};

use super::conflict::matrix_of;
use super::inputs::Cluster;
use super::judge::Class;
use super::lifecycle::{self, Lifecycle};
use super::placement::{Placement, place};
use super::status::{self, Note};

/// What a reconcile should make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub placement: Placement,
    pub status: CryptoPassthroughStatus,
    pub notes: Vec<Note>,
    /// `cryptopass_passthrough_nodes{verdict}`: listed nodes per verdict (all four values).
    pub verdict_counts: BTreeMap<&'static str, i64>,
    /// `cryptopass_incompatible_apqns{node,reason}`: APQNs per incompatible node and reason code;
    /// a reason about the whole node (no APQN) counts every APQN of the matrix.
    pub incompatible_apqns: BTreeMap<(String, String), i64>,
    /// The migration lifecycle: an abort, an evacuation VMIM, its events (`lastMigration` and the
    /// `Evacuation` condition are in `status` already).
    pub lifecycle: Lifecycle,
}

/// `None` when the passthrough has no effective UUID yet (no `metadata.uid`).
pub fn plan(pt: &CryptoPassthrough, cluster: &Cluster) -> Option<Outcome> {
    let placement = place(pt, cluster)?;
    let (mut status, mut notes) = status::build(pt, &placement, cluster);
    let lifecycle = lifecycle::assess(pt, &placement, &status, cluster);
    status.last_migration = lifecycle.last.clone();
    match &lifecycle.evacuation {
        Some(c) => {
            let mut c = c.clone();
            c.observed_generation = pt.metadata.generation;
            crate::api::condition::set_condition(&mut status.conditions, c, &cluster.now.to_string());
        }
        None => status.conditions.retain(|c| c.type_ != lifecycle::EVACUATION),
    }
    notes.extend(lifecycle.notes.iter().cloned());
    let mut verdict_counts: BTreeMap<&'static str, i64> = Class::ALL.iter().map(|c| (c.as_str(), 0)).collect();
    let all = matrix_of(pt).apqns().len() as i64;
    let mut incompatible_apqns = BTreeMap::new();
    for n in &placement.nodes {
        *verdict_counts.entry(n.class.as_str()).or_default() += 1;
        if n.class != Class::Incompatible {
            continue;
        }
        let mut per: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        let mut whole: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for r in &n.reasons {
            match &r.apqn {
                Some(q) => {
                    per.entry(r.code.clone()).or_default().insert(q.clone());
                }
                None => {
                    whole.insert(r.code.clone());
                }
            }
        }
        for (code, qs) in per {
            incompatible_apqns.insert((n.name.clone(), code), qs.len() as i64);
        }
        for code in whole {
            incompatible_apqns.insert((n.name.clone(), code), all);
        }
    }
    Some(Outcome { placement, status, notes, verdict_counts, incompatible_apqns, lifecycle })
}
