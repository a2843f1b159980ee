//! cryptopass: vfio_ap crypto passthrough for KubeVirt VMs on IBM Z, kept live-migratable.
//!
//! Layers (architecture.md): `ap` (pure domain model) ← `compat` (pure verdicts) ← `sim`, `sysfs`
//! (the simulated kernel and real host access) ← `cmd` (what the subcommands do).

pub mod agent;
pub mod ap;
pub mod api;
pub mod cmd;
pub mod compat;
pub mod controller;
pub mod signal;
pub mod sim;
pub mod sysfs;
pub mod webhook;
