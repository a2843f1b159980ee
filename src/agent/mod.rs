//! The node agent: desired mdevs → plan (pure) → execute (real file I/O under a sysfs root) →
//! report. Safety rules (architecture.md, "agent"): never touch an mdev it did not create, never
//! remove an mdev a guest uses, never give a queue back to the host while an mdev holds it,
//! prefer the atomic `ap_config` write, and converge after a crash between any two writes.
//!
//! The ownership record is what makes the last rule hold: everything that creates state (an
//! mdev, a cleared mask bit, a `driver_override`) is recorded *before* the write, everything that
//! removes it is forgotten *after*; the next run plans from the record and what sysfs shows.

pub mod apply;
pub mod desired;
pub mod exec;
pub mod host;
pub mod mdevctl;
pub mod ownership;
pub mod plan;
pub mod reason;
pub mod report;

pub use apply::{ApplyError, ApplyOptions, apply};
pub use desired::{Desired, DesiredMdev};
pub use exec::{ExecError, Outcome, execute};
pub use host::{Host, RootDir};
pub use ownership::{Ownership, OwnershipStore};
pub use plan::{MaskMode, Op, Plan, plan};
pub use reason::{Code, Reason};

// The long-running agent (issue 5): watch the own CryptoNode, apply, report, renew the Lease.
pub mod lease;
pub mod metrics;
pub mod node;
pub mod pass;
pub mod run;
// hack/bench-scale only: many simulated nodes and their agents in one process.
pub mod fleet;
pub mod status;
