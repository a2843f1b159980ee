//! The ownership record: what the agent created or changed on this host, so that it never
//! touches anything else and can converge after a crash. Written atomically (temp file, fsync,
//! rename) under `--state-dir`.
//!
//! Crash rule: an entry is added *before* the write that creates the state and removed *after*
//! the write that undoes it. A stale entry (recorded, but the write never happened) is harmless:
//! the planner sees the real state and forgets it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ap::{Apqn, Mask};

pub const FILE_NAME: &str = "ownership.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    pub version: u32,
    /// UUIDs of the mdevs the agent created.
    pub mdevs: BTreeSet<String>,
    /// `apmask` bits the agent cleared (1 → 0), to give back once no mdev holds their queues.
    pub apmask_cleared: Mask,
    /// `aqmask` bits the agent cleared.
    pub aqmask_cleared: Mask,
    /// Queues whose `driver_override` the agent set to `vfio_ap`.
    pub overrides: BTreeSet<Apqn>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            version: VERSION,
            mdevs: BTreeSet::new(),
            apmask_cleared: Mask::empty(),
            aqmask_cleared: Mask::empty(),
            overrides: BTreeSet::new(),
        }
    }
}

impl Ownership {
    pub fn owns_mdev(&self, uuid: &str) -> bool {
        self.mdevs.contains(uuid)
    }
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ownership record: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Where the record lives; `None` directory = in memory only (dry runs, unit tests).
#[derive(Debug, Clone)]
pub struct OwnershipStore {
    dir: Option<PathBuf>,
}

impl OwnershipStore {
    pub fn new(dir: &Path) -> OwnershipStore {
        OwnershipStore { dir: Some(dir.to_path_buf()) }
    }
    pub fn in_memory() -> OwnershipStore {
        OwnershipStore { dir: None }
    }
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(FILE_NAME))
    }

    /// The record, or an empty one when there is none yet.
    pub fn load(&self) -> Result<Ownership, StateError> {
        let Some(path) = self.path() else { return Ok(Ownership::default()) };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ownership::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| StateError::Parse { path, message: e.to_string() })
    }

    /// Replaces the record atomically: a reader (or the next run after a crash) sees the old
    /// record or the new one, never a torn one.
    pub fn save(&self, own: &Ownership) -> Result<(), StateError> {
        let (Some(dir), Some(path)) = (&self.dir, self.path()) else { return Ok(()) };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let mut text = serde_json::to_string_pretty(own)
            .map_err(|e| StateError::Parse { path: path.clone(), message: e.to_string() })?;
        text.push('\n');
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = OwnershipStore::new(&dir.path().join("state"));
        assert_eq!(store.load().unwrap(), Ownership::default());
        let mut own = Ownership::default();
        own.mdevs.insert("4b1d0000-0000-4000-8000-000000000001".into());
        own.apmask_cleared.set(3, true);
        own.overrides.insert(Apqn::new(1, 5));
        store.save(&own).unwrap();
        assert_eq!(store.load().unwrap(), own);
        let text = std::fs::read_to_string(store.path().unwrap()).unwrap();
        assert!(text.contains("\"apmaskCleared\": [\n    3\n  ]"), "{text}");
        assert!(!dir.path().join("state").join(".ownership.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_an_empty_record() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        assert!(OwnershipStore::new(dir.path()).load().is_err());
    }
}
