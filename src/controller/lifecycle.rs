//! The migration lifecycle (architecture.md, "migration lifecycle"), pure: what the controller
//! does about the VirtualMachineInstanceMigrations (VMIMs) of a passthrough's VM.
//!
//! - **Re-verify and abort.** Once KubeVirt placed the target (the target pod's node, or the
//!   hand-off's `migrationState.targetNode` / label `kubevirt.io/migrationTargetNodeName`,
//!   whichever is seen first) and the migration has not ended, the target must still hold our
//!   synced mdev and be `Equivalent`/`Compatible` relative to the source by the current
//!   inventories. If not, the VMIM is deleted (KubeVirt aborts a deleted migration), once: a VMIM
//!   being deleted, or already recorded as aborted, is never aborted again, and an ended one
//!   never.
//! - **Hand-over.** The active node is the VMI's `status.nodeName` (placement): it moves when the
//!   migration completes, and placement recomputes the standby set. Entries are [`pinned`] while
//!   a node may still hold the guest: the target of a migration in flight, and every node whose
//!   agent last reported our mdev in use (the source keeps its entry after the hand-over until its
//!   agent saw the source QEMU let go of the mdev; the agent refuses removal in use anyway).
//! - **`status.lastMigration`** of the newest VMIM, and events when it changes.
//! - **Evacuation.** A drain sets the VMI's `status.evacuationNodeName`. With `evictionStrategy:
//!   External` KubeVirt leaves the migration to us: we create the VMIM (one name per attempt,
//!   creation idempotent) when the gate would admit it, else report why the drain waits. With
//!   KubeVirt's own evacuation VMIMs, a denial by our webhook is reported the same way (the
//!   webhook has no side effects, so the event comes from here).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::condition::Condition;
use crate::api::{CryptoPassthrough, CryptoPassthroughStatus, LastMigration, prepared_label};
use crate::webhook::decide::{self, Decision, NodeLabels, Refusal, Request, VmiFacts};

use super::inputs::{Cluster, MigrationView, VmiView};
use super::judge::Class;
use super::placement::Placement;
use super::status::Note;

pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const ABORTED: &str = "Aborted";
/// Every outcome, for the metric's label values.
pub const OUTCOMES: [&str; 4] = [RUNNING, SUCCEEDED, FAILED, ABORTED];

/// The condition present while a drain wants the VM off its node.
pub const EVACUATION: &str = "Evacuation";
/// KubeVirt's eviction strategy that leaves the migration to an external controller.
pub const EXTERNAL: &str = "External";
/// The prefix of the VMIMs the controller creates for an evacuation.
pub const EVACUATION_PREFIX: &str = "cryptopass-evacuate-";
/// After one of our evacuation VMIMs failed, the next attempt waits this long.
pub const EVACUATION_RETRY: Duration = Duration::from_secs(30);

/// Deleting this VMIM aborts the migration; the uid is the delete's precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub reason: String,
    pub message: String,
}

/// A VMIM to create for an evacuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMigration {
    pub namespace: String,
    pub name: String,
    pub vmi: String,
    /// The drained node (`kubevirt.io/evacuationMigration`).
    pub evacuation_node: String,
    pub added_node_selector: BTreeMap<String, String>,
}

/// What the lifecycle wants done for one passthrough.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub last: Option<LastMigration>,
    pub abort: Option<Abort>,
    pub create: Option<NewMigration>,
    /// The `Evacuation` condition; `None` removes it.
    pub evacuation: Option<Condition>,
    /// Events on the passthrough.
    pub notes: Vec<Note>,
    /// Events on the VMI.
    pub vmi_notes: Vec<Note>,
    /// An outcome reached by this reconcile (`cryptopass_migrations_total{outcome}`).
    pub finished: Option<&'static str>,
    /// Look again this soon (an evacuation retry waiting out its pause).
    pub requeue_after: Option<Duration>,
}

/// Where a migration stands, from the VMIM and the VMI's `migrationState`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    InFlight,
    Succeeded {
        end: Option<Timestamp>,
    },
    Failed {
        end: Option<Timestamp>,
        aborted: bool,
        message: String,
    },
    /// Deleted before it ended (an abort requested by whoever deleted it).
    Deleted,
}

/// The VMI's `migrationState` when it describes `m`.
fn vmi_state<'a>(m: &MigrationView, vmi: Option<&'a VmiView>) -> Option<&'a super::inputs::MigrationStateView> {
    vmi?.migration_state.as_ref().filter(|s| s.migration_uid.as_deref() == Some(m.uid.as_str()))
}

fn progress(m: &MigrationView, vmi: Option<&VmiView>) -> Progress {
    let states: Vec<&super::inputs::MigrationStateView> =
        vmi_state(m, vmi).into_iter().chain(m.state.as_ref()).collect();
    let end = states.iter().find_map(|s| s.end).or(m.ended);
    let failed = m.phase.as_deref() == Some(FAILED) || states.iter().any(|s| s.failed);
    if failed {
        let aborted = states.iter().any(|s| s.abort_status.as_deref() == Some("Succeeded"));
        let message = states
            .iter()
            .find_map(|s| s.failure_reason.clone())
            .or_else(|| m.condition_message.clone())
            .unwrap_or_else(|| "KubeVirt reports the migration failed".to_string());
        return Progress::Failed { end, aborted, message };
    }
    if m.phase.as_deref() == Some(SUCCEEDED) || states.iter().any(|s| s.completed) {
        return Progress::Succeeded { end };
    }
    if m.deleting {
        return Progress::Deleted;
    }
    Progress::InFlight
}

/// The target node of `m`, from whichever KubeVirt set first: the hand-off's
/// `migrationState.targetNode` (VMIM or VMI), the VMI label `kubevirt.io/migrationTargetNodeName`
/// while the VMI's state is this migration's, or the node the scheduler bound the target pod to
/// (which comes before the hand-off).
pub fn target_of(m: &MigrationView, vmi: Option<&VmiView>) -> Option<String> {
    let own = vmi_state(m, vmi);
    m.state
        .as_ref()
        .and_then(|s| s.target_node.clone())
        .or_else(|| own.and_then(|s| s.target_node.clone()))
        .or_else(|| own.and(vmi).and_then(|v| v.target_label.clone()))
        .or_else(|| m.target_pod_node.clone())
}

fn source_of(m: &MigrationView, vmi: Option<&VmiView>) -> Option<String> {
    m.state
        .as_ref()
        .and_then(|s| s.source_node.clone())
        .or_else(|| vmi_state(m, vmi).and_then(|s| s.source_node.clone()))
}

/// Nodes whose entry must stay while the guest may be there: the targets of the VM's migrations
/// that have not ended, and every node whose agent reports our mdev in use.
pub fn pinned(pt: &CryptoPassthrough, uuid: &str, cluster: &Cluster) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(ns) = pt.metadata.namespace.as_deref() {
        let vmi = cluster.vmi(ns, &pt.spec.vm_name);
        for m in cluster.migrations_of(ns, &pt.spec.vm_name) {
            if matches!(progress(m, vmi), Progress::InFlight | Progress::Deleted)
                && let Some(t) = target_of(m, vmi)
            {
                out.insert(t);
            }
        }
    }
    for (name, view) in &cluster.nodes {
        let in_use = view
            .cnode
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.mdevs.iter().any(|m| m.uuid == uuid && m.in_use));
        if in_use {
            out.insert(name.clone());
        }
    }
    out
}

fn newest(list: &[MigrationView]) -> Option<&MigrationView> {
    list.iter().max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
}

fn terminal(outcome: &str) -> bool {
    outcome != RUNNING
}

fn rfc3339(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

/// Checks the target again: `Ok(verdict)` or `Err((reason code, verdict, message))`.
fn verify(
    pt: &CryptoPassthrough,
    placement: &Placement,
    source: Option<&str>,
    target: &str,
) -> Result<Class, (String, Option<Class>, String)> {
    if !pt.spec.migration.enabled {
        return Err(("MigrationDisabled".into(), None, "migration.enabled is false".into()));
    }
    let uuid = &placement.uuid;
    if source == Some(target) {
        return Err(("SameNode".into(), None, format!("the target node {target} is the source node")));
    }
    let Some(n) = placement.nodes.iter().find(|n| n.name == target) else {
        return Err((
            "NotPrepared".into(),
            None,
            format!("node {target} is not a prepared node of this passthrough (it does not hold mdev {uuid})"),
        ));
    };
    if !n.class.is_compatible() {
        let code = n.reasons.first().map_or("VerdictUnknown", |r| r.code.as_str()).to_string();
        let why: Vec<String> = n
            .reasons
            .iter()
            .map(|r| match &r.apqn {
                Some(q) => format!("{} ({q}): {}", r.code, r.message),
                None => format!("{}: {}", r.code, r.message),
            })
            .collect();
        let why = if why.is_empty() { "no verdict yet".to_string() } else { why.join("; ") };
        return Err((code, Some(n.class), format!("node {target} is {}: {why}", n.class.as_str())));
    }
    if !n.prepared {
        return Err((
            "MdevMissing".into(),
            Some(n.class),
            format!("node {target} does not hold the synced mdev {uuid}"),
        ));
    }
    Ok(n.class)
}

fn note(warning: bool, reason: &str, message: String) -> Note {
    Note { warning, reason: reason.to_string(), message }
}

/// The lifecycle of `pt`'s VM, given this reconcile's placement and new status.
pub fn assess(
    pt: &CryptoPassthrough,
    placement: &Placement,
    status: &CryptoPassthroughStatus,
    cluster: &Cluster,
) -> Lifecycle {
    let mut out = Lifecycle::default();
    let Some(ns) = pt.metadata.namespace.as_deref() else { return out };
    let vm = pt.spec.vm_name.as_str();
    let vmi = cluster.vmi(ns, vm);
    let migrations = cluster.migrations_of(ns, vm);
    let prev = pt.status.as_ref().and_then(|s| s.last_migration.clone());
    out.last = prev.clone();
    if let Some(m) = newest(migrations) {
        follow(pt, placement, cluster, vmi, m, prev.as_ref(), &mut out);
    }
    evacuate(pt, placement, status, cluster, vmi, migrations, &mut out);
    out
}

fn follow(
    pt: &CryptoPassthrough,
    placement: &Placement,
    cluster: &Cluster,
    vmi: Option<&VmiView>,
    m: &MigrationView,
    prev: Option<&LastMigration>,
    out: &mut Lifecycle,
) {
    let same = prev.filter(|p| p.migration == m.name && p.uid.as_ref().is_none_or(|u| *u == m.uid));
    if same.is_some_and(|p| terminal(&p.outcome)) {
        // Recorded as ended (aborted by us, above all): never revisited.
        return;
    }
    // The recorded migration's VMIM is gone (deleted by an abort, or garbage-collected): an older
    // VMIM left behind is no news.
    let recorded_start =
        prev.filter(|_| same.is_none()).and_then(|p| p.start_time.as_deref()?.parse::<Timestamp>().ok());
    if recorded_start.is_some_and(|r| m.created.is_none_or(|c| c <= r)) {
        return;
    }
    let target = target_of(m, vmi).or_else(|| same.and_then(|p| p.target.clone()));
    let source = source_of(m, vmi).or_else(|| same.and_then(|p| p.source.clone())).or_else(|| {
        matches!(progress(m, vmi), Progress::InFlight).then(|| vmi.and_then(|v| v.node_name.clone())).flatten()
    });
    let start = m.created;
    let mut last = LastMigration {
        migration: m.name.clone(),
        uid: Some(m.uid.clone()).filter(|u| !u.is_empty()),
        source: source.clone(),
        target: target.clone(),
        verdict: same.and_then(|p| p.verdict.clone()),
        outcome: RUNNING.to_string(),
        reason: None,
        message: None,
        start_time: rfc3339(start),
        end_time: None,
        duration_seconds: None,
    };
    let from_to = format!(
        "from {} to {}",
        source.as_deref().unwrap_or("an unknown node"),
        target.as_deref().unwrap_or("an unknown node")
    );
    let mut end = None;
    match progress(m, vmi) {
        Progress::Succeeded { end: e } => {
            end = Some(e.unwrap_or(cluster.now));
            last.outcome = SUCCEEDED.into();
            last.reason = Some("Completed".into());
            last.message = Some(format!("migrated {from_to}"));
        }
        Progress::Failed { end: e, aborted, message } => {
            end = Some(e.unwrap_or(cluster.now));
            last.outcome = if aborted { ABORTED } else { FAILED }.into();
            let reason = match (aborted, &target) {
                (true, _) => "AbortedByKubeVirt",
                (false, None) => "TargetNotPlaced",
                (false, Some(_)) => "MigrationFailed",
            };
            last.reason = Some(reason.into());
            last.message = Some(match &target {
                Some(_) => format!("{from_to}: {message}"),
                None => format!(
                    "{message} before its target was placed (e.g. no node could take the target pod: kubectl describe vmim {})",
                    m.name
                ),
            });
        }
        Progress::Deleted => {
            end = Some(cluster.now);
            last.outcome = ABORTED.into();
            last.reason = Some("Deleted".into());
            last.message = Some(format!(
                "{from_to}: the VirtualMachineInstanceMigration was deleted before it ended (KubeVirt aborts it)"
            ));
        }
        Progress::InFlight => {
            let phase = m.phase.clone().unwrap_or_else(|| "Pending".into());
            let checked = match &target {
                Some(t) => Some(verify(pt, placement, source.as_deref(), t).map_err(|e| (t.clone(), e))),
                None if !pt.spec.migration.enabled => {
                    Some(Err(("".to_string(), ("MigrationDisabled".into(), None, "migration.enabled is false".into()))))
                }
                None => None,
            };
            match checked {
                None => {
                    last.reason = Some(phase);
                    last.message = Some("waiting for KubeVirt to place the target".into());
                }
                Some(Ok(class)) => {
                    let t = target.clone().unwrap_or_default();
                    last.verdict = Some(class.as_str().into());
                    last.reason = Some(phase);
                    last.message =
                        Some(format!("target node {t} verified: {} with {}", class.as_str(), placement.uuid));
                    let before = same.and_then(|p| p.target.as_deref());
                    if before != Some(t.as_str()) {
                        out.notes.push(note(
                            false,
                            "MigrationTargetVerified",
                            format!(
                                "migration {} {from_to}: the target is {} and holds mdev {}",
                                m.name,
                                class.as_str(),
                                placement.uuid
                            ),
                        ));
                    }
                }
                Some(Err((_, (code, class, message)))) => {
                    end = Some(cluster.now);
                    last.verdict = class.map(|c| c.as_str().to_string()).or(last.verdict);
                    last.outcome = ABORTED.into();
                    last.reason = Some(code.clone());
                    last.message = Some(message.clone());
                    let text = format!("migration {} {from_to} aborted: {code}: {message}", m.name);
                    out.notes.push(note(true, "MigrationAborted", text.clone()));
                    out.vmi_notes.push(note(true, "MigrationAborted", text));
                    out.abort = Some(Abort {
                        namespace: pt.metadata.namespace.clone().unwrap_or_default(),
                        name: m.name.clone(),
                        uid: m.uid.clone(),
                        reason: code,
                        message,
                    });
                }
            }
        }
    }
    if let Some(e) = end {
        last.end_time = rfc3339(Some(e));
        last.duration_seconds = start.map(|s| e.duration_since(s).as_secs().max(0));
    }
    let changed = prev.is_none_or(|p| p.migration != last.migration || p.uid != last.uid || p.outcome != last.outcome);
    if changed && terminal(&last.outcome) {
        out.finished = OUTCOMES.iter().copied().find(|o| *o == last.outcome);
        let took = last.duration_seconds.map(|d| format!(" after {d}s")).unwrap_or_default();
        let msg = format!("migration {} {}{took}: {}", m.name, last.outcome, last.message.clone().unwrap_or_default());
        match last.outcome.as_str() {
            SUCCEEDED => out.notes.push(note(false, "MigrationSucceeded", msg)),
            FAILED => out.notes.push(note(true, "MigrationFailed", msg)),
            // Our own abort has its event above.
            _ if out.abort.is_none() => out.notes.push(note(true, "MigrationAborted", msg)),
            _ => {}
        }
    }
    out.last = Some(last);
}

/// The nodes' labels as they will be once this reconcile applied its prepared labels.
struct Labels<'a> {
    cluster: &'a Cluster,
    key: String,
    labeled: &'a BTreeSet<String>,
}

impl NodeLabels for Labels<'_> {
    fn node_match(&self, node: &str, selector: &BTreeMap<String, String>) -> decide::NodeMatch {
        let Some(view) = self.cluster.nodes.get(node) else { return decide::NodeMatch::Gone };
        let mut labels = view.labels.clone();
        labels.remove(&self.key);
        if self.labeled.contains(node) {
            labels.insert(self.key.clone(), decide::PREPARED_VALUE.to_string());
        }
        decide::mismatch(&labels, selector)
    }
}

/// FNV-1a: a hash that is the same in every build (names must not change between replicas).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The name of our `attempt`-th evacuation VMIM of a VMI off `node`.
pub fn evacuation_name(vmi: &str, vmi_uid: &str, node: &str, attempt: usize) -> String {
    let mut base: String = vmi.chars().take(40).collect();
    base = base.trim_end_matches(['-', '.']).to_string();
    format!("{EVACUATION_PREFIX}{base}-{:08x}", fnv(&format!("{vmi_uid}/{node}/{attempt}")) as u32)
}

fn refusal_code(r: &Refusal) -> &'static str {
    match r {
        Refusal::SelectorConflict { .. } => "SelectorConflict",
        Refusal::MigrationDisabled { .. } => "MigrationDisabled",
        Refusal::NotReady { .. } => "NotReady",
        Refusal::VmiNotFound { .. } => "VmiNotFound",
        Refusal::VmiNotRunning { .. } => "VmiNotRunning",
        Refusal::StatusBehind { .. } => "StatusBehind",
        Refusal::KernelCannotMigrate { .. } => "KernelCannotMigrate",
        Refusal::NotSteered { .. } => "NotSteered",
        Refusal::NoTarget { .. } => "NoTarget",
        Refusal::NoCommonTarget { .. } => "NoCommonTarget",
    }
}

fn evacuate(
    pt: &CryptoPassthrough,
    placement: &Placement,
    status: &CryptoPassthroughStatus,
    cluster: &Cluster,
    vmi: Option<&VmiView>,
    migrations: &[MigrationView],
    out: &mut Lifecycle,
) {
    let Some(v) = vmi else { return };
    let Some(node) = v.evacuation_node.as_deref() else { return };
    if v.running_on() != Some(node) {
        return;
    }
    let ns = pt.metadata.namespace.clone().unwrap_or_default();
    let external = v.eviction_strategy.as_deref().or(cluster.default_eviction_strategy.as_deref()) == Some(EXTERNAL);
    let prev = pt.status.as_ref().and_then(|s| crate::api::condition::find(&s.conditions, EVACUATION)).cloned();
    let set = |out: &mut Lifecycle, ok: bool, reason: &str, message: String, event: Option<(bool, &str)>| {
        let c = Condition::new(EVACUATION, ok, reason, message.clone());
        let changed = prev.as_ref().is_none_or(|p| p.status != c.status || p.reason != c.reason);
        if changed && let Some((warning, why)) = event {
            out.notes.push(note(warning, why, message.clone()));
            out.vmi_notes.push(note(warning, why, message));
        }
        out.evacuation = Some(c);
    };
    if let Some(m) = migrations.iter().find(|m| progress(m, vmi) == Progress::InFlight) {
        let msg = format!(
            "the drain of node {node} waits for migration {} ({})",
            m.name,
            m.phase.as_deref().unwrap_or("Pending")
        );
        set(out, true, "MigrationInFlight", msg, None);
        return;
    }
    // Would the gate admit a VMIM steered onto our prepared nodes? The same decision as the
    // webhook's, on the status this reconcile writes.
    let uuid = placement.uuid.clone();
    let key = prepared_label(&uuid);
    let added = BTreeMap::from([(key.clone(), decide::PREPARED_VALUE.to_string())]);
    let mut judged = pt.clone();
    judged.status = Some(status.clone());
    let req = Request {
        namespace: &ns,
        vmi_name: &pt.spec.vm_name,
        added_node_selector: &added,
        evacuation_node: Some(node),
    };
    let facts = VmiFacts { node_name: v.node_name.as_deref(), node_selector: &v.node_selector };
    let labels = Labels { cluster, key, labeled: &placement.labeled };
    match decide::validate(&req, Some(facts), &[&judged], &labels) {
        Decision::Deny(d) => {
            let msg = format!("the drain of node {node} waits: {}", d.refusal);
            set(out, false, refusal_code(&d.refusal), msg, Some((true, "EvacuationBlocked")));
        }
        Decision::NotOurs => {}
        Decision::Allow { targets } if !external => {
            let msg = format!(
                "a drain of node {node} is under way; KubeVirt creates the migration (prepared targets: {})",
                targets.join(", ")
            );
            set(out, true, "WaitingForKubeVirt", msg, None);
        }
        Decision::Allow { targets } => {
            let uid = v.uid.clone().unwrap_or_default();
            let ours: Vec<&MigrationView> = migrations
                .iter()
                .filter(|m| m.name.starts_with(EVACUATION_PREFIX) && m.evacuation.as_deref() == Some(node))
                .collect();
            if let Some(last_end) = ours.iter().filter_map(|m| m.ended.or(m.created)).max() {
                let since = cluster.now.duration_since(last_end).unsigned_abs();
                if since < EVACUATION_RETRY {
                    let wait = EVACUATION_RETRY - since;
                    out.requeue_after = Some(wait);
                    let msg = format!(
                        "the drain of node {node} waits: the previous migration ended {}s ago; retrying in {}s",
                        since.as_secs(),
                        wait.as_secs().max(1)
                    );
                    set(out, false, "RetryPending", msg, None);
                    return;
                }
            }
            let name = evacuation_name(&pt.spec.vm_name, &uid, node, ours.len());
            let msg = format!(
                "evictionStrategy External: migrating {} off node {node} with {name} (prepared targets: {})",
                pt.spec.vm_name,
                targets.join(", ")
            );
            set(out, true, "MigrationCreated", msg, Some((false, "EvacuationMigrationCreated")));
            out.create = Some(NewMigration {
                namespace: ns,
                name,
                vmi: pt.spec.vm_name.clone(),
                evacuation_node: node.to_string(),
                added_node_selector: added,
            });
        }
    }
}
