//! The migration gate's decisions, pure (no client, no cache types): given a VMIM create, the VMI
//! it names and the passthroughs of that VMI, may the migration start, and which selector pair
//! steers its target (architecture.md, "Webhooks" and "Node label").
//!
//! A VMIM is admitted only when, for every passthrough of the VMI, the target is restricted to
//! nodes that hold the prepared mdev (`crypto.s390x.dev/prepared-<uuid>: "true"` in the selector)
//! and at least one such node is a prepared Compatible/Equivalent standby that satisfies the whole
//! selector the target pod will get (the VMIM's `addedNodeSelector` ∪ the VMI's nodeSelector, the
//! VMI's own value winning on a clash, as virt-controller merges them: kubevirt.md §2).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::condition::find;
use crate::api::passthrough::{NodeVerdict, VerdictReason};
use crate::api::{CryptoPassthrough, prepared_label};

/// The value of the prepared-node label.
pub const PREPARED_VALUE: &str = "true";
/// The reason code that makes the active node unable to migrate at all.
pub const KERNEL_CANNOT_MIGRATE: &str = "KernelCannotMigrate";

/// A VMIM create, as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub vmi_name: &'a str,
    pub added_node_selector: &'a BTreeMap<String, String>,
    /// `kubevirt.io/evacuationMigration`: the node a drain evacuates.
    pub evacuation_node: Option<&'a str>,
}

/// The VMI, from the cache.
#[derive(Debug, Clone, Copy)]
pub struct VmiFacts<'a> {
    /// `status.nodeName`: where it runs now.
    pub node_name: Option<&'a str>,
    /// `spec.nodeSelector` (copied from the VM's template).
    pub node_selector: &'a BTreeMap<String, String>,
}

/// How a node's labels meet a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMatch {
    Matches,
    /// The first pair the node lacks (`have` is the node's value of that key, if any).
    Mismatch {
        key: String,
        want: String,
        have: Option<String>,
    },
    /// No such Node in the cache.
    Gone,
}

/// The nodes' labels, from the cache.
pub trait NodeLabels {
    fn node_match(&self, node: &str, selector: &BTreeMap<String, String>) -> NodeMatch;
}

/// The first pair of `selector` that `labels` lack.
pub fn mismatch(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> NodeMatch {
    for (k, v) in selector {
        let have = labels.get(k);
        if have != Some(v) {
            return NodeMatch::Mismatch { key: k.clone(), want: v.clone(), have: have.cloned() };
        }
    }
    NodeMatch::Matches
}

impl NodeLabels for BTreeMap<String, BTreeMap<String, String>> {
    fn node_match(&self, node: &str, selector: &BTreeMap<String, String>) -> NodeMatch {
        self.get(node).map_or(NodeMatch::Gone, |labels| mismatch(labels, selector))
    }
}

/// Why one candidate node cannot take the VM now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// The verdict relative to the active node is `Incompatible` (or `Unknown`), with the reasons
    /// of the status, in the kernel's words.
    Verdict { verdict: String, reasons: Vec<VerdictReason> },
    /// Compatible, but our mdev is not synced there (yet).
    NotPrepared,
    /// The target pod's selector excludes it.
    NotSelected { key: String, want: String, have: Option<String> },
    /// The status lists it, the Node is gone.
    NodeGone,
}

/// One candidate node and why it is not a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub unfit: Unfit,
}

/// Why the migration of a VMI with a passthrough is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user's `addedNodeSelector` sets our prepared label to another value.
    SelectorConflict { passthrough: String, key: String, value: String },
    /// `spec.migration.enabled: false`.
    MigrationDisabled { passthrough: String },
    /// The passthrough's `Ready` condition is not True.
    NotReady { passthrough: String, reason: String, message: String },
    /// The VMI is not in the cache.
    VmiNotFound { passthrough: String, vmi: String },
    /// The VMI has no `status.nodeName`.
    VmiNotRunning { passthrough: String, vmi: String },
    /// The VMI runs elsewhere than the passthrough's status says (its verdicts are not relative to
    /// the VMI's node yet).
    StatusBehind { passthrough: String, vmi: String, vmi_node: String, active: Option<String> },
    /// The active node's kernel cannot migrate vfio-ap guests at all.
    KernelCannotMigrate { passthrough: String, node: String, message: String },
    /// The target's selector lacks our prepared label (our mutating webhook did not run).
    NotSteered { passthrough: String, key: String },
    /// No prepared compatible standby satisfies the selector.
    NoTarget { passthrough: String, source: String, candidates: Vec<Candidate> },
    /// Each passthrough has targets, but no node is a target of all of them.
    NoCommonTarget { targets: Vec<(String, Vec<String>)> },
}

/// A refusal, and the drain it holds up (for evacuation VMIMs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub refusal: Refusal,
    pub evacuation_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No passthrough uses the VMI: the gate does not apply.
    NotOurs,
    /// Admitted: these nodes may take the VM.
    Allow {
        targets: Vec<String>,
    },
    Deny(Denial),
}

/// The selector virt-controller gives the target pod: `addedNodeSelector` ∪ the VMI's
/// nodeSelector, the VMI's value winning on a clash.
pub fn target_selector(added: &BTreeMap<String, String>, vmi: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut s = added.clone();
    s.extend(vmi.iter().map(|(k, v)| (k.clone(), v.clone())));
    s
}

/// The validating webhook's decision. `passthroughs` are those naming the VMI (`spec.vmName`) in
/// the VMIM's namespace.
pub fn validate(
    req: &Request<'_>,
    vmi: Option<VmiFacts<'_>>,
    passthroughs: &[&CryptoPassthrough],
    nodes: &impl NodeLabels,
) -> Decision {
    if passthroughs.is_empty() {
        return Decision::NotOurs;
    }
    let deny = |refusal| Decision::Deny(Denial { refusal, evacuation_node: req.evacuation_node.map(str::to_string) });
    let mut per: Vec<(String, BTreeSet<String>)> = Vec::new();
    for pt in sorted(passthroughs) {
        match check(pt, req, vmi, nodes) {
            Ok(targets) => per.push((pt.metadata.name.clone().unwrap_or_default(), targets)),
            Err(r) => return deny(r),
        }
    }
    let mut common = per.first().map(|(_, t)| t.clone()).unwrap_or_default();
    for (_, t) in per.iter().skip(1) {
        common.retain(|n| t.contains(n));
    }
    if common.is_empty() {
        return deny(Refusal::NoCommonTarget {
            targets: per.into_iter().map(|(p, t)| (p, t.into_iter().collect())).collect(),
        });
    }
    Decision::Allow { targets: common.into_iter().collect() }
}

/// Passthroughs by name, so that the first refusal is the same on every replica.
fn sorted<'a>(pts: &[&'a CryptoPassthrough]) -> Vec<&'a CryptoPassthrough> {
    let mut v = pts.to_vec();
    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    v
}

/// One passthrough: the nodes that may take the VM, or why none may.
fn check(
    pt: &CryptoPassthrough,
    req: &Request<'_>,
    vmi: Option<VmiFacts<'_>>,
    nodes: &impl NodeLabels,
) -> Result<BTreeSet<String>, Refusal> {
    let name = pt.metadata.name.clone().unwrap_or_default();
    let Some(uuid) = pt.effective_uuid() else {
        return Err(Refusal::NotReady {
            passthrough: name,
            reason: "NoUuid".into(),
            message: "it has no effective UUID yet".into(),
        });
    };
    let key = prepared_label(&uuid);
    if let Some(v) = req.added_node_selector.get(&key).filter(|v| *v != PREPARED_VALUE) {
        return Err(Refusal::SelectorConflict { passthrough: name, key, value: v.clone() });
    }
    if !pt.spec.migration.enabled {
        return Err(Refusal::MigrationDisabled { passthrough: name });
    }
    let status = pt.status.clone().unwrap_or_default();
    match find(&status.conditions, "Ready") {
        Some(c) if c.is_true() => {}
        Some(c) => {
            return Err(Refusal::NotReady { passthrough: name, reason: c.reason.clone(), message: c.message.clone() });
        }
        None => {
            return Err(Refusal::NotReady {
                passthrough: name,
                reason: "NoStatus".into(),
                message: "the controller has not reported on it yet".into(),
            });
        }
    }
    let vmi_name = req.vmi_name.to_string();
    let Some(vmi) = vmi else { return Err(Refusal::VmiNotFound { passthrough: name, vmi: vmi_name }) };
    let Some(source) = vmi.node_name else {
        return Err(Refusal::VmiNotRunning { passthrough: name, vmi: vmi_name });
    };
    if status.active_node.as_deref() != Some(source) {
        return Err(Refusal::StatusBehind {
            passthrough: name,
            vmi: vmi_name,
            vmi_node: source.to_string(),
            active: status.active_node.clone(),
        });
    }
    let active = status.nodes.iter().find(|n| n.name == source);
    if let Some(r) = active.and_then(|n| n.reasons.iter().find(|r| r.code == KERNEL_CANNOT_MIGRATE)) {
        return Err(Refusal::KernelCannotMigrate {
            passthrough: name,
            node: source.to_string(),
            message: r.message.clone(),
        });
    }
    let selector = target_selector(req.added_node_selector, vmi.node_selector);
    if selector.get(&key).map(String::as_str) != Some(PREPARED_VALUE) {
        return Err(Refusal::NotSteered { passthrough: name, key });
    }
    let mut targets = BTreeSet::new();
    let mut candidates = Vec::new();
    for n in status.nodes.iter().filter(|n| n.name != source) {
        match unfit(n, &selector, nodes) {
            None => {
                targets.insert(n.name.clone());
            }
            Some(unfit) => candidates.push(Candidate { name: n.name.clone(), unfit }),
        }
    }
    if targets.is_empty() {
        return Err(Refusal::NoTarget { passthrough: name, source: source.to_string(), candidates });
    }
    Ok(targets)
}

fn compatible(verdict: &str) -> bool {
    matches!(verdict, "Compatible" | "Equivalent")
}

/// Why `n` cannot take the VM, or `None` when it can.
fn unfit(n: &NodeVerdict, selector: &BTreeMap<String, String>, nodes: &impl NodeLabels) -> Option<Unfit> {
    if !compatible(&n.verdict) {
        return Some(Unfit::Verdict { verdict: n.verdict.clone(), reasons: n.reasons.clone() });
    }
    if !n.prepared {
        return Some(Unfit::NotPrepared);
    }
    match nodes.node_match(&n.name, selector) {
        NodeMatch::Matches => None,
        NodeMatch::Gone => Some(Unfit::NodeGone),
        NodeMatch::Mismatch { key, want, have } => Some(Unfit::NotSelected { key, want, have }),
    }
}
