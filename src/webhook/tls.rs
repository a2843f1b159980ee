//! The serving certificate from `--webhook-cert-dir` (`tls.crt`, `tls.key`: a mounted Secret as
//! cert-manager writes it), reloaded per connection the way linkerd's policy controller does: each
//! new connection stats the two files (a Secret volume swaps a symlink, so a rotation changes the
//! inode) and a changed pair is parsed once. Connections already open keep their session; a pair
//! that does not load (half written, key and certificate not matching) is reported and the last
//! good one stays in use, so a rotation under load loses no admission.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Error, Result};

pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// What identifies one version of a file.
type Stamp = (u64, u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, m.ctime()))
}

struct Loaded {
    stamps: (Option<Stamp>, Option<Stamp>),
    config: Arc<ServerConfig>,
}

/// The current server configuration of a certificate directory.
pub struct CertDir {
    dir: PathBuf,
    current: Mutex<Loaded>,
    /// The stamps of a pair that failed to load (not retried until the files change again).
    failed: Mutex<Option<(Option<Stamp>, Option<Stamp>)>>,
}

/// A rustls server configuration for `cert` and `key` (PEM), HTTP/1.1 only.
pub fn server_config(cert: &[u8], key: &[u8]) -> Result<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Certificate(format!("{CERT_FILE}: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Certificate(format!("{CERT_FILE}: no certificate")));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| Error::Certificate(format!("{KEY_FILE}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Certificate(format!("{CERT_FILE} and {KEY_FILE}: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl CertDir {
    /// Loads the pair now: a start without a usable certificate fails.
    pub fn load(dir: &Path) -> Result<CertDir> {
        let dir = dir.to_path_buf();
        let stamps = Self::stamps(&dir);
        let config = Arc::new(Self::read(&dir)?);
        Ok(CertDir { dir, current: Mutex::new(Loaded { stamps, config }), failed: Mutex::new(None) })
    }

    fn stamps(dir: &Path) -> (Option<Stamp>, Option<Stamp>) {
        (stamp(&dir.join(CERT_FILE)), stamp(&dir.join(KEY_FILE)))
    }

    fn read(dir: &Path) -> Result<ServerConfig> {
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read(&p).map_err(|source| Error::Io { context: format!("reading {}", p.display()), source })
        };
        server_config(&read(CERT_FILE)?, &read(KEY_FILE)?)
    }

    /// The configuration for a new connection: the files' current pair when it changed and loads,
    /// else the last good one.
    pub fn config(&self) -> Arc<ServerConfig> {
        let stamps = Self::stamps(&self.dir);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.stamps == stamps {
            return cur.config.clone();
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if *failed == Some(stamps) {
            return cur.config.clone();
        }
        match Self::read(&self.dir) {
            Ok(config) => {
                // The files may have changed again while being read: the next connection looks.
                if Self::stamps(&self.dir) == stamps {
                    cur.stamps = stamps;
                    *failed = None;
                }
                cur.config = Arc::new(config);
                tracing::info!(dir = %self.dir.display(), "serving certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate not reloaded; the previous one stays in use");
                *failed = Some(stamps);
            }
        }
        cur.config.clone()
    }
}
