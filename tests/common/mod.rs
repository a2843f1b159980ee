//! Shared test support: a simulated host mounted over FUSE in this process.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use cryptopass::sim::{self, Kernel, SharedSim, Sim};

/// A FUSE-mounted simulator; unmounted on drop.
pub struct Mounted {
    pub sim: SharedSim,
    pub dir: tempfile::TempDir,
    session: Option<fuser::BackgroundSession>,
}

impl Mounted {
    pub fn new(k: Kernel) -> Mounted {
        assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse (and root)");
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Sim::new(k).shared();
        let session = sim::fuse::mount(sim.clone(), dir.path()).expect("FUSE mount (needs root and /dev/fuse)");
        let m = Mounted { sim, dir, session: Some(session) };
        let probe = m.path("bus/ap/apmask");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !probe.exists() {
            assert!(std::time::Instant::now() < deadline, "mount did not come up");
            std::thread::yield_now();
        }
        m
    }
    pub fn yaml(yaml: &str) -> Mounted {
        Mounted::new(Kernel::from_yaml(yaml, None, "test").expect("machine"))
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// `echo -n data > rel` with open(O_WRONLY|O_TRUNC); the errno of a failed write.
    pub fn write(&self, rel: &str, data: &str) -> Result<(), i32> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path(rel))
            .map_err(|e| e.raw_os_error().unwrap_or(-1))?;
        f.write_all(data.as_bytes()).map_err(|e| e.raw_os_error().unwrap_or(-1))
    }
    pub fn read(&self, rel: &str) -> Result<String, i32> {
        std::fs::read_to_string(self.path(rel)).map_err(|e| e.raw_os_error().unwrap_or(-1))
    }
    pub fn log(&self) -> Vec<String> {
        sim::lock(&self.sim).kernel.log.clone()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

pub const U1: &str = "4b1d0000-0000-4000-8000-000000000001";
pub const U2: &str = "4b1d0000-0000-4000-8000-000000000002";

/// Two CEX8C cards (0, 1) and a CEX7 (2), domains 0-15 and 0x20, on a profile.
pub fn small_machine(profile: &str) -> String {
    format!(
        r#"
hostname: t
kernel: {{ profile: {profile}, release: 6.19.0-test }}
maxAdapterId: 63
maxDomainId: 84
usageDomains: ["0-15", 0x20]
cards:
  - {{ id: 0, type: CEX8, mode: CCA }}
  - {{ id: 1, type: CEX8, mode: CCA }}
  - {{ id: 2, type: CEX7, mode: EP11 }}
"#
    )
}

pub fn mdev_dir(uuid: &str) -> String {
    format!("devices/vfio_ap/matrix/{uuid}")
}
pub const CREATE: &str = "devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create";
