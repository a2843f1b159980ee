//! `sim dump`: the simulated host written as a plain tree with the relative layout of `/sys`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::{Error, Kernel, Node};

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
    let mut m = serde_json::Map::new();
    let s = |v: &str| serde_json::Value::String(v.to_string());
    if let Some(r) = &k.release {
        m.insert("kernelRelease".into(), s(r));
    }
    if let Some(r) = &k.vfio_ap_stream {
        m.insert("vfioApStream".into(), s(r));
    }
    if let Some(h) = &k.hostname {
        m.insert("hostname".into(), s(h));
    }
    m.insert("takenAt".into(), s(taken_at));
    m.insert("cryptopassVersion".into(), s(env!("CARGO_PKG_VERSION")));
    m.insert(
        "unreadable".into(),
        serde_json::Value::Object(unreadable.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
    );
    let mut out = serde_json::to_string_pretty(&serde_json::Value::Object(m)).unwrap_or_default();
    out.push('\n');
    out
}

/// Current UTC time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
