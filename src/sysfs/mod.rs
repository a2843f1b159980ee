//! Real host access under a root directory that plays `/sys`: the inventory reader, snapshots,
//! and (with the agent) the operation executor with its errno mapping.
//!
//! The root may be a live `/sys`, a FUSE mount of the simulator or a plain tree (a snapshot or a
//! dump): everything goes through paths below it, nothing assumes which.

pub mod attr;
pub mod counters;
mod error;
pub mod mdev;
pub mod meta;
mod read;
pub mod snapshot;

pub use counters::{Counters, read_counters};
pub use error::Error;
pub use meta::SnapshotMeta;
pub use read::read_inventory;
