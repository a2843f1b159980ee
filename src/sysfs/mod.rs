//! Real host access under a root directory that plays `/sys`: the inventory reader, snapshots,
//! and (with the agent) the operation executor with its errno mapping.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ap::Inventory;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Reads the AP inventory of the host whose sysfs is at `root`.
pub fn read_inventory(root: &Path) -> Result<Inventory, Error> {
    Err(Error::Parse { path: root.to_path_buf(), message: "reader not implemented yet".into() })
}
