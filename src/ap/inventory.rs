//! What a host's AP sysfs says, as typed data: produced by `sysfs` (from a live host, a FUSE
//! mount or a tree) and by `sim` (directly from its model), consumed by `compat` and the agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::functions::ApFunctions;
use super::ids::{Apid, Apqn};
use super::mask::Mask;
use super::matrix::Matrix;

/// Which migration rules the host kernel implements (architecture.md, "Kernel profile of a node").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum KernelProfile {
    /// Per-mdev `migratable` attribute seen: the seed (v1) rules.
    #[serde(rename = "v1")]
    V1,
    /// `migratable` in the matrix features and an mdev without the attribute: latest rules.
    #[serde(rename = "latest")]
    Latest,
    /// `migratable` in the features but no mdev yet to tell v1 from latest.
    #[serde(rename = "unknown")]
    Unknown,
    /// No `migratable` capability: this kernel cannot migrate vfio-ap guests.
    #[serde(rename = "cannotMigrate")]
    CannotMigrate,
}

impl KernelProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelProfile::V1 => "v1",
            KernelProfile::Latest => "latest",
            KernelProfile::Unknown => "unknown",
            KernelProfile::CannotMigrate => "cannotMigrate",
        }
    }
}

/// What the running kernel is and can do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfo {
    /// `uname -r`, or `kernelRelease` of the tree's `snapshot.json`.
    pub release: Option<String>,
    /// `v1` | `v4` | `v5` when known.
    pub vfio_ap_stream: Option<String>,
    pub hostname: Option<String>,
    /// `/sys/bus/ap/features`.
    pub bus_features: Vec<String>,
    /// `/sys/devices/vfio_ap/matrix/features`; `None` when absent (old kernel or no vfio_ap).
    pub matrix_features: Option<Vec<String>>,
    /// `firmware/uv/prot_virt_guest`: this host is itself a Secure Execution guest.
    pub se_guest: Option<bool>,
    /// Queue devices carry `driver_override` (kernel >= 6.19).
    pub driver_override_capable: bool,
    /// Whether the vfio_ap driver is present (`devices/vfio_ap/matrix` exists).
    pub vfio_ap_loaded: bool,
}

/// The host's AP configuration (QCI), `None` masks when the bus says `not supported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostConfig {
    pub adapters: Option<Mask>,
    pub usage_domains: Option<Mask>,
    pub control_domains: Option<Mask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub id: Apid,
    /// zcrypt name, e.g. `CEX8C`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub hwtype: u8,
    /// The raw TAPQ type: the one the migration check compares.
    pub raw_hwtype: u8,
    /// As the card attribute shows them (bits 16..31 hidden).
    pub functions: ApFunctions,
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    pub depth: Option<u32>,
    pub driver: Option<String>,
}

impl Card {
    pub fn mode(&self) -> &'static str {
        self.functions.mode()
    }
}

/// What the vfio_ap driver says of a queue bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueStatus {
    #[serde(rename = "unassigned")]
    Unassigned,
    #[serde(rename = "assigned")]
    Assigned,
    #[serde(rename = "in use")]
    InUse,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Unassigned => "unassigned",
            QueueStatus::Assigned => "assigned",
            QueueStatus::InUse => "in use",
        }
    }
    pub fn parse(s: &str) -> Option<QueueStatus> {
        match s.trim_end_matches('\n') {
            "unassigned" => Some(QueueStatus::Unassigned),
            "assigned" => Some(QueueStatus::Assigned),
            "in use" => Some(QueueStatus::InUse),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub apqn: Apqn,
    /// Driver name from the `driver` link (`cex4queue`, `vfio_ap`), `None` when unbound.
    pub driver: Option<String>,
    /// Live TAPQ, all 32 bits; `None` when TAPQ failed (reading gave `EIO`).
    pub functions: Option<ApFunctions>,
    /// Only present while bound to the host driver.
    pub online: Option<bool>,
    pub config: bool,
    pub chkstop: bool,
    /// Only present while bound to vfio_ap.
    pub status: Option<QueueStatus>,
    /// `None` when the kernel has no `driver_override`; `Some("")` when unset.
    pub driver_override: Option<String>,
}

impl Queue {
    pub fn bound_to_vfio(&self) -> bool {
        self.driver.as_deref() == Some(VFIO_AP_DRIVER)
    }
    pub fn bound_to_host(&self) -> bool {
        matches!(&self.driver, Some(d) if d != VFIO_AP_DRIVER)
    }
}

pub const VFIO_AP_DRIVER: &str = "vfio_ap";
pub const HOST_QUEUE_DRIVER: &str = "cex4queue";
pub const HOST_CARD_DRIVER: &str = "cex4card";
pub const MDEV_TYPE: &str = "vfio_ap-passthrough";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mdev {
    /// Lowercase UUID, the device name.
    pub uuid: String,
    /// `matrix` + `control_domains`.
    pub matrix: Matrix,
    /// `guest_matrix` (control domains: matrix ∩ the host's control domain mask).
    pub guest_matrix: Matrix,
    /// Per-mdev `migratable` (v1 kernels only).
    pub migratable: Option<bool>,
    /// A queue of it reports `in use`: a guest holds it.
    pub in_use: bool,
    pub iommu_group: Option<u32>,
}

/// A whole host as the agent and `check` see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub kernel: KernelInfo,
    pub max_adapter_id: u8,
    pub max_domain_id: u8,
    pub apmask: Mask,
    pub aqmask: Mask,
    pub config: HostConfig,
    pub cards: BTreeMap<Apid, Card>,
    pub queues: BTreeMap<Apqn, Queue>,
    pub mdevs: BTreeMap<String, Mdev>,
}

impl Inventory {
    /// The kernel profile per architecture.md: v1 when any mdev carries `migratable`, latest when
    /// an mdev lacks it while the features list `migratable`, unknown without any mdev.
    pub fn profile(&self) -> KernelProfile {
        let capable = self.kernel.matrix_features.as_ref().is_some_and(|f| f.iter().any(|x| x == "migratable"));
        if !capable {
            return KernelProfile::CannotMigrate;
        }
        if self.mdevs.values().any(|m| m.migratable.is_some()) {
            KernelProfile::V1
        } else if self.mdevs.is_empty() {
            KernelProfile::Unknown
        } else {
            KernelProfile::Latest
        }
    }

    /// Whether the matrix features list `ap_config` (atomic configuration writes).
    pub fn has_ap_config(&self) -> bool {
        self.kernel.matrix_features.as_ref().is_some_and(|f| f.iter().any(|x| x == "ap_config"))
    }

    /// A queue is host-owned by the masks when both its apmask and aqmask bits are set.
    pub fn host_owned_by_masks(&self, q: Apqn) -> bool {
        self.apmask.get(q.apid) && self.aqmask.get(q.apqi)
    }

    /// The card of a queue.
    pub fn card_of(&self, q: Apqn) -> Option<&Card> {
        self.cards.get(&q.apid)
    }

    /// The mdev whose matrix holds an APQN.
    pub fn mdev_holding(&self, q: Apqn) -> Option<&Mdev> {
        self.mdevs.values().find(|m| m.matrix.contains(q))
    }
}
