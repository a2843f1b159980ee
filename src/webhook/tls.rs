//! Where a new connection's TLS configuration comes from ([`Certificates`]):
//! - [`CertDir`]: the serving certificate from `--webhook-cert-dir` (`tls.crt`, `tls.key`: a mounted
//!   Secret as cert-manager writes it), reloaded per connection the way linkerd's policy controller does: each
//!   new connection stats the two files (a Secret volume swaps a symlink, so a rotation changes the
//!   inode) and a changed pair is parsed once. Connections already open keep their session; a pair
//!   that does not load (half written, key and certificate not matching) is reported and the last
//!   good one stays in use, so a rotation under load loses no admission.
//! - [`Swappable`]: a pair held in memory (the self-managed Secret, fed by its watch), swapped
//!   atomically for new connections; none before the first pair (the replica is not ready then).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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

/// The TLS configuration for new connections.
pub trait Certificates: Send + Sync {
    /// `None` while there is no certificate yet: the connection is closed.
    fn current(&self) -> Option<Arc<ServerConfig>>;
}

impl Certificates for CertDir {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        Some(self.config())
    }
}

/// A PEM pair and its configuration.
type Pair = (Vec<u8>, Vec<u8>, Arc<ServerConfig>);

/// A certificate and key in memory, replaced as a whole.
#[derive(Default)]
pub struct Swappable {
    current: RwLock<Option<Pair>>,
}

impl Swappable {
    /// Uses `cert` and `key` (PEM) for new connections from now on. Ok(true) when they differ
    /// from the pair in use; a pair that does not load leaves the one in use.
    pub fn set(&self, cert: &[u8], key: &[u8]) -> Result<bool> {
        if let Some((c, k, _)) = self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && c == cert
            && k == key
        {
            return Ok(false);
        }
        let config = Arc::new(server_config(cert, key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some((cert.to_vec(), key.to_vec(), config));
        Ok(true)
    }

    /// The certificate in use (PEM).
    pub fn cert(&self) -> Option<Vec<u8>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(c, _, _)| c.clone())
    }
}

impl Certificates for Swappable {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(_, _, c)| c.clone())
    }
}

/// The current server configuration of a certificate directory.
pub struct CertDir {
    dir: PathBuf,
    current: Mutex<Loaded>,
    /// The stamps of a pair that failed to load (not retried until the files change again).
    failed: Mutex<Option<(Option<Stamp>, Option<Stamp>)>>,
}

/// A rustls server configuration for `cert` and `key` (PEM), offering HTTP/2 and HTTP/1.1.
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
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
