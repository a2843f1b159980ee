//! Reading one sysfs attribute and parsing it in the exact format the kernel prints.
//!
//! Sysfs reports a size of 4096 for every attribute, so content is always read to the end and
//! metadata sizes are never trusted. Parsers take the value without its one trailing newline and
//! return an [`Error`] naming the file and what was expected.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::Error;
use crate::ap::{ApFunctions, Mask, QueueStatus};

/// The raw bytes of a file, read to the end. Sysfs values fit a page: read into one without
/// asking the file for its size (`read_to_end` would stat it first, a round trip through FUSE for
/// a number sysfs fakes anyway).
pub fn read_bytes(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A required attribute as text, without one trailing newline.
pub fn read_value(path: &Path) -> Result<String, Error> {
    let bytes = read_bytes(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: format!("expected text, got {} bytes that are not UTF-8", e.as_bytes().len()),
    })?;
    Ok(match text.strip_suffix('\n') {
        Some(t) => t.to_string(),
        None => text,
    })
}

/// An attribute that may be absent (`ENOENT` → `None`); any other failure is an error.
pub fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match read_value(path) {
        Ok(v) => Ok(Some(v)),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether anything (file, directory or link, even a dangling one) exists at `path`.
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// A `driver` / `iommu_group` style link: the last component of its target, `None` when absent.
pub fn read_link_name(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_link(path) {
        Ok(target) => match target.file_name().and_then(|n| n.to_str()) {
            Some(name) => Ok(Some(name.to_string())),
            None => Err(Error::parse(path, "a link whose target ends in a name", &target.to_string_lossy())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(Error::Parse { path: path.to_path_buf(), message: "expected a symbolic link".into() })
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The entries of a directory that are directories themselves (not links), sorted by name.
pub fn subdirs(path: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let p = entry.path();
        // the type readdir reported: no extra stat per entry
        let is_dir = entry.file_type().map_err(|e| Error::io(&p, e))?.is_dir();
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            out.push((name.to_string(), p));
        }
    }
    out.sort();
    Ok(out)
}

pub const MASK_FORMAT: &str = "0x and 64 hex digits";

/// `0x` + 64 hex digits, as the kernel prints `apmask` and the configuration masks.
pub fn parse_mask(path: &Path, v: &str) -> Result<Mask, Error> {
    let ok = v.len() == 66 && v.starts_with("0x") && v[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(Error::parse(path, MASK_FORMAT, v));
    }
    Mask::parse_absolute(v).map_err(|_| Error::parse(path, MASK_FORMAT, v))
}

/// A configuration mask, `None` when the bus says `not supported` (no QCI).
pub fn parse_config_mask(path: &Path, v: &str) -> Result<Option<Mask>, Error> {
    if v == "not supported" {
        return Ok(None);
    }
    parse_mask(path, v).map(Some).map_err(|_| Error::parse(path, "0x and 64 hex digits, or \"not supported\"", v))
}

pub fn parse_bool(path: &Path, v: &str) -> Result<bool, Error> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(Error::parse(path, "0 or 1", v)),
    }
}

/// A decimal number as the kernel prints it (`%d`/`%u`), within the range of `T`.
pub fn parse_decimal<T: std::str::FromStr>(path: &Path, v: &str, expected: &str) -> Result<T, Error> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::parse(path, expected, v));
    }
    v.parse::<T>().map_err(|_| Error::parse(path, expected, v))
}

/// `ap_functions`: `0x%08X`.
pub fn parse_functions(path: &Path, v: &str) -> Result<ApFunctions, Error> {
    let ok = v.len() == 10 && (v.starts_with("0x") || v.starts_with("0X"));
    match ApFunctions::parse(v) {
        Some(f) if ok => Ok(f),
        _ => Err(Error::parse(path, "0x and 8 hex digits", v)),
    }
}

/// A `status` of a queue bound to vfio_ap.
pub fn parse_status(path: &Path, v: &str) -> Result<QueueStatus, Error> {
    QueueStatus::parse(v).ok_or_else(|| Error::parse(path, "assigned, unassigned or in use", v))
}

/// A space-separated feature list (`APSC APXA …`, `guest_matrix hotplug …`).
pub fn parse_features(path: &Path, v: &str) -> Result<Vec<String>, Error> {
    let words: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    let word_ok = |w: &String| w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if words.iter().all(word_ok) { Ok(words) } else { Err(Error::parse(path, "space-separated feature names", v)) }
}

/// Reads a required attribute and parses it.
pub fn read<T>(path: &Path, parse: impl FnOnce(&Path, &str) -> Result<T, Error>) -> Result<T, Error> {
    let v = read_value(path)?;
    parse(path, &v)
}

/// Reads an attribute that may be absent and parses it when present.
pub fn read_opt<T>(path: &Path, parse: impl FnOnce(&Path, &str) -> Result<T, Error>) -> Result<Option<T>, Error> {
    match read_optional(path)? {
        Some(v) => parse(path, &v).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/sys/bus/ap/apmask")
    }

    #[test]
    fn masks_need_exactly_64_hex_digits() {
        let full = format!("0x{}", "f".repeat(64));
        assert!(parse_mask(p(), &full).is_ok_and(|m| m.is_full()));
        assert!(parse_mask(p(), "0x41").is_err());
        let e = parse_mask(p(), "zz").unwrap_err().to_string();
        assert_eq!(e, r#"/sys/bus/ap/apmask: expected 0x and 64 hex digits, got "zz""#);
        assert_eq!(parse_config_mask(p(), "not supported").unwrap(), None);
    }

    #[test]
    fn functions_are_printed_with_eight_digits() {
        assert_eq!(parse_functions(p(), "0x92800000").unwrap(), ApFunctions(0x9280_0000));
        assert!(parse_functions(p(), "0x928").is_err());
        assert!(parse_functions(p(), "92800000xx").is_err());
    }

    #[test]
    fn small_parsers_reject_junk() {
        assert!(parse_bool(p(), "2").is_err());
        assert_eq!(parse_decimal::<u8>(p(), "255", "0..255").unwrap(), 255);
        assert!(parse_decimal::<u8>(p(), "256", "0..255").is_err());
        assert!(parse_decimal::<u8>(p(), "+1", "0..255").is_err());
        assert!(parse_decimal::<u8>(p(), "", "0..255").is_err());
        assert!(parse_status(p(), "busy").is_err());
        assert_eq!(parse_features(p(), "APSC APXA").unwrap(), vec!["APSC", "APXA"]);
        assert!(parse_features(p(), "APSC \u{0}").is_err());
    }
}
