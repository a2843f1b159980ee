//! `CryptoNode.status` from one pass, pure: the inventory read after the pass, the pass's report
//! and the ownership record → what the agent writes (server-side apply, its own field manager).
//!
//! - Every mdev on the host is listed (`managed`: created by this agent; else foreign).
//! - A desired mdev that does not exist (refused, or its creation failed) is listed too, with an
//!   empty matrix, `synced: false` and its `lastError`: the controller finds every desired UUID.
//! - `lastError` carries the agent's reason code and the kernel's errno name; a write the kernel
//!   refused although the plan expected it to pass is `WriteFailed`.
//! - Condition `Synced`: every desired mdev as desired and nothing failed.

use std::collections::BTreeSet;

use crate::ap::Inventory;
use crate::api::Condition;
use crate::api::condition::set_condition;
use crate::api::convert::status_from_inventory;
use crate::api::node::{CryptoNodeStatus, MdevError, ObservedMdev};

use super::ownership::Ownership;
use super::reason::Code;
use super::report::{MdevReport, Report, State};

pub const SYNCED: &str = "Synced";
/// `lastError.reason` of a write the kernel refused during execution.
pub const WRITE_FAILED: &str = "WriteFailed";
/// Condition reason when the host could not be read.
pub const INVENTORY_UNREADABLE: &str = "InventoryUnreadable";
/// Condition reason when `spec.mdevs` holds entries the agent cannot use.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// What one pass saw and did.
pub struct PassResult<'a> {
    /// The host as read after the pass.
    pub inventory: &'a Inventory,
    pub report: &'a Report,
    pub ownership: &'a Ownership,
    /// Entries of `spec.mdevs` that were left out (e.g. an invalid UUID), as messages.
    pub invalid: &'a [String],
}

/// The status to write after a pass; `previous` conditions keep their transition times.
pub fn build(pass: &PassResult<'_>, generation: Option<i64>, previous: &[Condition], now: &str) -> CryptoNodeStatus {
    let mut s = status_from_inventory(pass.inventory);
    let by_uuid = |u: &str| pass.report.mdevs.iter().find(|m| m.uuid == u);
    for m in &mut s.mdevs {
        m.managed = pass.ownership.owns_mdev(&m.uuid);
        if let Some(r) = by_uuid(&m.uuid) {
            m.synced = r.desired
                && r.state == State::Synced
                && pass.inventory.mdevs.get(&m.uuid).is_some_and(|x| x.matrix == r.matrix);
            m.last_error = last_error(r);
        }
    }
    let present: BTreeSet<String> = s.mdevs.iter().map(|m| m.uuid.clone()).collect();
    for r in pass.report.mdevs.iter().filter(|r| r.desired && !present.contains(&r.uuid)) {
        s.mdevs.push(absent(r));
    }
    s.collateral_queues = collateral(pass.inventory, pass.ownership);
    s.observed_generation = generation;
    s.conditions = previous.to_vec();
    let mut c = synced_condition(pass);
    c.observed_generation = generation;
    set_condition(&mut s.conditions, c, now);
    s
}

/// The status to write when the host could not be read: the last one, with `Synced` false.
pub fn unreadable(
    last: Option<&CryptoNodeStatus>,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> CryptoNodeStatus {
    let mut s = last.cloned().unwrap_or_default();
    let mut c = Condition::new(SYNCED, false, INVENTORY_UNREADABLE, message);
    c.observed_generation = generation;
    set_condition(&mut s.conditions, c, now);
    s.observed_generation = generation;
    s
}

fn last_error(r: &MdevReport) -> Option<MdevError> {
    if let Some(e) = &r.error {
        return Some(MdevError {
            reason: WRITE_FAILED.to_string(),
            errno: e.errno.map(str::to_string),
            message: e.message.clone(),
        });
    }
    match r.state {
        State::Refused | State::Waiting | State::Failed => r.reason.as_ref().map(|x| MdevError {
            reason: x.code.as_str().to_string(),
            errno: x.errno.clone(),
            message: x.message.clone(),
        }),
        _ => None,
    }
}

fn absent(r: &MdevReport) -> ObservedMdev {
    ObservedMdev {
        uuid: r.uuid.clone(),
        managed: true,
        adapters: Vec::new(),
        domains: Vec::new(),
        control_domains: Vec::new(),
        guest_adapters: Vec::new(),
        guest_domains: Vec::new(),
        guest_control_domains: Vec::new(),
        migratable: None,
        in_use: false,
        iommu_group: None,
        synced: false,
        last_error: last_error(r)
            .or_else(|| Some(MdevError { reason: "Pending".into(), errno: None, message: "not created yet".into() })),
    }
}

/// Host queues that our mask edits handed to vfio_ap but that no mdev holds.
fn collateral(inv: &Inventory, own: &Ownership) -> Vec<String> {
    inv.queues
        .keys()
        .filter(|q| own.apmask_cleared.get(q.apid) || own.aqmask_cleared.get(q.apqi))
        .filter(|q| !inv.mdevs.values().any(|m| m.matrix.contains(**q)))
        .map(|q| q.to_string())
        .collect()
}

fn synced_condition(pass: &PassResult<'_>) -> Condition {
    let mut problems: Vec<(String, String)> = Vec::new();
    for r in &pass.report.mdevs {
        let reason = match (&r.error, r.state) {
            (Some(_), _) => Some(WRITE_FAILED.to_string()),
            (None, State::Refused | State::Failed | State::Waiting | State::Planned) => {
                Some(r.reason.as_ref().map_or("Pending".to_string(), |x| x.code.as_str().to_string()))
            }
            _ => None,
        };
        if let Some(reason) = reason {
            let why = last_error(r).map(|e| e.message).unwrap_or_default();
            problems.push((reason, format!("{}: {why}", r.uuid)));
        }
    }
    for e in &pass.report.errors {
        problems.push((WRITE_FAILED.to_string(), e.message.clone()));
    }
    for m in pass.invalid {
        problems.push((INVALID_SPEC.to_string(), m.clone()));
    }
    let desired = pass.report.mdevs.iter().filter(|m| m.desired).count();
    match problems.first() {
        None => Condition::new(SYNCED, true, SYNCED, format!("all {desired} desired mdevs are as desired")),
        Some((reason, _)) => {
            let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            Condition::new(SYNCED, false, reason, message)
        }
    }
}

/// How many mdevs are in each state of `cryptopass_agent_mdevs{state}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MdevCounts {
    pub synced: i64,
    pub pending: i64,
    pub failed: i64,
    pub foreign: i64,
}

pub fn mdev_counts(s: &CryptoNodeStatus) -> MdevCounts {
    let mut c = MdevCounts::default();
    for m in &s.mdevs {
        let waiting =
            m.last_error.as_ref().is_some_and(|e| e.reason == Code::MdevInUse.as_str() || e.reason == "Pending");
        match () {
            _ if !m.managed => c.foreign += 1,
            _ if m.synced => c.synced += 1,
            _ if m.last_error.is_some() && !waiting => c.failed += 1,
            _ => c.pending += 1,
        }
    }
    c
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
