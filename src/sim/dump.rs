//! `sim dump`: the simulated host written as a plain tree with the relative layout of `/sys`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::{Error, Kernel, Node};
use crate::ap::meta::{SnapshotMeta, now_rfc3339};

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// Writes the tree under `out` (created; must be absent or empty) and its `snapshot.json`.
/// Write-only attributes become empty files; attributes whose read fails (TAPQ `EIO`) are left
/// out and listed under `unreadable`.
pub fn dump(k: &Kernel, out: &Path) -> Result<(), Error> {
    if out.exists() && fs::read_dir(out).map_err(|e| io(out, e))?.next().is_some() {
        return Err(Error::Io {
            path: out.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory is not empty"),
        });
    }
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut unreadable = BTreeMap::new();
    walk(k, "", out, &mut unreadable)?;
    let meta = meta_json(k, &unreadable, &now_rfc3339());
    let p = out.join("snapshot.json");
    fs::write(&p, meta).map_err(|e| io(&p, e))
}

fn walk(k: &Kernel, rel: &str, out: &Path, unreadable: &mut BTreeMap<String, String>) -> Result<(), Error> {
    for (name, node) in k.list(rel).unwrap_or_default() {
        let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if child == "snapshot.json" {
            continue;
        }
        let p = out.join(&child);
        match node {
            Node::Dir => {
                fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
                walk(k, &child, out, unreadable)?;
            }
            Node::Link(target) => std::os::unix::fs::symlink(&target, &p).map_err(|e| io(&p, e))?,
            Node::File(_) => match k.read(&child) {
                Ok(v) => fs::write(&p, v).map_err(|e| io(&p, e))?,
                Err(libc::EACCES) => fs::write(&p, "").map_err(|e| io(&p, e))?,
                Err(e) => {
                    unreadable.insert(child, crate::ap::kmsg::errno_name(e).to_string());
                }
            },
        }
    }
    Ok(())
}

/// `snapshot.json` of a dump (architecture.md, "Tree metadata").
pub fn meta_json(k: &Kernel, unreadable: &BTreeMap<String, String>, taken_at: &str) -> String {
    SnapshotMeta {
        kernel_release: k.release.clone(),
        vfio_ap_stream: k.vfio_ap_stream.clone(),
        hostname: k.hostname.clone(),
        taken_at: Some(taken_at.to_string()),
        cryptopass_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        unreadable: unreadable.clone(),
    }
    .to_json()
}
