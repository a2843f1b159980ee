//! The simulated s390x AP kernel (kernel-ap.md §2–§6, §8): an in-memory model with the kernel's
//! write semantics and errno values, a plain-tree dump, a FUSE mount and a control socket.

pub mod control;
pub mod dump;
pub mod fuse;
pub mod kernel;
mod load;
pub mod machine;
pub mod migrate;
mod store;
pub mod vfs;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use thiserror::Error;

pub use kernel::{Errno, Kernel};
pub use migrate::{Migration, migrate};
pub use store::{Assign, BusMask};
pub use vfs::Node;

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
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("control request failed: {0}")]
    Control(String),
}

/// What a fault does when its write comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum FaultAction {
    /// The write fails with this errno and has no effect.
    Fail(Errno),
    /// The writing process is SIGKILLed before the write takes effect.
    Kill,
}

/// One write that reached the simulated kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    pub n: u64,
    pub path: String,
    pub data: String,
    /// `None` on success.
    pub errno: Option<Errno>,
}

/// A simulated host with its write counter and fault injection: what a mount serves.
#[derive(Debug, Clone)]
pub struct Sim {
    pub kernel: Kernel,
    pub writes: u64,
    pub write_log: Vec<WriteRecord>,
    /// `(write number, action)`.
    pub faults: Vec<(u64, FaultAction)>,
}

pub type SharedSim = Arc<Mutex<Sim>>;

/// Locks a shared simulator, recovering from a poisoned lock (a panicking test thread).
pub fn lock(s: &SharedSim) -> MutexGuard<'_, Sim> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub fn new(kernel: Kernel) -> Sim {
        Sim { kernel, writes: 0, write_log: Vec::new(), faults: Vec::new() }
    }

    pub fn shared(self) -> SharedSim {
        Arc::new(Mutex::new(self))
    }

    /// One write by process `pid` (when known): counted, subject to injected faults.
    pub fn write(&mut self, path: &str, data: &str, pid: Option<u32>) -> Result<(), Errno> {
        self.writes += 1;
        let n = self.writes;
        let fault = self.faults.iter().position(|(at, _)| *at == n).map(|i| self.faults.remove(i).1);
        let result = match fault {
            Some(FaultAction::Fail(e)) => Err(e),
            Some(FaultAction::Kill) => {
                if let Some(pid) = pid.filter(|p| *p > 1) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                Err(libc::EINTR)
            }
            None => self.kernel.write(path, data),
        };
        self.write_log.push(WriteRecord { n, path: path.to_string(), data: data.to_string(), errno: result.err() });
        result
    }

    pub fn read(&self, path: &str) -> Result<String, Errno> {
        self.kernel.read(path)
    }
}
