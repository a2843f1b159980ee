//! The one error type of host access: every variant names the file it is about.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Reading or writing a file failed (a missing required attribute is `NotFound` here).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The content is not what the kernel prints: `message` says what was expected and what came.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A snapshot cannot be written there (e.g. the output directory is not empty).
    #[error("{path}: {message}")]
    Snapshot { path: PathBuf, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// `expected …, got "…"` for content that does not parse (long content is cut short).
    pub fn parse(path: impl Into<PathBuf>, expected: &str, got: &str) -> Self {
        Error::Parse { path: path.into(), message: format!("expected {expected}, got {:?}", excerpt(got)) }
    }

    pub fn snapshot(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Snapshot { path: path.into(), message: message.into() }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. } | Error::Parse { path, .. } | Error::Snapshot { path, .. } => path,
        }
    }

    /// The OS error number of an I/O failure, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

const EXCERPT_CHARS: usize = 80;

fn excerpt(s: &str) -> String {
    if s.chars().count() <= EXCERPT_CHARS {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(EXCERPT_CHARS).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_file_and_quote_the_content() {
        let e = Error::parse("/sys/bus/ap/apmask", "0x and 64 hex digits", "zz");
        assert_eq!(e.to_string(), r#"/sys/bus/ap/apmask: expected 0x and 64 hex digits, got "zz""#);
        assert_eq!(e.path(), Path::new("/sys/bus/ap/apmask"));
    }

    #[test]
    fn long_garbage_is_cut_short() {
        let e = Error::parse("f", "0 or 1", &"x".repeat(500));
        assert!(e.to_string().len() < 120, "{e}");
    }

    #[test]
    fn io_errors_keep_the_errno() {
        let e = Error::io("f", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.errno(), Some(libc::EIO));
        assert!(e.to_string().starts_with("f: "));
    }
}
