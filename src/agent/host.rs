//! The executor's only door to the host: read and write attributes below a root directory that
//! plays `/sys` (a live `/sys`, a FUSE-mounted simulator). A trait so that tests can inject
//! failures without a kernel.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ap::Inventory;
use crate::sysfs;

/// An errno (`libc::E*`) as the kernel returned it.
pub type Errno = i32;

pub trait Host {
    /// One `write(2)` of `data` to the attribute `rel` (relative to the root).
    fn write(&self, rel: &str, data: &str) -> Result<(), Errno>;
    fn read(&self, rel: &str) -> Result<String, Errno>;
    fn exists(&self, rel: &str) -> bool;
    fn inventory(&self) -> Result<Inventory, sysfs::Error>;
}

/// Real file I/O below a root directory.
#[derive(Debug, Clone)]
pub struct RootDir {
    root: PathBuf,
}

impl RootDir {
    pub fn new(root: &Path) -> RootDir {
        RootDir { root: root.to_path_buf() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn errno(e: std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Host for RootDir {
    fn write(&self, rel: &str, data: &str) -> Result<(), Errno> {
        // sysfs takes one write(2) per value: no O_TRUNC, no buffering, no retry of a short write.
        let mut f = std::fs::OpenOptions::new().write(true).open(self.root.join(rel)).map_err(errno)?;
        let n = f.write(data.as_bytes()).map_err(errno)?;
        if n == data.len() { Ok(()) } else { Err(libc::EIO) }
    }

    fn read(&self, rel: &str) -> Result<String, Errno> {
        std::fs::read_to_string(self.root.join(rel)).map_err(errno)
    }

    fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.root.join(rel)).is_ok()
    }

    fn inventory(&self) -> Result<Inventory, sysfs::Error> {
        sysfs::read_inventory(&self.root)
    }
}
