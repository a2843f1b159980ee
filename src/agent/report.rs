//! What one `apply` did, per mdev, for people (`-o text`) and programs (`-o json`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::ap::{KernelProfile, Matrix, kmsg};

use super::exec::{ExecError, Execution, Outcome};
use super::plan::{Action, MaskMode, Phase, Plan};
use super::reason::{Code, Reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// As desired.
    Synced,
    /// Dry run: these writes would be made.
    Planned,
    Refused,
    Failed,
    Removed,
    /// Ours, no longer desired, in use by a guest: the removal waits.
    Waiting,
    Foreign,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    /// `metric_label()` of the error.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<&'static str>,
    pub message: String,
    /// When putting the mdev back failed too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<String>,
}

impl ErrorReport {
    fn of(e: &ExecError, compensation: Option<&ExecError>) -> ErrorReport {
        ErrorReport {
            kind: e.metric_label(),
            errno: e.errno().map(kmsg::errno_name),
            message: e.to_string(),
            compensation: compensation.map(|c| c.to_string()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MdevReport {
    pub uuid: String,
    pub desired: bool,
    pub action: Action,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Reason>,
    pub matrix: Matrix,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWrite {
    pub phase: Phase,
    pub path: String,
    pub data: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub mode: MaskMode,
    pub profile: KernelProfile,
    pub plan: Vec<PlannedWrite>,
    pub mdevs: Vec<MdevReport>,
    /// Node-level warnings (`KernelCannotMigrate`).
    pub node: Vec<Reason>,
    pub errors: Vec<ErrorReport>,
    /// Writes made to sysfs (0 on a dry run).
    pub writes: usize,
}

impl Report {
    pub fn new(plan: &Plan, exec: Option<&Execution>, extra: &[String]) -> Report {
        let mdevs = plan
            .mdevs
            .iter()
            .map(|m| {
                let outcome = exec.and_then(|e| e.mdevs.get(&m.uuid)).filter(|_| m.action != Action::Refused);
                let (state, error) = match (m.action, outcome) {
                    (Action::Foreign, _) => (State::Foreign, None),
                    (Action::Refused, _) if m.reason.as_ref().is_some_and(|r| r.code == Code::MdevInUse) => {
                        (State::Waiting, None)
                    }
                    (Action::Refused, _) => (State::Refused, None),
                    (_, Some(Outcome::Failed { error, compensated })) => {
                        (State::Failed, Some(ErrorReport::of(error, compensated.as_ref().err())))
                    }
                    (Action::Unchanged, _) => (State::Synced, None),
                    (_, None) => (State::Planned, None),
                    (Action::Remove, Some(Outcome::Done)) => (State::Removed, None),
                    (_, Some(Outcome::Done)) => (State::Synced, None),
                };
                MdevReport {
                    uuid: m.uuid.clone(),
                    desired: m.desired,
                    action: m.action,
                    state,
                    reason: m.reason.clone(),
                    error,
                    notes: m.notes.clone(),
                    matrix: m.matrix,
                }
            })
            .collect();
        let mut errors: Vec<ErrorReport> =
            exec.map(|e| e.errors.iter().map(|x| ErrorReport::of(x, None)).collect()).unwrap_or_default();
        errors.extend(extra.iter().map(|m| ErrorReport {
            kind: "mdevctl",
            errno: None,
            message: m.clone(),
            compensation: None,
        }));
        Report {
            dry_run: exec.is_none(),
            mode: plan.mode,
            profile: plan.profile,
            plan: plan
                .steps
                .iter()
                .map(|s| PlannedWrite { phase: s.phase, path: s.op.path(), data: s.op.data() })
                .collect(),
            mdevs,
            node: plan.node.clone(),
            errors,
            writes: exec.map(|e| e.writes.len()).unwrap_or(0),
        }
    }

    /// 0 when every mdev is as desired (or, dry, would be), 1 when some were refused or failed.
    pub fn exit_code(&self) -> u8 {
        let bad = self.mdevs.iter().any(|m| matches!(m.state, State::Refused | State::Failed | State::Waiting));
        u8::from(bad || !self.errors.is_empty())
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let verb = if self.dry_run { "plan (dry run, nothing written)" } else { "plan" };
        let _ = writeln!(
            s,
            "{verb}: {} writes, masks {:?}, kernel profile {}",
            self.plan.len(),
            self.mode,
            self.profile.as_str()
        );
        for (i, w) in self.plan.iter().enumerate() {
            let _ = writeln!(s, "  {:>2}. {:<10} {} <- {:?}", i + 1, format!("{:?}", w.phase), w.path, w.data);
        }
        let _ = writeln!(s, "mdevs:");
        for m in &self.mdevs {
            let apqns = m.matrix.apqns().len();
            let _ = writeln!(
                s,
                "  {}  {:<8} {:<11} {apqns} APQNs, {} control domains",
                m.uuid,
                format!("{:?}", m.state).to_lowercase(),
                format!("{:?}", m.action).to_lowercase(),
                m.matrix.control.count()
            );
            if let Some(r) = &m.reason {
                let _ = writeln!(s, "      reason: {r}");
            }
            if let Some(e) = &m.error {
                let _ = writeln!(s, "      error [{}]: {}", e.kind, e.message);
                if let Some(c) = &e.compensation {
                    let _ = writeln!(s, "      putting it back failed too: {c}");
                }
            }
            for n in &m.notes {
                let _ = writeln!(s, "      note: {n}");
            }
        }
        for n in &self.node {
            let _ = writeln!(s, "node: {n}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "error [{}]: {}", e.kind, e.message);
        }
        if !self.dry_run {
            let _ = writeln!(s, "{} writes made", self.writes);
        }
        s
    }
}
