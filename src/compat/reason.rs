//! Structured reasons: the stable codes of architecture.md ("Reason codes") and their messages.
//! Kernel findings quote the kernel's own lines (formatted in `ap::kmsg`, shown here without the
//! `vfio_ap_mdev <uuid>: ` prefix); findings the kernel never logs (profiles, streams, missing
//! devices, rejected configurations) are worded here, in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ap::kmsg;
use crate::ap::{Apqn, KernelInfo};

/// Why a migration would fail (or, for warnings, might misbehave). Serialized as the exact name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReasonCode {
    MigrationDisabled,
    MdevMissing,
    ConfigSizeLarger,
    QueueCountDiffers,
    QueueNotAssigned,
    QueueNotAvailable,
    ControlDomainNotAvailable,
    FacilityDiffers,
    ApTypeNotCompatible,
    FunctionClassDowngrade,
    BindStateNotZero,
    SecureExecution,
    TapqFailed,
    ConfigRejected,
    KernelCannotMigrate,
    KernelRulesDiffer,
    MigrationStreamDiffers,
    AgentStale,
    MasterKeyMismatch,
    KernelReleasesDiffer,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 20] = [
        ReasonCode::MigrationDisabled,
        ReasonCode::MdevMissing,
        ReasonCode::ConfigSizeLarger,
        ReasonCode::QueueCountDiffers,
        ReasonCode::QueueNotAssigned,
        ReasonCode::QueueNotAvailable,
        ReasonCode::ControlDomainNotAvailable,
        ReasonCode::FacilityDiffers,
        ReasonCode::ApTypeNotCompatible,
        ReasonCode::FunctionClassDowngrade,
        ReasonCode::BindStateNotZero,
        ReasonCode::SecureExecution,
        ReasonCode::TapqFailed,
        ReasonCode::ConfigRejected,
        ReasonCode::KernelCannotMigrate,
        ReasonCode::KernelRulesDiffer,
        ReasonCode::MigrationStreamDiffers,
        ReasonCode::AgentStale,
        ReasonCode::MasterKeyMismatch,
        ReasonCode::KernelReleasesDiffer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::MigrationDisabled => "MigrationDisabled",
            ReasonCode::MdevMissing => "MdevMissing",
            ReasonCode::ConfigSizeLarger => "ConfigSizeLarger",
            ReasonCode::QueueCountDiffers => "QueueCountDiffers",
            ReasonCode::QueueNotAssigned => "QueueNotAssigned",
            ReasonCode::QueueNotAvailable => "QueueNotAvailable",
            ReasonCode::ControlDomainNotAvailable => "ControlDomainNotAvailable",
            ReasonCode::FacilityDiffers => "FacilityDiffers",
            ReasonCode::ApTypeNotCompatible => "ApTypeNotCompatible",
            ReasonCode::FunctionClassDowngrade => "FunctionClassDowngrade",
            ReasonCode::BindStateNotZero => "BindStateNotZero",
            ReasonCode::SecureExecution => "SecureExecution",
            ReasonCode::TapqFailed => "TapqFailed",
            ReasonCode::ConfigRejected => "ConfigRejected",
            ReasonCode::KernelCannotMigrate => "KernelCannotMigrate",
            ReasonCode::KernelRulesDiffer => "KernelRulesDiffer",
            ReasonCode::MigrationStreamDiffers => "MigrationStreamDiffers",
            ReasonCode::AgentStale => "AgentStale",
            ReasonCode::MasterKeyMismatch => "MasterKeyMismatch",
            ReasonCode::KernelReleasesDiffer => "KernelReleasesDiffer",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: a stable code, the APQN it concerns (if any) and the kernel's wording.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    pub code: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apqn: Option<Apqn>,
    pub message: String,
}

impl Reason {
    pub fn new(code: ReasonCode, apqn: Option<Apqn>, message: impl Into<String>) -> Self {
        Reason { code, apqn, message: message.into() }
    }

    /// A finding the kernel logs: the message is its line(s) without the device prefix.
    pub(crate) fn logged(code: ReasonCode, apqn: Option<Apqn>, lines: &[String]) -> Self {
        let mut message = String::new();
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            message.push_str(kmsg::without_device(l));
        }
        Reason { code, apqn, message }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.apqn {
            Some(q) => write!(f, "{} {q}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// Which host a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Target,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

fn host(side: Side, k: &KernelInfo) -> String {
    match &k.hostname {
        Some(h) => format!("{} host {h}", side.as_str()),
        None => format!("{} host", side.as_str()),
    }
}

// Wording of the findings the kernel does not log.

pub(crate) fn kernel_cannot_migrate(side: Side, k: &KernelInfo) -> Reason {
    let why = if k.se_guest == Some(true) {
        "it is itself a Secure Execution guest, and vfio-ap migration is not offered there".to_string()
    } else if k.matrix_features.is_none() {
        "its kernel lacks vfio-ap migration (no /sys/devices/vfio_ap/matrix/features, so no `migratable`)".to_string()
    } else {
        "its kernel lacks vfio-ap migration (`migratable` missing from /sys/devices/vfio_ap/matrix/features)"
            .to_string()
    };
    Reason::new(
        ReasonCode::KernelCannotMigrate,
        None,
        format!("{} cannot migrate vfio-ap guests: {why}", host(side, k)),
    )
}

pub(crate) fn kernel_rules_differ(source: &str, target: &str) -> Reason {
    Reason::new(
        ReasonCode::KernelRulesDiffer,
        None,
        format!(
            "source kernel implements the {source} vfio-ap migration rules, target kernel the {target} rules: \
             their migration streams differ"
        ),
    )
}

pub(crate) fn stream_differs(source: &str, target: &str) -> Reason {
    Reason::new(
        ReasonCode::MigrationStreamDiffers,
        None,
        format!("vfio-ap migration stream differs: source {source}, target {target}"),
    )
}

pub(crate) fn releases_differ(source: &str, target: &str, unknown: &str) -> Reason {
    Reason::new(
        ReasonCode::KernelReleasesDiffer,
        None,
        format!(
            "kernel releases differ (source {source}, target {target}) and the vfio-ap migration stream of \
             the {unknown} is unknown: the streams may be incompatible"
        ),
    )
}

pub(crate) fn mdev_missing(side: Side, uuid: &str) -> Reason {
    let message = match side {
        Side::Source => format!("mediated device '{uuid}' not found on the source host"),
        Side::Target => {
            format!("device not found: mediated device '{uuid}' not found on the target host")
        }
    };
    Reason::new(ReasonCode::MdevMissing, None, message)
}

pub(crate) fn migration_disabled(value: Option<bool>) -> Reason {
    let state = match value {
        Some(_) => "its `migratable` is 0",
        None => "it has no `migratable` attribute",
    };
    Reason::new(
        ReasonCode::MigrationDisabled,
        None,
        format!("Migration is disabled for VFIO device: the source mdev is not migratable ({state})"),
    )
}

/// What `ap_config` on the target would refuse, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    AdapterAboveMax(u8, u8),
    DomainAboveMax(u8, u8),
    ControlDomainAboveMax(u8, u8),
    HostOwned(Apqn),
}

pub(crate) fn config_rejected(r: Rejected) -> Reason {
    let enodev = kmsg::errno_name(libc::ENODEV);
    let (apqn, text) = match r {
        Rejected::AdapterAboveMax(id, max) => {
            (None, format!("adapter {id} (0x{id:02x}) above the target's ap_max_adapter_id {max}"))
        }
        Rejected::DomainAboveMax(id, max) => {
            (None, format!("domain {id} (0x{id:04x}) above the target's ap_max_domain_id {max}"))
        }
        Rejected::ControlDomainAboveMax(id, max) => {
            (None, format!("control domain {id} (0x{id:04x}) above the target's ap_max_domain_id {max}"))
        }
        Rejected::HostOwned(q) => (Some(q), format!("queue {q} is reserved for the target host's drivers")),
    };
    let errno = if apqn.is_some() { kmsg::errno_name(libc::EADDRNOTAVAIL) } else { enodev };
    Reason::new(
        ReasonCode::ConfigRejected,
        apqn,
        format!("source matrix rejected by the target's ap_config ({errno}): {text}"),
    )
}

/// The sharing conflict, quoting the kernel's line.
pub(crate) fn config_in_use(q: Apqn, line: &str) -> Reason {
    Reason::new(
        ReasonCode::ConfigRejected,
        Some(q),
        format!(
            "source matrix rejected by the target's ap_config ({}): {}",
            kmsg::errno_name(libc::EADDRINUSE),
            kmsg::without_device(line)
        ),
    )
}
