//! The status of a passthrough from its placement (pure): per-node entries, counts, conditions
//! usable with `kubectl wait`, and the events a change of them deserves.

use crate::api::condition::{Condition, find, set_condition};
use crate::api::passthrough::NodeVerdict;
use crate::api::{CryptoPassthrough, CryptoPassthroughStatus};

use super::inputs::{Cluster, SweepProtection};
use super::judge::Class;
use super::placement::{NodeOutcome, Placement, Role};

pub const READY: &str = "Ready";
pub const MIGRATION_READY: &str = "MigrationReady";
pub const CONFLICT: &str = "Conflict";
pub const DEGRADED: &str = "Degraded";
pub const KUBEVIRT_LIVE_MIGRATABLE: &str = "KubeVirtLiveMigratable";
/// Whether the KubeVirt CR keeps virt-handler from deleting our mdevs (kubevirt.md §6).
pub const KUBEVIRT_PROTECTS_MDEVS: &str = "KubeVirtProtectsMdevs";

/// An event to publish about the passthrough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

fn cond(type_: &str, status: &str, reason: &str, message: impl Into<String>) -> Condition {
    Condition { status: status.to_string(), ..Condition::new(type_, false, reason, message) }
}

fn names<'a>(it: impl Iterator<Item = &'a NodeOutcome>) -> String {
    let v: Vec<&str> = it.map(|n| n.name.as_str()).collect();
    if v.is_empty() { "none".to_string() } else { v.join(", ") }
}

fn ready(pt: &CryptoPassthrough, p: &Placement) -> Condition {
    if pt.metadata.deletion_timestamp.is_some() {
        let msg = format!("being deleted: waiting until no node holds mdev {} (held on: {})", p.uuid, join(&p.holding));
        return Condition::new(READY, false, "Releasing", msg);
    }
    if let Some(other) = &p.conflicts.uuid_in_use {
        return Condition::new(
            READY,
            false,
            "UuidInUse",
            format!("UUID {} is used by the older passthrough {other}", p.uuid),
        );
    }
    match &p.active {
        Some(a) => match p.nodes.iter().find(|n| n.name == *a) {
            Some(n) if n.prepared => {
                Condition::new(READY, true, "Synced", format!("mdev {} is synced on the active node {a}", p.uuid))
            }
            Some(n) if n.failure.is_some() => Condition::new(READY, false, "PrepareFailed", failure_text(n)),
            _ => Condition::new(
                READY,
                false,
                "NotSynced",
                format!("waiting for the agent of the active node {a} to sync mdev {}", p.uuid),
            ),
        },
        None => {
            let prepared: Vec<&NodeOutcome> = p.nodes.iter().filter(|n| n.prepared).collect();
            if !prepared.is_empty() {
                let msg = format!(
                    "mdev {} prepared on {}; the VM may start on any of them",
                    p.uuid,
                    names(prepared.into_iter())
                );
                Condition::new(READY, true, "Prepared", msg)
            } else if p.desired.is_empty() && !p.awaiting.is_empty() {
                let msg = format!("waiting for the first inventories of {}", p.awaiting.join(", "));
                Condition::new(READY, false, "Preparing", msg)
            } else if p.desired.is_empty() {
                Condition::new(
                    READY,
                    false,
                    "NoCandidates",
                    "no node matches the node selector with a fresh agent, an inventory and no conflict",
                )
            } else {
                let msg = format!("waiting for the agents of {} to prepare mdev {}", join(p.desired.keys()), p.uuid);
                Condition::new(READY, false, "Preparing", msg)
            }
        }
    }
}

fn join<'a>(it: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.into_iter().map(String::as_str).collect();
    if v.is_empty() { "none".to_string() } else { v.join(", ") }
}

fn failure_text(n: &NodeOutcome) -> String {
    match &n.failure {
        Some(e) => match &e.errno {
            Some(errno) => format!("node {}: {} ({errno}): {}", n.name, e.reason, e.message),
            None => format!("node {}: {}: {}", n.name, e.reason, e.message),
        },
        None => String::new(),
    }
}

fn migration_ready(pt: &CryptoPassthrough, p: &Placement) -> Condition {
    if !pt.spec.migration.enabled {
        return Condition::new(MIGRATION_READY, false, "MigrationDisabled", "migration.enabled is false");
    }
    let reference = p.reference.as_deref();
    let standbys: Vec<&NodeOutcome> = p
        .nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != reference && n.prepared && n.class.is_compatible())
        .collect();
    let reference_ok = match (&p.active, reference) {
        (Some(_), _) => true,
        (None, Some(r)) => p.nodes.iter().any(|n| n.name == r && n.prepared),
        (None, None) => false,
    };
    if reference_ok && !standbys.is_empty() {
        let list: Vec<String> = standbys.iter().map(|n| format!("{} ({})", n.name, n.class.as_str())).collect();
        return Condition::new(
            MIGRATION_READY,
            true,
            "StandbyPrepared",
            format!("prepared migration targets: {}", list.join(", ")),
        );
    }
    let why = p
        .nodes
        .iter()
        .filter(|n| n.role != Role::Active && Some(n.name.as_str()) != reference)
        .map(|n| match (n.class, n.reasons.first()) {
            (Class::Incompatible, Some(r)) => format!("{}: Incompatible ({}: {})", n.name, r.code, r.message),
            (Class::Unknown, Some(r)) => format!("{}: Unknown ({}: {})", n.name, r.code, r.message),
            (Class::Unknown, None) => format!("{}: Unknown (kernel profile not known until our mdev exists)", n.name),
            (c, _) if n.desired && !n.prepared => format!("{}: {} (not prepared yet)", n.name, c.as_str()),
            (c, _) => format!("{}: {}", n.name, c.as_str()),
        })
        .collect::<Vec<_>>();
    let msg = if why.is_empty() { "no other candidate node".to_string() } else { why.join("; ") };
    Condition::new(MIGRATION_READY, false, "NoPreparedStandby", msg)
}

fn conflict(p: &Placement) -> Condition {
    if let Some(other) = &p.conflicts.uuid_in_use {
        return Condition::new(
            CONFLICT,
            true,
            "UuidInUse",
            format!("UUID {} is used by the older passthrough {other}", p.uuid),
        );
    }
    if p.conflicts.nodes.is_empty() {
        return Condition::new(CONFLICT, false, "NoConflict", "");
    }
    let parts: Vec<String> = p
        .conflicts
        .nodes
        .values()
        .map(|c| {
            let q: Vec<String> = c.apqns.iter().map(|a| a.to_string()).collect();
            format!("node {}: APQNs {} are held by {}", c.node, q.join(", "), c.holder)
        })
        .collect();
    Condition::new(CONFLICT, true, "ApqnConflict", parts.join("; "))
}

fn degraded(p: &Placement) -> Condition {
    let failed: Vec<String> = p.nodes.iter().filter(|n| n.failure.is_some()).map(failure_text).collect();
    if !failed.is_empty() {
        return Condition::new(DEGRADED, true, "NodeFailure", failed.join("; "));
    }
    let lost: Vec<&NodeOutcome> = p.nodes.iter().filter(|n| n.lost).collect();
    if !lost.is_empty() {
        return Condition::new(
            DEGRADED,
            true,
            "MdevLost",
            format!("no longer holding the prepared mdev {}: {}", p.uuid, names(lost.into_iter())),
        );
    }
    Condition::new(DEGRADED, false, "AsExpected", "")
}

fn live_migratable(pt: &CryptoPassthrough, cluster: &Cluster) -> Condition {
    let ns = pt.metadata.namespace.as_deref().unwrap_or_default();
    match cluster.vmi(ns, &pt.spec.vm_name) {
        None => cond(
            KUBEVIRT_LIVE_MIGRATABLE,
            "Unknown",
            "VmiNotFound",
            format!("no VirtualMachineInstance {}", pt.spec.vm_name),
        ),
        Some(v) => match &v.live_migratable {
            Some(c) => {
                let reason = if c.reason.is_empty() { "LiveMigratable" } else { c.reason.as_str() };
                let theirs = if c.message.is_empty() { String::new() } else { format!(": {}", c.message) };
                let message = match c.status.as_str() {
                    "False" => format!(
                        "KubeVirt reports the VMI not live-migratable ({reason}{theirs}). This is KubeVirt's own \
                         limit (up to v1.9 any hostDevices entry makes a VMI non-migratable; vfio-ap migration needs a \
                         KubeVirt that allows it), not a cryptopass verdict: ours is MigrationReady"
                    ),
                    "True" => format!(
                        "KubeVirt reports the VMI live-migratable{theirs}; cryptopass still gates each migration on its \
                         verdicts (MigrationReady)"
                    ),
                    _ => format!("KubeVirt reports LiveMigratable {}{theirs}", c.status),
                };
                cond(KUBEVIRT_LIVE_MIGRATABLE, &c.status, reason, message)
            }
            None => cond(
                KUBEVIRT_LIVE_MIGRATABLE,
                "Unknown",
                "NotReported",
                "the VMI has no LiveMigratable condition (yet)",
            ),
        },
    }
}

fn sweep(cluster: &Cluster) -> Condition {
    match &cluster.sweep {
        SweepProtection::Protected { reason, message } => {
            Condition::new(KUBEVIRT_PROTECTS_MDEVS, true, reason, message.clone())
        }
        SweepProtection::Unprotected { message } => {
            Condition::new(KUBEVIRT_PROTECTS_MDEVS, false, "VirtHandlerSweepsMdevs", message.clone())
        }
        SweepProtection::NoKubeVirt => {
            cond(KUBEVIRT_PROTECTS_MDEVS, "Unknown", "KubeVirtNotFound", "no KubeVirt CR found")
        }
    }
}

/// The new status (conditions keep their transition times when unchanged) and the events.
pub fn build(pt: &CryptoPassthrough, p: &Placement, cluster: &Cluster) -> (CryptoPassthroughStatus, Vec<Note>) {
    let previous = pt.status.clone().unwrap_or_default();
    let now = cluster.now.to_string();
    let generation = pt.metadata.generation;
    let mut conditions = previous.conditions.clone();
    let new =
        [ready(pt, p), migration_ready(pt, p), conflict(p), degraded(p), live_migratable(pt, cluster), sweep(cluster)];
    let mut notes = Vec::new();
    for mut c in new {
        c.observed_generation = generation;
        notes.extend(condition_note(find(&previous.conditions, &c.type_), &c));
        set_condition(&mut conditions, c, &now);
    }
    let nodes: Vec<NodeVerdict> = p
        .nodes
        .iter()
        .map(|n| NodeVerdict {
            name: n.name.clone(),
            role: n.role.as_str().to_string(),
            prepared: n.prepared,
            verdict: n.class.as_str().to_string(),
            reasons: n.reasons.clone(),
        })
        .collect();
    for n in &nodes {
        let before = previous.nodes.iter().find(|o| o.name == n.name);
        // Into or out of Incompatible only: Unknown turning Equivalent (our mdev revealed the
        // kernel profile) is the expected course, not news.
        let was = before.map(|b| b.verdict.as_str());
        if was != Some(n.verdict.as_str()) && (was == Some("Incompatible")) != (n.verdict == "Incompatible") {
            let first = n.reasons.first().map(|r| format!(": {}: {}", r.code, r.message)).unwrap_or_default();
            let was = before.map(|b| format!(" (was {})", b.verdict)).unwrap_or_default();
            notes.push(Note {
                warning: n.verdict == "Incompatible",
                reason: format!("Verdict{}", n.verdict),
                message: format!("node {}: {}{was}{first}", n.name, n.verdict),
            });
        }
    }
    let not_active = |n: &&NodeOutcome| n.role != Role::Active;
    let status = CryptoPassthroughStatus {
        uuid: Some(p.uuid.clone()),
        active_node: p.active.clone(),
        prepared_nodes: p.nodes.iter().filter(|n| n.prepared).count() as u32,
        compatible_nodes: p.nodes.iter().filter(not_active).filter(|n| n.class.is_compatible()).count() as u32,
        incompatible_nodes: p.nodes.iter().filter(not_active).filter(|n| n.class == Class::Incompatible).count() as u32,
        nodes,
        conditions,
        observed_generation: generation,
        last_migration: None,
    };
    (status, notes)
}

/// An event when a condition changes. On its first appearance only what deserves attention: a
/// conflict, a failure, an unprotected KubeVirt, and Ready (transient states such as `Preparing`
/// would make one event per passthrough for nothing — events are writes too).
fn condition_note(before: Option<&Condition>, c: &Condition) -> Option<Note> {
    let bad = match c.type_.as_str() {
        CONFLICT | DEGRADED => c.status == "True",
        _ => c.status == "False",
    };
    let changed = match before {
        Some(b) => b.status != c.status || (bad && b.reason != c.reason),
        None => match c.type_.as_str() {
            CONFLICT | DEGRADED | KUBEVIRT_PROTECTS_MDEVS => bad,
            READY => c.status == "True",
            _ => false,
        },
    };
    changed.then(|| Note {
        warning: bad,
        reason: c.reason.clone(),
        message: if c.message.is_empty() {
            format!("{} is {}", c.type_, c.status)
        } else {
            format!("{}: {}", c.type_, c.message)
        },
    })
}
