//! The executor: runs a plan against a [`Host`], one write at a time, each re-read to verify.
//!
//! - The ownership record is saved *before* a write that creates state (create, mask clear,
//!   override) and *after* one that removes it, so a crash between any two writes converges.
//! - Each mdev is all or nothing: when one of its writes fails, the mdev is put back (an mdev
//!   created in this run is removed, an existing one gets its old configuration back) and the
//!   rest of its steps are skipped; other mdevs go on.
//! - Bits and overrides are given back only after a run without failures, as planned; after a
//!   failure the give-back is planned again from a fresh read of the host, so a queue an mdev
//!   holds never goes back to the host.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::ap::{Mask, Matrix, kmsg};

use super::host::{Errno, Host};
use super::ownership::{Ownership, OwnershipStore};
use super::plan::{self, Op, Phase, Plan, Step, mdev_dir};

/// A kernel refusal, by what the errno means for the write that got it (kernel-ap.md §3, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `EADDRNOTAVAIL`: an APQN is owned by the host's drivers.
    HostOwned,
    /// `EADDRINUSE`: an APQN is in another mdev's matrix.
    QueueInUse,
    /// `EBUSY`: a queue would go back to the host while an mdev holds it, or the device is busy.
    Busy,
    /// `ENODEV`: an id above the maximum, or the mdev is gone.
    NoDevice,
    /// `EEXIST`: an mdev with this UUID exists.
    Exists,
    /// `EUSERS`: no mdev instances left.
    NoInstances,
    /// `EINVAL`: the kernel did not accept the value (or the host profile forbids the write).
    Invalid,
    /// `ENOENT`/`EACCES`: the attribute is not there or not writable.
    NoAttribute,
    Other,
}

impl Refusal {
    pub fn of(errno: Errno) -> Refusal {
        match errno {
            libc::EADDRNOTAVAIL => Refusal::HostOwned,
            libc::EADDRINUSE => Refusal::QueueInUse,
            libc::EBUSY => Refusal::Busy,
            libc::ENODEV => Refusal::NoDevice,
            libc::EEXIST => Refusal::Exists,
            libc::EUSERS => Refusal::NoInstances,
            libc::EINVAL => Refusal::Invalid,
            libc::ENOENT | libc::EACCES => Refusal::NoAttribute,
            _ => Refusal::Other,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HostOwned => "host_owned",
            Refusal::QueueInUse => "queue_in_use",
            Refusal::Busy => "busy",
            Refusal::NoDevice => "no_device",
            Refusal::Exists => "exists",
            Refusal::NoInstances => "no_instances",
            Refusal::Invalid => "invalid",
            Refusal::NoAttribute => "no_attribute",
            Refusal::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    #[error("{path}: writing {data:?} failed with {}", kmsg::errno_name(*errno))]
    Kernel { path: String, data: String, errno: Errno, refusal: Refusal },
    #[error("{path}: wrote {data:?} but read back {found:?}")]
    Verify { path: String, data: String, found: String },
    #[error("{path}: reading back failed with {}", kmsg::errno_name(*errno))]
    ReadBack { path: String, errno: Errno },
    #[error("ownership record: {0}")]
    State(String),
    #[error("reading the host again after a failure: {0}")]
    Inventory(String),
}

impl ExecError {
    /// Stable label for the `reason` of error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ExecError::Kernel { refusal, .. } => refusal.label(),
            ExecError::Verify { .. } => "verify",
            ExecError::ReadBack { .. } => "read_back",
            ExecError::State(_) => "state",
            ExecError::Inventory(_) => "inventory",
        }
    }
    /// The kernel's errno, when it returned one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ExecError::Kernel { errno, .. } | ExecError::ReadBack { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// What became of one mdev of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every planned write of it succeeded (or none was needed).
    Done,
    /// A write failed; the mdev was put back as it was (see `compensated`).
    Failed { error: ExecError, compensated: Result<(), ExecError> },
}

/// One write that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub data: String,
    pub result: Result<(), Errno>,
}

#[derive(Debug, Clone, Default)]
pub struct Execution {
    pub mdevs: BTreeMap<String, Outcome>,
    /// Failures not tied to one mdev (a give-back, the record).
    pub errors: Vec<ExecError>,
    pub writes: Vec<Written>,
}

impl Execution {
    pub fn failed(&self, uuid: &str) -> bool {
        matches!(self.mdevs.get(uuid), Some(Outcome::Failed { .. }))
    }
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.mdevs.values().all(|o| *o == Outcome::Done)
    }
}

struct Run<'a> {
    host: &'a dyn Host,
    store: &'a OwnershipStore,
    own: &'a mut Ownership,
    out: Execution,
    created: BTreeSet<String>,
    /// Per mdev: the configuration before this run, and the assign writes made (to undo them).
    before: BTreeMap<String, Matrix>,
    assigned: BTreeMap<String, Vec<Op>>,
}

/// Runs `plan`, keeping `own` (and its store) up to date.
pub fn execute(host: &dyn Host, store: &OwnershipStore, own: &mut Ownership, plan: &Plan) -> Execution {
    let mut run = Run {
        host,
        store,
        own,
        out: Execution::default(),
        created: BTreeSet::new(),
        before: BTreeMap::new(),
        assigned: BTreeMap::new(),
    };
    let mut verified_assigns = false;
    for step in plan.steps.iter().filter(|s| s.phase != Phase::Restore) {
        if step.phase > Phase::Configure && !verified_assigns {
            run.verify_assigns(plan);
            verified_assigns = true;
        }
        run.step(step);
    }
    if !verified_assigns {
        run.verify_assigns(plan);
    }
    let failed = run.out.mdevs.values().any(|o| *o != Outcome::Done);
    if !failed {
        for step in plan.steps.iter().filter(|s| s.phase == Phase::Restore) {
            if let Err(e) = run.write(&step.op) {
                run.out.errors.push(e);
            }
        }
    } else {
        run.restore_after_failure(plan);
    }
    if !plan.forget.is_empty() {
        let mut next = run.own.clone();
        plan.forget.apply(&mut next);
        if let Err(e) = run.save(next) {
            run.out.errors.push(e);
        }
    }
    for m in plan.mdevs.iter().filter(|m| m.action != plan::Action::Refused && m.action != plan::Action::Foreign) {
        run.out.mdevs.entry(m.uuid.clone()).or_insert(Outcome::Done);
    }
    run.out
}

impl Run<'_> {
    fn save(&mut self, next: Ownership) -> Result<(), ExecError> {
        if next == *self.own {
            return Ok(());
        }
        self.store.save(&next).map_err(|e| ExecError::State(e.to_string()))?;
        *self.own = next;
        Ok(())
    }

    fn is_failed(&self, uuid: &str) -> bool {
        self.out.failed(uuid)
    }

    fn step(&mut self, step: &Step) {
        let owner = step.op.mdev().map(str::to_string);
        if owner.as_deref().is_some_and(|u| self.is_failed(u)) {
            return;
        }
        // Handing queues over only for mdevs that already failed would be for nothing. (A
        // release still runs: the mdev released from is ours and changing anyway.)
        if step.phase == Phase::MaskEdit && !step.serves.is_empty() && step.serves.iter().all(|u| self.is_failed(u)) {
            return;
        }
        match &step.op {
            Op::ApConfig { uuid, from, .. } => {
                self.before.entry(uuid.clone()).or_insert(*from);
            }
            Op::Assign { uuid, .. } => {
                self.assigned.entry(uuid.clone()).or_default();
            }
            _ => {}
        }
        match self.write(&step.op) {
            Ok(()) => match &step.op {
                Op::Create { uuid } => {
                    self.created.insert(uuid.clone());
                }
                Op::Assign { uuid, .. } => self.assigned.entry(uuid.clone()).or_default().push(step.op.clone()),
                _ => {}
            },
            Err(e) => {
                if let Op::Create { uuid } = &step.op {
                    // The create write failed: nothing was made, so nothing of that UUID is ours.
                    let mut next = self.own.clone();
                    next.mdevs.remove(uuid);
                    if let Err(se) = self.save(next) {
                        self.out.errors.push(se);
                    }
                }
                let mut hit: Vec<String> = owner.into_iter().collect();
                if step.op.mdev().is_none() || matches!(step.phase, Phase::Release) {
                    hit.extend(step.serves.iter().cloned());
                }
                hit.sort();
                hit.dedup();
                for u in hit {
                    self.fail(&u, e.clone());
                }
                if step.op.mdev().is_none() && step.serves.is_empty() {
                    self.out.errors.push(e);
                }
            }
        }
    }

    /// Marks `uuid` failed and puts it back as it was before this run.
    fn fail(&mut self, uuid: &str, error: ExecError) {
        if self.is_failed(uuid) {
            return;
        }
        let compensated = self.compensate(uuid);
        self.out.mdevs.insert(uuid.to_string(), Outcome::Failed { error, compensated });
    }

    fn compensate(&mut self, uuid: &str) -> Result<(), ExecError> {
        let dir = mdev_dir(uuid);
        if self.created.remove(uuid) {
            self.write(&Op::Remove { uuid: uuid.to_string() })?;
            return Ok(());
        }
        if let Some(done) = self.assigned.remove(uuid) {
            for op in done.iter().rev() {
                if let Op::Assign { uuid, part, id, on } = op {
                    self.write(&Op::Assign { uuid: uuid.clone(), part: *part, id: *id, on: !on })?;
                }
            }
        }
        if let Some(before) = self.before.remove(uuid) {
            let now = self.host.read(&format!("{dir}/ap_config")).ok().and_then(|s| Matrix::parse_ap_config(&s).ok());
            if now != Some(before) {
                self.write(&Op::ApConfig { uuid: uuid.to_string(), config: before, from: before })?;
            }
        }
        Ok(())
    }

    /// One write with its record keeping and its verification.
    fn write(&mut self, op: &Op) -> Result<(), ExecError> {
        let mut pre = self.own.clone();
        match op {
            Op::Mask { mask, clear, .. } if !clear.is_empty() => match mask {
                plan::BusMask::Apmask => pre.apmask_cleared = pre.apmask_cleared.or(clear),
                plan::BusMask::Aqmask => pre.aqmask_cleared = pre.aqmask_cleared.or(clear),
            },
            Op::Override { apqn, set: true } => {
                pre.overrides.insert(*apqn);
            }
            Op::Create { uuid } => {
                pre.mdevs.insert(uuid.clone());
            }
            _ => {}
        }
        self.save(pre)?;
        let (path, data) = (op.path(), op.data());
        if let Op::Migratable { if_present: true, .. } = op
            && !self.host.exists(&path)
        {
            return Ok(());
        }
        let result = self.host.write(&path, &data);
        self.out.writes.push(Written { path: path.clone(), data: data.clone(), result });
        if let Err(errno) = result {
            return Err(ExecError::Kernel { path, data, errno, refusal: super::exec::Refusal::of(errno) });
        }
        self.verify(op)?;
        let mut post = self.own.clone();
        match op {
            Op::Mask { mask, set, .. } if !set.is_empty() => match mask {
                plan::BusMask::Apmask => post.apmask_cleared = post.apmask_cleared.and_not(set),
                plan::BusMask::Aqmask => post.aqmask_cleared = post.aqmask_cleared.and_not(set),
            },
            Op::Override { apqn, set: false } => {
                post.overrides.remove(apqn);
            }
            Op::Remove { uuid } => {
                post.mdevs.remove(uuid);
            }
            _ => {}
        }
        self.save(post)
    }

    fn read(&self, path: &str) -> Result<String, ExecError> {
        self.host.read(path).map_err(|errno| ExecError::ReadBack { path: path.to_string(), errno })
    }

    fn verify(&self, op: &Op) -> Result<(), ExecError> {
        let path = op.path();
        let mismatch = |found: String| Err(ExecError::Verify { path: path.clone(), data: op.data(), found });
        match op {
            Op::Mask { clear, set, .. } => {
                let v = self.read(&path)?;
                let ok = Mask::parse_absolute(&v).is_ok_and(|m| m.and(clear).is_empty() && set.is_subset_of(&m));
                if !ok {
                    return mismatch(v);
                }
            }
            Op::Override { set, .. } => {
                let v = self.read(&path)?;
                if v.trim_end_matches('\n') != if *set { "vfio_ap" } else { "" } {
                    return mismatch(v);
                }
            }
            Op::Create { uuid } | Op::Remove { uuid } => {
                let exists = self.host.exists(&mdev_dir(uuid));
                if exists != matches!(op, Op::Create { .. }) {
                    return mismatch(format!(
                        "{} {}",
                        mdev_dir(uuid),
                        if exists { "still exists" } else { "is missing" }
                    ));
                }
            }
            Op::ApConfig { config, .. } => {
                let v = self.read(&path)?;
                if Matrix::parse_ap_config(&v).ok() != Some(*config) {
                    return mismatch(v);
                }
            }
            Op::Migratable { value, .. } => {
                let v = self.read(&path)?;
                if v.trim_end_matches('\n') != if *value { "1" } else { "0" } {
                    return mismatch(v);
                }
            }
            // Checked as a whole once the mdev's assignments are done (`verify_assigns`).
            Op::Assign { .. } => {}
        }
        Ok(())
    }

    /// Mdevs configured by assign/unassign writes: `matrix` and `control_domains` as planned.
    fn verify_assigns(&mut self, plan: &Plan) {
        let uuids: Vec<String> = self.assigned.keys().filter(|u| !self.is_failed(u)).cloned().collect();
        for uuid in uuids {
            let Some(want) = plan.mdev(&uuid).map(|m| m.matrix) else { continue };
            let dir = mdev_dir(&uuid);
            let check = (|| {
                let m = self.read(&format!("{dir}/matrix"))?;
                let c = self.read(&format!("{dir}/control_domains"))?;
                let got = Matrix::parse_listing(&m).ok().map(|x| x.apqns());
                let ctl = Matrix::parse_control_listing(&c).ok();
                if got != Some(want.apqns()) || ctl != Some(want.control) {
                    return Err(ExecError::Verify { path: format!("{dir}/matrix"), data: want.listing(), found: m });
                }
                Ok(())
            })();
            if let Err(e) = check {
                self.fail(&uuid, e);
            }
        }
    }

    /// After a failure: give back only what the host, as it is now, lets go of.
    fn restore_after_failure(&mut self, plan: &Plan) {
        let inv = match self.host.inventory() {
            Ok(i) => i,
            Err(e) => {
                self.out.errors.push(ExecError::Inventory(e.to_string()));
                return;
            }
        };
        let finals: Vec<Matrix> = inv.mdevs.values().map(|m| m.matrix).collect();
        let own = self.own.clone();
        for step in plan::restore_steps(&inv, &own, plan.mode, &finals, &inv.apmask, &inv.aqmask) {
            if let Err(e) = self.write(&step.op) {
                self.out.errors.push(e);
            }
        }
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
