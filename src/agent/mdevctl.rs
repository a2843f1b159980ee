//! mdevctl definitions of the agent's mdevs (kernel-ap.md §7): `DIR/matrix/<uuid>`, so that they
//! come back after a reboot before the agent starts, and administrators see them with `mdevctl`.
//! Only UUIDs of the ownership record are ever written or removed here.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::ap::Matrix;
use crate::ap::inventory::MDEV_TYPE;

/// The parent device directory name under the mdevctl config root.
pub const PARENT: &str = "matrix";

#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct MdevctlError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Serialize)]
struct Definition {
    mdev_type: &'static str,
    start: &'static str,
    attrs: Vec<Map<String, Value>>,
}

/// The JSON text of a definition: assign every adapter, domain and control domain (decimal
/// strings, each attr object with one key), then `migratable` where the kernel has it.
pub fn definition(m: &Matrix, migratable: Option<bool>) -> String {
    let attr = |k: &str, v: String| {
        let mut o = Map::new();
        o.insert(k.to_string(), Value::String(v));
        o
    };
    let mut attrs: Vec<Map<String, Value>> = Vec::new();
    attrs.extend(m.adapters.iter().map(|a| attr("assign_adapter", a.to_string())));
    attrs.extend(m.domains.iter().map(|d| attr("assign_domain", d.to_string())));
    attrs.extend(m.control.iter().map(|d| attr("assign_control_domain", d.to_string())));
    if let Some(v) = migratable {
        attrs.push(attr("migratable", if v { "1" } else { "0" }.to_string()));
    }
    let def = Definition { mdev_type: MDEV_TYPE, start: "auto", attrs };
    let mut s = serde_json::to_string_pretty(&def).unwrap_or_default();
    s.push('\n');
    s
}

pub fn path(dir: &Path, uuid: &str) -> PathBuf {
    dir.join(PARENT).join(uuid)
}

/// Writes the definition if it differs (temp file + rename). Returns whether it changed.
pub fn write(dir: &Path, uuid: &str, text: &str) -> Result<bool, MdevctlError> {
    let p = path(dir, uuid);
    if std::fs::read_to_string(&p).is_ok_and(|t| t == text) {
        return Ok(false);
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MdevctlError { path, source }
    };
    let parent = dir.join(PARENT);
    std::fs::create_dir_all(&parent).map_err(err(&parent))?;
    let tmp = parent.join(format!(".{uuid}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
    f.write_all(text.as_bytes()).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(err(&p))?;
    Ok(true)
}

/// Removes the definition if present. Returns whether it existed.
pub fn remove(dir: &Path, uuid: &str) -> Result<bool, MdevctlError> {
    let p = path(dir, uuid);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(MdevctlError { path: p, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ap::Mask;

    #[test]
    fn definitions_follow_the_mdevctl_format() {
        let m = Matrix::new(Mask::from_ids([5]), Mask::from_ids([0xab]), Mask::from_ids([4]));
        let v: Value = serde_json::from_str(&definition(&m, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"mdev_type": "vfio_ap-passthrough", "start": "auto",
                "attrs": [{"assign_adapter": "5"}, {"assign_domain": "171"}, {"assign_control_domain": "4"}]})
        );
        let v: Value = serde_json::from_str(&definition(&m, Some(true))).unwrap();
        assert_eq!(v["attrs"][3], serde_json::json!({"migratable": "1"}));
    }

    #[test]
    fn writing_twice_changes_nothing_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let u = "4b1d0000-0000-4000-8000-000000000001";
        assert!(write(dir.path(), u, "x\n").unwrap());
        assert!(!write(dir.path(), u, "x\n").unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("matrix").join(u)).unwrap(), "x\n");
        assert!(remove(dir.path(), u).unwrap());
        assert!(!remove(dir.path(), u).unwrap());
    }
}
