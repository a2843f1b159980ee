//! Placement of one passthrough (architecture.md, "Placement before and after the VM runs"): which
//! nodes get its mdev, the verdict of every candidate, which nodes carry the prepared label.
//!
//! Once the VMI runs on node A, A is the active node; every candidate is judged against A as
//! planned, and up to `standby` preparable candidates are kept prepared, Equivalent before
//! Compatible before Unknown, nodes already holding our entry before others (no needless moves),
//! then by name. Before the VMI runs there is no active node: an anchor is chosen among the
//! candidates so that the prepared set is equivalent to each other where possible, and verdicts are
//! relative to the anchor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::api::node::{MdevError, ObservedMdev};
use crate::api::passthrough::{Standby, VerdictReason};
use crate::api::{CryptoPassthrough, DesiredMdev, PassthroughRef};
use crate::compat::ReasonCode;

use super::conflict::{self, Conflicts, NodeConflict, matrix_of};
use super::inputs::{AGENT_STALE_AFTER, Cluster, NodeView};
use super::judge::{Class, Judgement, judge};
use super::planned::{PlannedNode, planned_node};

/// How many anchors to try before the VM runs, looking for a fully equivalent set: bounds the
/// pairwise verdicts to a few rounds over the candidates.
const ANCHOR_TRIALS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Active,
    Standby,
    Candidate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "Active",
            Role::Standby => "Standby",
            Role::Candidate => "Candidate",
        }
    }
}

/// One listed node: what status says of it and what the shell does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    pub name: String,
    pub role: Role,
    pub class: Class,
    pub reasons: Vec<VerdictReason>,
    /// Our entry belongs in the node's `spec.mdevs`.
    pub desired: bool,
    /// Desired and the agent reports our mdev synced.
    pub prepared: bool,
    /// The agent's failure to prepare our mdev.
    pub failure: Option<MdevError>,
    /// Prepared in the previous status, still desired, no longer prepared.
    pub lost: bool,
    pub stale: bool,
    pub conflict: Option<NodeConflict>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub uuid: String,
    pub active: Option<String>,
    /// The node verdicts are relative to: the active node, or the anchor before the VM runs.
    pub reference: Option<String>,
    /// The nodes status lists, by name.
    pub nodes: Vec<NodeOutcome>,
    /// Node → our entry for its `spec.mdevs`.
    pub desired: BTreeMap<String, DesiredMdev>,
    /// Nodes that carry `crypto.s390x.dev/prepared-<uuid>: "true"`.
    pub labeled: BTreeSet<String>,
    pub conflicts: Conflicts,
    /// Nodes whose agent still reports our mdev (the finalizer waits for none).
    pub holding: BTreeSet<String>,
    /// When the first fresh agent Lease of a listed node goes stale.
    pub requeue_after: Option<Duration>,
    /// Before the VM runs: nodes whose fresh agents have not reported an inventory yet, which the
    /// first placement waits for.
    pub awaiting: Vec<String>,
}

/// What one node says about us.
struct Facts<'a> {
    view: &'a NodeView,
    listed: bool,
    matches: bool,
    fresh: bool,
    entry: bool,
    observed: Option<&'a ObservedMdev>,
}

fn facts<'a>(
    pt: &CryptoPassthrough,
    uuid: &str,
    view: &'a NodeView,
    cluster: &Cluster,
    active: Option<&str>,
) -> Facts<'a> {
    let matches = view.matches(&pt.spec.placement.node_selector);
    let uid = pt.metadata.uid.as_deref();
    let entry = view.cnode.as_ref().is_some_and(|c| {
        c.spec.mdevs.iter().any(|m| m.uuid == uuid && m.passthrough.as_ref().map(|p| p.uid.as_str()) == uid)
    });
    let observed =
        view.cnode.as_ref().and_then(|c| c.status.as_ref()).and_then(|s| s.mdevs.iter().find(|m| m.uuid == uuid));
    let listed =
        (matches && (view.lease_renewed.is_some() || view.cnode.is_some())) || active == Some(view.name.as_str());
    Facts { view, listed, matches, fresh: view.agent_fresh(cluster.now), entry, observed }
}

/// The agent lists a desired mdev it has not made yet as `Pending`, and one whose removal waits for
/// its guest as `MdevInUse`: neither is a failure.
fn is_failure(e: &MdevError) -> bool {
    !matches!(e.reason.as_str(), "Pending" | "MdevInUse")
}

fn reason(code: &str, apqn: Option<String>, message: impl Into<String>) -> VerdictReason {
    VerdictReason { code: code.to_string(), apqn, message: message.into() }
}

fn verdict_reasons(j: &Judgement) -> Vec<VerdictReason> {
    j.reasons.iter().map(|r| reason(r.code.as_str(), r.apqn.map(|q| q.to_string()), r.message.clone())).collect()
}

fn failure_reason(e: &MdevError) -> VerdictReason {
    let message = match &e.errno {
        Some(errno) => format!("the agent could not prepare the mdev ({errno}): {}", e.message),
        None => format!("the agent could not prepare the mdev: {}", e.message),
    };
    reason(ReasonCode::MdevMissing.as_str(), None, message)
}

/// Places `pt` in `cluster`. `None` when the passthrough has no effective UUID (no uid yet).
pub fn place(pt: &CryptoPassthrough, cluster: &Cluster) -> Option<Placement> {
    let uuid = pt.effective_uuid()?;
    let matrix = matrix_of(pt);
    let conflicts = conflict::find(pt, &uuid, cluster);
    let blocked = pt.metadata.deletion_timestamp.is_some() || conflicts.uuid_in_use.is_some();
    let active = cluster.active_node(pt).map(str::to_string);
    let all: Vec<Facts> = cluster.nodes.values().map(|v| facts(pt, &uuid, v, cluster, active.as_deref())).collect();
    let listed: Vec<&Facts> = all.iter().filter(|f| f.listed).collect();

    let planned: BTreeMap<&str, PlannedNode> = listed
        .iter()
        .filter_map(|f| {
            let status = f.view.cnode.as_ref()?.status.as_ref()?;
            let yielding = conflicts.yielding.get(&f.view.name).map(Vec::as_slice).unwrap_or_default();
            Some((f.view.name.as_str(), planned_node(&f.view.name, status, &uuid, &matrix, yielding)))
        })
        .collect();
    let failure = |f: &Facts| f.observed.filter(|_| f.entry).and_then(|o| o.last_error.clone()).filter(is_failure);
    let candidates: Vec<&Facts> = listed
        .iter()
        .copied()
        .filter(|f| {
            !blocked
                && f.matches
                && f.fresh
                && planned.contains_key(f.view.name.as_str())
                && !conflicts.nodes.contains_key(&f.view.name)
        })
        .collect();
    let has_entry: BTreeSet<&str> = listed.iter().filter(|f| f.entry).map(|f| f.view.name.as_str()).collect();

    // The first placement before the VM runs waits (a bounded while) for the inventories of
    // agents that just started: chosen among the nodes that happened to report first, it could
    // prepare a node that turns out incompatible with the rest.
    let due: Vec<(&str, Duration)> = listed
        .iter()
        .filter(|f| !blocked && active.is_none() && f.matches && f.fresh && !planned.contains_key(f.view.name.as_str()))
        .filter_map(|f| inventory_due_in(f.view, cluster).map(|d| (f.view.name.as_str(), d)))
        .collect();
    let inventories_due: Vec<Duration> = due.iter().map(|(_, d)| *d).collect();
    let awaiting: Vec<String> =
        if has_entry.is_empty() { due.iter().map(|(n, _)| n.to_string()).collect() } else { Vec::new() };

    // Verdicts and the prepared set.
    let mut selected: BTreeSet<String> = BTreeSet::new();
    let (reference, judgements) = match &active {
        Some(a) => {
            let src = planned.get(a.as_str());
            let j = src.map(|s| judge_all(s, &planned, &uuid)).unwrap_or_default();
            if !blocked && cluster.nodes.get(a).is_some_and(|v| v.cnode.is_some()) {
                selected.insert(a.clone());
            }
            if src.is_some() && !blocked {
                let wanted = if pt.spec.migration.enabled { pt.spec.placement.standby } else { Standby::Count(0) };
                let pool: Vec<&str> = candidates
                    .iter()
                    .filter(|f| f.view.name != *a && failure(f).is_none())
                    .map(|f| f.view.name.as_str())
                    .filter(|n| j.get(*n).is_some_and(|x| x.class.preparable()))
                    .collect();
                selected.extend(best(&pool, &j, &has_entry, wanted.wanted(pool.len())));
            }
            (src.map(|_| a.clone()), j)
        }
        None if has_entry.is_empty() && !inventories_due.is_empty() => (None, BTreeMap::new()),
        None => {
            let names: Vec<&str> =
                candidates.iter().filter(|f| failure(f).is_none()).map(|f| f.view.name.as_str()).collect();
            match choose_anchor(&names, &planned, &uuid, &has_entry, pt.spec.placement.standby) {
                Some((anchor, j, chosen)) => {
                    selected.extend(chosen);
                    // Nodes that are not candidates (stale, conflicted) still get a verdict.
                    let mut j = j;
                    if let Some(src) = planned.get(anchor.as_str()) {
                        for (n, tgt) in &planned {
                            j.entry(n.to_string()).or_insert_with(|| judge(src, tgt, &uuid));
                        }
                    }
                    (Some(anchor), j)
                }
                None => (None, BTreeMap::new()),
            }
        }
    };
    // A node whose agent failed to prepare our mdev keeps its entry (the agent retries, nothing
    // flaps), without counting toward `standby`.
    for f in &candidates {
        if f.entry && failure(f).is_some() {
            selected.insert(f.view.name.clone());
        }
    }
    // A node that may hold the guest keeps its entry (the migration lifecycle): the target of a
    // migration in flight, a node whose agent reports our mdev in use (the source after the
    // hand-over, until its QEMU let go).
    for n in super::lifecycle::pinned(pt, &uuid, cluster) {
        if has_entry.contains(n.as_str()) {
            selected.insert(n);
        }
    }

    let prev_prepared: BTreeSet<&str> = pt
        .status
        .as_ref()
        .map(|s| s.nodes.iter().filter(|n| n.prepared).map(|n| n.name.as_str()).collect())
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for f in &listed {
        let name = f.view.name.as_str();
        let desired = selected.contains(name);
        let fail = failure(f);
        let synced = f.observed.is_some_and(|o| o.synced && o.last_error.is_none());
        let prepared = desired && synced;
        let role = if active.as_deref() == Some(name) {
            Role::Active
        } else if desired {
            Role::Standby
        } else {
            Role::Candidate
        };
        let (mut class, mut reasons) = match judgements.get(name) {
            Some(j) => (j.class, verdict_reasons(j)),
            None => (Class::Unknown, Vec::new()),
        };
        if !f.fresh {
            class = Class::Unknown;
            reasons = vec![stale_reason(f.view, cluster)];
        } else if !planned.contains_key(name) {
            class = Class::Unknown;
            reasons = vec![reason(
                ReasonCode::AgentStale.as_str(),
                None,
                "the node's agent has not reported an inventory yet",
            )];
        }
        if let Some(e) = &fail {
            class = Class::Incompatible;
            reasons.insert(0, failure_reason(e));
        }
        nodes.push(NodeOutcome {
            name: name.to_string(),
            role,
            class,
            reasons,
            desired,
            prepared,
            failure: fail,
            lost: desired && prev_prepared.contains(name) && !synced,
            stale: !f.fresh,
            conflict: conflicts.nodes.get(name).cloned(),
        });
    }

    let labeled: BTreeSet<String> = if blocked {
        BTreeSet::new()
    } else {
        nodes
            .iter()
            .filter(|n| match &active {
                Some(a) => n.name == *a || (n.prepared && n.class.is_compatible()),
                None => n.prepared,
            })
            .map(|n| n.name.clone())
            .collect()
    };
    let desired =
        nodes.iter().filter(|n| n.desired).map(|n| (n.name.clone(), entry(pt, &uuid, n.role, n.class))).collect();
    let holding = all.iter().filter(|f| f.observed.is_some() || f.entry).map(|f| f.view.name.clone()).collect();
    let requeue_after = listed
        .iter()
        .filter_map(|f| f.view.stale_in(cluster.now))
        .chain(inventories_due.iter().copied())
        .min()
        .map(|d| d + Duration::from_secs(1));
    Some(Placement { uuid, active, reference, nodes, desired, labeled, conflicts, holding, requeue_after, awaiting })
}

/// How much longer a node with a fresh agent but no inventory yet is worth waiting for: until its
/// CryptoNode (which the agent creates first) is [`AGENT_STALE_AFTER`] old; no CryptoNode at all
/// means the agent is only starting.
fn inventory_due_in(view: &NodeView, cluster: &Cluster) -> Option<Duration> {
    let Some(created) = view.cnode.as_ref().and_then(|c| c.metadata.creation_timestamp.as_ref()) else {
        return Some(AGENT_STALE_AFTER);
    };
    let age = cluster.now.duration_since(created.0).unsigned_abs();
    AGENT_STALE_AFTER.checked_sub(age).filter(|d| !d.is_zero())
}

fn stale_reason(view: &NodeView, cluster: &Cluster) -> VerdictReason {
    let message = match view.lease_renewed {
        Some(t) => format!(
            "the node's agent last renewed its Lease {}s ago (stale after {}s)",
            cluster.now.duration_since(t).as_secs(),
            AGENT_STALE_AFTER.as_secs()
        ),
        None => "the node's agent holds no Lease".to_string(),
    };
    reason(ReasonCode::AgentStale.as_str(), None, message)
}

/// Our entry for a node's `spec.mdevs`.
pub fn entry(pt: &CryptoPassthrough, uuid: &str, role: Role, class: Class) -> DesiredMdev {
    let sorted = |v: &[u8]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    DesiredMdev {
        uuid: uuid.to_string(),
        passthrough: Some(PassthroughRef {
            namespace: pt.metadata.namespace.clone().unwrap_or_default(),
            name: pt.metadata.name.clone().unwrap_or_default(),
            uid: pt.metadata.uid.clone().unwrap_or_default(),
        }),
        adapters: sorted(&pt.spec.adapters),
        domains: sorted(&pt.spec.domains),
        control_domains: sorted(&pt.spec.control_domains),
        migratable: pt.spec.migration.enabled,
        role: Some(role.as_str().to_string()),
        verdict: Some(class.as_str().to_string()),
    }
}

/// Judgements of every planned node against `src` (itself included).
fn judge_all(src: &PlannedNode, planned: &BTreeMap<&str, PlannedNode>, uuid: &str) -> BTreeMap<String, Judgement> {
    planned.iter().map(|(n, tgt)| (n.to_string(), judge(src, tgt, uuid))).collect()
}

/// Up to `n` of `pool`: Equivalent, Compatible, Unknown; holders of our entry first; by name.
fn best(pool: &[&str], j: &BTreeMap<String, Judgement>, has_entry: &BTreeSet<&str>, n: usize) -> Vec<String> {
    let mut v: Vec<(Class, bool, &str)> =
        pool.iter().filter_map(|p| j.get(*p).map(|x| (x.class, !has_entry.contains(p), *p))).collect();
    v.sort();
    v.into_iter().take(n).map(|(_, _, p)| p.to_string()).collect()
}

type Anchor = (String, BTreeMap<String, Judgement>, Vec<String>);
/// (kernel can migrate, group size up to what is needed, nodes already holding our entry).
type Score = (bool, usize, usize);

/// Before the VM runs: the anchor whose preparable, both-ways-compatible group is largest (up to
/// `1 + standby`), preferring anchors whose kernel can migrate and that hold our entry already.
fn choose_anchor(
    cands: &[&str],
    planned: &BTreeMap<&str, PlannedNode>,
    uuid: &str,
    has_entry: &BTreeSet<&str>,
    standby: Standby,
) -> Option<Anchor> {
    let needed = 1 + standby.wanted(cands.len().saturating_sub(1));
    let mut order: Vec<&str> = cands.to_vec();
    order.sort_by_key(|n| (!has_entry.contains(n), *n));
    let mut best_trial: Option<(Score, &str, BTreeMap<String, Judgement>)> = None;
    for a in order.into_iter().take(ANCHOR_TRIALS) {
        let Some(src) = planned.get(a) else { continue };
        let j: BTreeMap<String, Judgement> =
            cands.iter().filter_map(|c| planned.get(c).map(|t| (c.to_string(), judge(src, t, uuid)))).collect();
        let self_ok = j.get(a).is_some_and(|x| x.class.preparable());
        let group: Vec<&str> = cands
            .iter()
            .copied()
            .filter(|c| *c != a && j.get(*c).is_some_and(|x| x.both_ways && x.class.preparable()))
            .collect();
        let held = usize::from(has_entry.contains(a)) + group.iter().filter(|g| has_entry.contains(*g)).count();
        let score = (self_ok, (group.len() + 1).min(needed), held);
        let full = self_ok && group.len() + 1 >= needed;
        if best_trial.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best_trial = Some((score, a, j));
        }
        if full {
            break;
        }
    }
    let (_, anchor, j) = best_trial?;
    let mut others: Vec<(bool, Class, bool, &str)> = cands
        .iter()
        .copied()
        .filter(|c| *c != anchor)
        .filter_map(|c| {
            j.get(c).filter(|x| x.class.preparable()).map(|x| (!x.both_ways, x.class, !has_entry.contains(c), c))
        })
        .collect();
    others.sort();
    let mut chosen = vec![anchor.to_string()];
    chosen.extend(others.into_iter().take(needed - 1).map(|(_, _, _, c)| c.to_string()));
    Some((anchor.to_string(), j, chosen))
}
