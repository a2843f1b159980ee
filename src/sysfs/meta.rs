//! Tree metadata (`snapshot.json` at the root of a snapshot or dump) and what the running kernel
//! says of itself (`uname`) when the root is the live `/sys`.

use std::ffi::CStr;
use std::path::Path;

use super::attr;
use super::error::Error;

pub use crate::ap::meta::{META_FILE, SnapshotMeta, now_rfc3339};

impl SnapshotMeta {
    /// Reads `root/snapshot.json`; `None` when there is none.
    pub fn read(root: &Path) -> Result<Option<SnapshotMeta>, Error> {
        let path = root.join(META_FILE);
        match attr::read_optional(&path)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Parse { path, message: format!("expected tree metadata JSON: {e}") }),
        }
    }
}

/// What a host says of itself: from the tree's `snapshot.json`, else from `uname` when `root` is
/// exactly `/sys`, else nothing.
pub fn host_identity(root: &Path) -> Result<SnapshotMeta, Error> {
    if let Some(m) = SnapshotMeta::read(root)? {
        return Ok(m);
    }
    if root == Path::new("/sys") {
        let (release, hostname) = uname();
        return Ok(SnapshotMeta { kernel_release: release, hostname, ..Default::default() });
    }
    Ok(SnapshotMeta::default())
}

/// `uname -r` and `uname -n` of the running kernel.
pub fn uname() -> (Option<String>, Option<String>) {
    // SAFETY: `utsname` is plain old data; `uname` fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (None, None);
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every field within its fixed size; `zeroed` above
        // guarantees a NUL even if it did not.
        let c = unsafe { CStr::from_ptr(f.as_ptr()) };
        Some(c.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
    };
    (field(&u.release), field(&u.nodename))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_at_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn meta_uses_camel_case_and_skips_unknowns() {
        let m = SnapshotMeta { kernel_release: Some("6.19.0".into()), ..Default::default() };
        let j = m.to_json();
        assert!(j.contains("\"kernelRelease\": \"6.19.0\""), "{j}");
        assert!(!j.contains("hostname"), "{j}");
        let back: SnapshotMeta =
            serde_json::from_str(r#"{"kernelRelease":"x","vfioApStream":"v5","extra":1}"#).unwrap();
        assert_eq!(back.vfio_ap_stream.as_deref(), Some("v5"));
        assert!(back.unreadable.is_empty());
    }

    #[test]
    fn uname_reports_a_release() {
        assert!(uname().0.is_some());
    }
}
