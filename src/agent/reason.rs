//! Why the agent did not (or could not) make an mdev as desired: the stable agent reason codes
//! of architecture.md ("Reason codes"), with the kernel's errno where one was returned or is
//! certain, the APQNs concerned and a message.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ap::{Apqn, kmsg};

/// Stable codes (status, events, CLI JSON, the `reason` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Code {
    /// An APQN of the mdev is in the matrix of an mdev the agent did not create.
    ForeignMdevHoldsQueue,
    /// An APQN is owned by the host's drivers and masks are observed, not managed (or the
    /// override that would hand it over belongs to someone else).
    QueueOwnedByHost,
    /// An id is above `ap_max_adapter_id` / `ap_max_domain_id`.
    IdAboveMaximum,
    /// A guest uses the mdev: its removal waits.
    MdevInUse,
    /// Every mask edit that would hand the queues over also moves an online host queue.
    CollateralHostQueues,
    /// `manage` on a host with active overrides, or `override` on a host whose masks are not all ones.
    HostProfileMismatch,
    /// The UUID is taken: by an mdev the agent did not create, or by an earlier desired entry.
    UuidInUse,
    /// Two of the agent's own mdevs want one APQN: the one that holds it (or comes first) wins.
    /// Not in architecture.md's list: the controller resolves such conflicts before they reach a
    /// node, this is the agent's defence when it does not.
    ApqnConflict,
    /// Warning: `migratable` is wanted but the kernel cannot migrate vfio-ap guests.
    KernelCannotMigrate,
    /// Warning: APQNs or control domains absent from the host configuration (allowed, reported).
    NotInHostConfig,
    /// Warning: host queues (not online) outside the mdev that the mask edit moved to vfio_ap.
    CollateralQueuesMoved,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ForeignMdevHoldsQueue => "ForeignMdevHoldsQueue",
            Code::QueueOwnedByHost => "QueueOwnedByHost",
            Code::IdAboveMaximum => "IdAboveMaximum",
            Code::MdevInUse => "MdevInUse",
            Code::CollateralHostQueues => "CollateralHostQueues",
            Code::HostProfileMismatch => "HostProfileMismatch",
            Code::UuidInUse => "UuidInUse",
            Code::ApqnConflict => "ApqnConflict",
            Code::KernelCannotMigrate => "KernelCannotMigrate",
            Code::NotInHostConfig => "NotInHostConfig",
            Code::CollateralQueuesMoved => "CollateralQueuesMoved",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: Code,
    /// The kernel's errno name (`EADDRINUSE`), when the kernel returned it or certainly would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apqns: Vec<Apqn>,
    pub message: String,
}

impl Reason {
    pub fn new(code: Code, message: impl Into<String>) -> Reason {
        Reason { code, errno: None, apqns: Vec::new(), message: message.into() }
    }
    pub fn errno(mut self, errno: i32) -> Reason {
        self.errno = Some(kmsg::errno_name(errno).to_string());
        self
    }
    pub fn apqns(mut self, apqns: impl IntoIterator<Item = Apqn>) -> Reason {
        self.apqns = apqns.into_iter().collect();
        self
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = &self.errno {
            write!(f, " ({e})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// `00.0005, 01.0005` (at most a few, then `…`).
pub fn list_apqns(apqns: &[Apqn]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = apqns.iter().take(SHOWN).map(|q| q.to_string()).collect();
    if apqns.len() > SHOWN {
        s.push(format!("… ({} in all)", apqns.len()));
    }
    s.join(", ")
}
