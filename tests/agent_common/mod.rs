//! Support for the agent's tests: apply through a FUSE-mounted simulator (in process or with the
//! real binary) and check the promises of issue 4 against the simulator's own state.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cryptopass::agent::report::{Report, State};
use cryptopass::agent::{ApplyOptions, Desired, DesiredMdev, MaskMode, Ownership, OwnershipStore, RootDir, apply};
use cryptopass::ap::{Apqn, Mask, Matrix};
use cryptopass::sim::kernel::SimMdev;
use cryptopass::sim::{self, Kernel};

use crate::common::Mounted;

pub fn opts(mode: MaskMode) -> ApplyOptions {
    ApplyOptions { mode, dry_run: false, mdevctl_dir: None }
}

/// One in-process pass against the mount.
pub fn apply_in(m: &Mounted, state: &Path, desired: &Desired, mode: MaskMode) -> Report {
    apply(&RootDir::new(m.root()), &OwnershipStore::new(state), desired, &opts(mode)).expect("apply reads the host")
}

/// One pass of the real binary; returns its exit code (None when killed by a signal).
pub fn apply_bin(m: &Mounted, state: &Path, desired: &Desired, mode: MaskMode) -> Option<i32> {
    let file = state.with_extension("desired.json");
    std::fs::write(&file, serde_json::to_string(desired).expect("json")).expect("desired file");
    let mode = match mode {
        MaskMode::Manage => "manage",
        MaskMode::Override => "override",
        MaskMode::Observe => "observe",
    };
    let out = Command::new(env!("CARGO_BIN_EXE_cryptopass"))
        .args(["agent", "apply", "--sysfs-root"])
        .arg(m.root())
        .arg("--desired")
        .arg(&file)
        .arg("--state-dir")
        .arg(state)
        .args(["--ap-masks", mode, "-o", "json"])
        .output()
        .expect("run cryptopass");
    out.status.code()
}

pub fn kernel(m: &Mounted) -> Kernel {
    sim::lock(&m.sim).kernel.clone()
}

pub fn writes(m: &Mounted) -> u64 {
    sim::lock(&m.sim).writes
}

pub fn ownership(state: &Path) -> Ownership {
    OwnershipStore::new(state).load().expect("ownership record")
}

/// Adds an mdev someone else made (valid by the kernel's rules: the caller hands its queues over).
pub fn add_foreign(k: &mut Kernel, uuid: &str, matrix: Matrix, in_use: bool) {
    let group = k.next_iommu_group;
    k.next_iommu_group += 1;
    k.available_instances -= 1;
    k.mdevs
        .insert(uuid.to_string(), SimMdev { matrix, migratable: false, in_use, migrating: false, iommu_group: group });
}

/// The kernel invariant the agent must never break: no APQN of any mdev is host-owned.
pub fn no_held_queue_is_host_owned(k: &Kernel) -> Result<(), String> {
    for (u, md) in &k.mdevs {
        if let Some(q) = md.matrix.apqns().into_iter().find(|q| k.host_owned(*q)) {
            return Err(format!("{q} of {u} is owned by the host"));
        }
    }
    Ok(())
}

/// Every mdev of ours is exactly as desired, or absent, or (refused, or in use and no longer
/// desired) exactly as it was before: none is half-configured.
pub fn ours_exact_or_absent(
    k: &Kernel,
    before: &Kernel,
    own: &Ownership,
    desired: &Desired,
    r: Option<&Report>,
) -> Result<(), String> {
    // the first entry of a UUID is the one that counts
    let want: BTreeMap<&str, &DesiredMdev> = desired.mdevs.iter().rev().map(|d| (d.uuid.as_str(), d)).collect();
    let kept = |u: &str| {
        r.is_some_and(|r| {
            r.mdevs.iter().any(|m| m.uuid == u && matches!(m.state, State::Refused | State::Waiting | State::Failed))
        })
    };
    for u in &own.mdevs {
        let Some(md) = k.mdevs.get(u) else { continue };
        let unchanged = before.mdevs.get(u).is_some_and(|b| b.matrix == md.matrix);
        match want.get(u.as_str()) {
            Some(d) if md.matrix == d.matrix() => {}
            _ if kept(u) && unchanged => {}
            None if md.in_use => {}
            Some(d) => return Err(format!("{u}: matrix {:?}, desired {:?}", md.matrix, d.matrix())),
            None => return Err(format!("{u}: ours, not desired, not in use, still there")),
        }
    }
    Ok(())
}

/// After an apply: every desired mdev is synced exactly (matrix, and migratable on v1) or has a
/// reason; foreign mdevs are untouched.
pub fn check_report(k: &Kernel, before: &Kernel, own: &Ownership, desired: &Desired, r: &Report) -> Result<(), String> {
    for (i, d) in desired.mdevs.iter().enumerate() {
        let m = r.mdevs.get(i).ok_or("report lacks an entry")?;
        match m.state {
            State::Synced => {
                let md = k.mdevs.get(&d.uuid).ok_or(format!("{}: synced but absent", d.uuid))?;
                if md.matrix != d.matrix() {
                    return Err(format!("{}: synced with {:?}, desired {:?}", d.uuid, md.matrix, d.matrix()));
                }
                if k.has_migratable_attr() && md.migratable != d.migratable {
                    return Err(format!("{}: migratable {} desired {}", d.uuid, md.migratable, d.migratable));
                }
            }
            State::Refused if m.reason.is_some() => {}
            s => return Err(format!("{}: state {s:?} without reason ({:?})", d.uuid, m.error)),
        }
    }
    for (u, md) in &before.mdevs {
        if !own.owns_mdev(u) && !desired.mdevs.iter().any(|d| &d.uuid == u) && k.mdevs.get(u) != Some(md) {
            return Err(format!("foreign {u} changed"));
        }
    }
    Ok(())
}

/// Bits that changed between two kernels are all bits the agent recorded (before or after).
pub fn only_recorded_bits_changed(
    before: &Kernel,
    after: &Kernel,
    o1: &Ownership,
    o2: &Ownership,
) -> Result<(), String> {
    let diff = |a: &Mask, b: &Mask| a.and_not(b).or(&b.and_not(a));
    let ap = diff(&before.apmask, &after.apmask).and_not(&o1.apmask_cleared.or(&o2.apmask_cleared));
    let aq = diff(&before.aqmask, &after.aqmask).and_not(&o1.aqmask_cleared.or(&o2.aqmask_cleared));
    if !ap.is_empty() || !aq.is_empty() {
        return Err(format!("unrecorded mask bits changed: apmask {ap:?} aqmask {aq:?}"));
    }
    for q in after.queue_ids() {
        let recorded = o1.overrides.contains(&q) || o2.overrides.contains(&q);
        if before.driver_override(q) != after.driver_override(q) && !recorded {
            return Err(format!("unrecorded driver_override of {q} changed"));
        }
    }
    Ok(())
}

pub fn apqn(a: u8, d: u8) -> Apqn {
    Apqn::new(a, d)
}

pub fn mx(a: &[u8], d: &[u8], c: &[u8]) -> Matrix {
    Matrix::new(Mask::from_ids(a.iter().copied()), Mask::from_ids(d.iter().copied()), Mask::from_ids(c.iter().copied()))
}

pub fn uuid(n: u8) -> String {
    format!("4b1d0000-0000-4000-8000-0000000000{n:02x}")
}
