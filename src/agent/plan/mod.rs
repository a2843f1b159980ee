//! The planner, pure: desired mdevs + observed inventory + ownership record → ordered operations,
//! or a typed refusal per mdev. No I/O here; every rule is unit-tested in `tests.rs`.
//!
//! Order of a plan (each phase only when needed):
//! 1. `MaskEdit`  — hand queues to vfio_ap (relative `apmask`/`aqmask` edits) or `driver_override`;
//! 2. `Create`    — new mdevs;
//! 3. `Release`   — shrink or remove our own mdevs that hold an APQN another of ours now wants;
//! 4. `Configure` — one atomic `ap_config` write per mdev (assign/unassign without it);
//! 5. `Migratable`— the per-mdev attribute, v1 kernels only;
//! 6. `Remove`    — obsolete mdevs of ours that no guest uses;
//! 7. `Restore`   — give cleared mask bits / overrides back once no mdev holds their queues.

mod decide;
mod masks;
mod ops;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::ap::inventory::MDEV_TYPE;
use crate::ap::{Apqn, Inventory, KernelProfile, Mask, Matrix, ids};

use super::desired::Desired;
use super::ownership::Ownership;
use super::reason::Reason;

pub use masks::restore_steps;

/// `--ap-masks`: how queues are handed to vfio_ap (architecture.md, "Masks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// Clear only the apmask or aqmask bits needed, give them back when no mdev holds the queues.
    Manage,
    /// Per-queue `driver_override` (kernel >= 6.19); masks are never written.
    Override,
    /// Write neither: report queues not available to vfio_ap.
    Observe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusMask {
    Apmask,
    Aqmask,
}

impl BusMask {
    pub fn file(self) -> &'static str {
        match self {
            BusMask::Apmask => "apmask",
            BusMask::Aqmask => "aqmask",
        }
    }
}

/// The per-mdev assignment attributes (used when the kernel has no `ap_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Adapter,
    Domain,
    #[serde(rename = "control_domain")]
    Control,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Adapter => "adapter",
            Part::Domain => "domain",
            Part::Control => "control_domain",
        }
    }
}

/// One write to sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// A relative edit (`-3,+5-7`) of a bus mask; `clear`/`set` are the bits it changes.
    Mask {
        mask: BusMask,
        edit: String,
        clear: Mask,
        set: Mask,
    },
    /// Set (`vfio_ap`) or clear a queue's `driver_override`.
    Override {
        apqn: Apqn,
        set: bool,
    },
    Create {
        uuid: String,
    },
    /// The whole configuration at once; `from` is what it replaces (for compensation).
    ApConfig {
        uuid: String,
        config: Matrix,
        from: Matrix,
    },
    /// `assign_<part>` (`on`) or `unassign_<part>`.
    Assign {
        uuid: String,
        part: Part,
        id: u8,
        on: bool,
    },
    /// The per-mdev `migratable`; `if_present`: the kernel profile was not known when planning
    /// (no mdev yet), so the write happens only if the new mdev has the attribute (v1).
    Migratable {
        uuid: String,
        value: bool,
        if_present: bool,
    },
    Remove {
        uuid: String,
    },
}

pub const MATRIX_DIR: &str = "devices/vfio_ap/matrix";

pub fn mdev_dir(uuid: &str) -> String {
    format!("{MATRIX_DIR}/{uuid}")
}

pub fn create_path() -> String {
    format!("{MATRIX_DIR}/mdev_supported_types/{MDEV_TYPE}/create")
}

impl Op {
    /// The file written, relative to the sysfs root.
    pub fn path(&self) -> String {
        match self {
            Op::Mask { mask, .. } => format!("bus/ap/{}", mask.file()),
            Op::Override { apqn, .. } => format!("devices/ap/{}/{apqn}/driver_override", ids::card_name(apqn.apid)),
            Op::Create { .. } => create_path(),
            Op::ApConfig { uuid, .. } => format!("{}/ap_config", mdev_dir(uuid)),
            Op::Assign { uuid, part, on, .. } => {
                format!("{}/{}assign_{}", mdev_dir(uuid), if *on { "" } else { "un" }, part.name())
            }
            Op::Migratable { uuid, .. } => format!("{}/migratable", mdev_dir(uuid)),
            Op::Remove { uuid } => format!("{}/remove", mdev_dir(uuid)),
        }
    }

    /// What is written.
    pub fn data(&self) -> String {
        match self {
            Op::Mask { edit, .. } => edit.clone(),
            Op::Override { set, .. } => if *set { "vfio_ap\n" } else { "\n" }.to_string(),
            Op::Create { uuid } => uuid.clone(),
            Op::ApConfig { config, .. } => config.ap_config_string(),
            Op::Assign { id, .. } => format!("{id:#04x}"),
            Op::Migratable { value, .. } => if *value { "1" } else { "0" }.to_string(),
            Op::Remove { .. } => "1".to_string(),
        }
    }

    /// The mdev this write is about, if any.
    pub fn mdev(&self) -> Option<&str> {
        match self {
            Op::Mask { .. } | Op::Override { .. } => None,
            Op::Create { uuid }
            | Op::ApConfig { uuid, .. }
            | Op::Assign { uuid, .. }
            | Op::Migratable { uuid, .. }
            | Op::Remove { uuid } => Some(uuid),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    MaskEdit,
    Create,
    Release,
    Configure,
    Migratable,
    Remove,
    Restore,
}

/// One planned write and the mdevs that need it (a failed mask edit fails all of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub phase: Phase,
    #[serde(flatten)]
    pub op: Op,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<String>,
}

/// What happens to one mdev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Desired and already exactly as desired.
    Unchanged,
    Create,
    Reconfigure,
    /// Ours, no longer desired, not in use.
    Remove,
    /// Desired (or ours to remove) but refused: see the reason. Nothing is written for it.
    Refused,
    /// Not ours: reported, never touched.
    Foreign,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdevPlan {
    pub uuid: String,
    pub desired: bool,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Warnings that do not stop the mdev (absent APQNs, collateral queues, no migration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Reason>,
    /// The configuration planned (desired mdevs) or found (others).
    pub matrix: Matrix,
}

/// Entries of the ownership record that no longer describe anything (the write they announced
/// never happened, or someone else undid it): dropped at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forget {
    pub mdevs: Vec<String>,
    pub apmask: Mask,
    pub aqmask: Mask,
    pub overrides: Vec<Apqn>,
}

impl Forget {
    pub fn is_empty(&self) -> bool {
        self.mdevs.is_empty() && self.apmask.is_empty() && self.aqmask.is_empty() && self.overrides.is_empty()
    }
    pub fn apply(&self, own: &mut Ownership) {
        for u in &self.mdevs {
            own.mdevs.remove(u);
        }
        own.apmask_cleared = own.apmask_cleared.and_not(&self.apmask);
        own.aqmask_cleared = own.aqmask_cleared.and_not(&self.aqmask);
        for q in &self.overrides {
            own.overrides.remove(q);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub mode: MaskMode,
    pub profile: KernelProfile,
    pub steps: Vec<Step>,
    /// Every desired mdev, then every other mdev of the host, each once.
    pub mdevs: Vec<MdevPlan>,
    /// Node-level warnings (`KernelCannotMigrate`).
    pub node: Vec<Reason>,
    pub forget: Forget,
}

impl Plan {
    pub fn mdev(&self, uuid: &str) -> Option<&MdevPlan> {
        self.mdevs.iter().find(|m| m.uuid == uuid)
    }
    /// Whether some desired mdev (or removal) is refused.
    pub fn has_refusals(&self) -> bool {
        self.mdevs.iter().any(|m| m.action == Action::Refused)
    }
}

/// Plans the writes that make the host hold `desired`.
pub fn plan(desired: &Desired, inv: &Inventory, own: &Ownership, mode: MaskMode) -> Plan {
    let d = decide::decide(desired, inv, own, mode);
    ops::build(desired, inv, own, mode, d)
}

/// Whether the masks or overrides give `q` to the host's drivers (the kernel's `host_owned`).
pub(crate) fn host_owned(inv: &Inventory, ap: &Mask, aq: &Mask, q: Apqn) -> bool {
    match inv.queues.get(&q).and_then(|x| x.driver_override.as_deref()) {
        Some(o) if !o.is_empty() => o != crate::ap::inventory::VFIO_AP_DRIVER,
        _ => ap.get(q.apid) && aq.get(q.apqi),
    }
}

/// Whether any queue carries a `driver_override` (the host uses the override profile).
pub(crate) fn any_override(inv: &Inventory) -> bool {
    inv.queues.values().any(|q| q.driver_override.as_deref().is_some_and(|o| !o.is_empty()))
}

/// The matrix an mdev of the inventory has, empty when it does not exist.
pub(crate) fn current(inv: &Inventory, uuid: &str) -> Matrix {
    inv.mdevs.get(uuid).map(|m| m.matrix).unwrap_or_default()
}
