//! One pass of the agent: read the host, plan, execute, mirror mdevctl definitions, report.

use std::path::PathBuf;

use thiserror::Error;

use crate::ap::inventory::Inventory;

use super::desired::Desired;
use super::exec::{Execution, Outcome, execute};
use super::host::Host;
use super::mdevctl;
use super::ownership::{OwnershipStore, StateError};
use super::plan::{Action, MaskMode, Plan, mdev_dir, plan};
use super::report::Report;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub mode: MaskMode,
    pub dry_run: bool,
    /// mdevctl's config root (`/etc/mdevctl.d`): definitions of our mdevs go to `matrix/<uuid>`.
    pub mdevctl_dir: Option<PathBuf>,
}

/// Failures before anything could be planned (exit code 2 in the one-shot mode).
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Inventory(#[from] crate::sysfs::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Reads the host and the record, plans, and (unless dry) executes.
pub fn apply(
    host: &dyn Host,
    store: &OwnershipStore,
    desired: &Desired,
    opts: &ApplyOptions,
) -> Result<Report, ApplyError> {
    apply_read(host, store, desired, opts).map(|(report, _)| report)
}

/// [`apply`], also returning the inventory it planned on (the host before any write).
pub fn apply_read(
    host: &dyn Host,
    store: &OwnershipStore,
    desired: &Desired,
    opts: &ApplyOptions,
) -> Result<(Report, Inventory), ApplyError> {
    let inv: Inventory = host.inventory()?;
    let mut own = store.load()?;
    let p = plan(desired, &inv, &own, opts.mode);
    if opts.dry_run {
        return Ok((Report::new(&p, None, &[]), inv));
    }
    let exec = execute(host, store, &mut own, &p);
    let extra = match &opts.mdevctl_dir {
        Some(dir) => sync_mdevctl(host, dir, desired, &p, &exec),
        None => Vec::new(),
    };
    Ok((Report::new(&p, Some(&exec), &extra), inv))
}

/// Definitions for our mdevs that are as desired; none for our mdevs that are not desired.
/// Returns the errors (the sysfs work is done; they are reported, not fatal).
fn sync_mdevctl(host: &dyn Host, dir: &std::path::Path, desired: &Desired, p: &Plan, exec: &Execution) -> Vec<String> {
    let mut errors = Vec::new();
    for m in &p.mdevs {
        let done = exec.mdevs.get(&m.uuid) == Some(&Outcome::Done);
        let r = match m.action {
            Action::Create | Action::Reconfigure | Action::Unchanged if m.desired && done => {
                let wants = desired.mdevs.iter().any(|d| d.uuid == m.uuid && d.migratable);
                let has_attr = host.exists(&format!("{}/migratable", mdev_dir(&m.uuid)));
                mdevctl::write(dir, &m.uuid, &mdevctl::definition(&m.matrix, (wants && has_attr).then_some(true)))
                    .map(|_| ())
            }
            Action::Remove | Action::Refused if !m.desired => mdevctl::remove(dir, &m.uuid).map(|_| ()),
            _ => Ok(()),
        };
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    for u in &p.forget.mdevs {
        if let Err(e) = mdevctl::remove(dir, u) {
            errors.push(e.to_string());
        }
    }
    errors
}
