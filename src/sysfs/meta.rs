//! Tree metadata (`snapshot.json` at the root of a snapshot or dump) and what the running kernel
//! says of itself (`uname`) when the root is the live `/sys`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::attr;
use super::error::Error;

pub const META_FILE: &str = "snapshot.json";

/// `snapshot.json` (architecture.md, "Tree metadata"). Unknown keys are ignored when reading.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// `v1` | `v4` | `v5` when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfio_ap_stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cryptopass_version: Option<String>,
    /// Relative path → error name (`EIO`) of files that could not be read and were left out.
    #[serde(default)]
    pub unreadable: BTreeMap<String, String>,
}

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

    /// Pretty JSON with a trailing newline, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
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

/// The current time as RFC 3339 UTC with second precision, e.g. `2026-11-02T09:15:00Z`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, proleptic Gregorian calendar).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
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
