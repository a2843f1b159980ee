//! The simulated s390x AP kernel (kernel-ap.md §2–§6, §8): an in-memory model with the kernel's
//! write semantics and errno values, a plain-tree dump, a FUSE mount and a control socket.

pub mod machine;

use thiserror::Error;

/// Kernel profiles of the simulator (kernel-ap.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Profile {
    /// 6.18: masks, `ap_config`, no migration.
    #[serde(rename = "base")]
    #[value(name = "base")]
    Base,
    /// The seed (v1): per-mdev `migratable`, v1 rules.
    #[serde(rename = "mig-v1")]
    #[value(name = "mig-v1")]
    MigV1,
    /// v4+: `migratable` in features only, latest rules.
    #[serde(rename = "mig-latest")]
    #[value(name = "mig-latest")]
    MigLatest,
    /// mig-latest plus the 6.19 per-queue `driver_override`.
    #[serde(rename = "override")]
    #[value(name = "override")]
    Override,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Machine { path: String, message: String },
}
