//! Tree metadata: `snapshot.json` at the root of a snapshot or dump (architecture.md, "Tree
//! metadata"). Written by `sim dump` and `snapshot`, read by the inventory reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Pretty JSON with a trailing newline, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The current time as RFC 3339 UTC with second precision, e.g. `2026-11-02T09:15:00Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
