//! The migration gate: admission webhooks on `virtualmachineinstancemigrations` CREATE
//! (architecture.md, "Components" → webhooks, and "Decisions" → "Webhooks", "Node label").
//!
//! - [`decide`] (pure, most of the tests): may a VMIM start, given the VMI and its passthroughs?
//! - [`mutate`] (pure): the JSON patch that steers the target onto prepared nodes.
//! - [`message`]: the denial texts, short enough for `kubectl` and `virtctl`.
//! - [`handler`]: the axum routes `/validate-vmim` and `/mutate-vmim`, answering from the watch
//!   caches ([`Caches`]: the controller's reflector stores, or [`watch`]'s own).
//! - [`tls`], [`server`]: HTTPS with the certificate of `--webhook-cert-dir`, reloaded per
//!   connection, or the self-managed one; the port is bound only once the caches have synced and
//!   a certificate is there, with SO_REUSEPORT.
//! - [`pki`] (pure) and [`certs`]: self-managed certificates (without `--webhook-cert-dir`): the
//!   leader keeps a CA and a serving certificate in a Secret and the CA bundle in both
//!   configurations, rotating both; every replica serves the Secret's pair through a watch.
//! - [`metrics`]: `cryptopass_admission_requests_total`, `cryptopass_admission_duration_seconds`.
//! - [`scope`]: the configurations' `matchConditions` (only our VMIs' VMIMs are sent to us), kept
//!   by the leader.
//!
//! Every replica serves (the gate only reads), the leader alone writes.

pub mod certs;
pub mod decide;
pub mod error;
pub mod handler;
pub mod message;
pub mod metrics;
pub mod mutate;
pub mod pki;
pub mod scope;
pub mod server;
pub mod tls;
pub mod vmim;
pub mod watch;

use crate::signal::terminated;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use error::{Error, Result};
pub use handler::{Caches, Gate, MUTATE_PATH, VALIDATE_PATH, router};
pub use metrics::AdmissionMetrics;

/// Names of the configurations and webhooks (architecture.md, "Names").
pub const VALIDATING_CONFIGURATION: &str = "cryptopass-vmim-validate";
pub const MUTATING_CONFIGURATION: &str = "cryptopass-vmim-mutate";
pub const VALIDATING_WEBHOOK: &str = "vmim.validate.crypto.s390x.dev";
pub const MUTATING_WEBHOOK: &str = "vmim.mutate.crypto.s390x.dev";

/// `--webhook-addr A --webhook-cert-dir D`.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Holds `tls.crt` and `tls.key`.
    pub cert_dir: PathBuf,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// `--webhook-cert-dir`: mounted, reloaded when it changes.
    Dir(PathBuf),
    /// Without it: the Secret the leader keeps ([`certs`]).
    SelfManaged(certs::SelfManaged),
}

/// What the controller serves the webhooks with.
#[derive(Debug, Clone)]
pub struct Serving {
    pub addr: SocketAddr,
    pub certs: CertSource,
}

/// Loads the serving certificate (an unusable one fails the start), then in the background waits
/// until `synced()` holds, binds `opts.addr` and serves until SIGTERM or SIGINT.
pub fn start(opts: &Options, gate: Gate, synced: impl Fn() -> bool + Send + 'static) -> Result<JoinHandle<()>> {
    let certs = Arc::new(tls::CertDir::load(&opts.cert_dir)?);
    Ok(start_with(opts.addr, certs, gate, synced))
}

/// The serving certificates of `serving`: the mounted directory (an unusable one fails the start),
/// or the self-managed Secret, followed by every replica and kept by the leader, in the background
/// until SIGTERM or SIGINT.
pub fn certificates(
    serving: &Serving,
    client: &kube::Client,
    leader: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<dyn tls::Certificates>> {
    match &serving.certs {
        CertSource::Dir(dir) => Ok(Arc::new(tls::CertDir::load(dir)?)),
        CertSource::SelfManaged(m) => {
            let swappable = Arc::new(tls::Swappable::default());
            tokio::spawn(certs::follow(client.clone(), m.namespace.clone(), swappable.clone(), terminated()));
            tokio::spawn(certs::Keeper::new(client.clone(), m.clone(), leader).run(terminated()));
            Ok(swappable)
        }
    }
}

/// In the background: waits until `synced()` holds and `certs` has a certificate, binds `addr`
/// and serves until SIGTERM or SIGINT.
pub fn start_with(
    addr: SocketAddr,
    certs: Arc<dyn tls::Certificates>,
    gate: Gate,
    synced: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !synced() || certs.current().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = loop {
            match server::bind(addr) {
                Ok(l) => break l,
                Err(e) => {
                    tracing::error!(error = %e, "webhook port not bound; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        tracing::info!(%addr, "caches synced: serving {VALIDATE_PATH} and {MUTATE_PATH}");
        server::serve(listener, certs, router(gate), terminated()).await;
        tracing::info!("webhook server stopped");
    })
}

/// The leader's [`scope::Keeper`] of both configurations' matchConditions, in the background
/// until SIGTERM or SIGINT.
pub fn keep_scope(
    client: kube::Client,
    passthroughs: kube::runtime::reflector::Store<crate::api::CryptoPassthrough>,
    leader: tokio::sync::watch::Receiver<bool>,
    synced: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(scope::Keeper::new(client, passthroughs, leader).run(synced, terminated()))
}

#[cfg(test)]
mod tests;
