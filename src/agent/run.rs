//! `cryptopass agent`: the long-running node agent. It watches only its own CryptoNode (field
//! selector `metadata.name=<node>`), creates it when missing, applies `spec.mdevs` through the
//! agent-core engine on every spec change and every few seconds (a re-scan: hardware and guests
//! change without telling us), writes the status by server-side apply when it changed, renews its
//! Lease, serves `/metrics` and `/healthz`, and stops cleanly on SIGTERM/SIGINT: a pass in flight
//! finishes (passes are restart-safe anyway), nothing is released.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use thiserror::Error;
use tokio::sync::watch;

use crate::api::node::CryptoNode;

use super::apply::ApplyError;
use super::lease::{Heartbeat, RENEW_SECONDS};
use super::metrics::{self, Metrics};
use super::node::NodeApi;
use super::pass::Engine;
use super::plan::MaskMode;
use super::status;

/// How often the host is read again without a spec change.
pub const RESCAN: Duration = Duration::from_secs(5);
/// Passes of one agent start at least this far apart: spec changes arriving meanwhile (the
/// controller writes one entry per passthrough) are applied together by the next pass, with one
/// status write. Each pass reads the whole AP tree, and each status write is a request on a
/// CryptoNode that the controller's applies go to as well (hack/bench-scale/RESULTS.md).
pub const PASS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub sysfs_root: PathBuf,
    pub state_dir: PathBuf,
    pub mode: MaskMode,
    pub mdevctl_dir: Option<PathBuf>,
    /// Where the Lease lives (the release namespace).
    pub namespace: String,
    /// `None`: in-cluster configuration (or `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    /// `None`: `/healthz` is served on the metrics address only.
    pub health_addr: Option<SocketAddr>,
    pub rescan: Duration,
    /// The least time between the starts of two passes ([`PASS_INTERVAL`]).
    pub pass_interval: Duration,
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("reading the kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: kube::config::KubeconfigError },
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("watching CryptoNode: {0}")]
    Watch(#[from] watcher::Error),
    #[error(transparent)]
    Host(#[from] ApplyError),
    #[error("serving on {addr}: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the pass panicked: {0}")]
    Panicked(String),
}

impl AgentError {
    /// Stable label for `cryptopass_agent_errors_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AgentError::Kubeconfig { .. } | AgentError::Config(_) => "config",
            AgentError::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            AgentError::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            AgentError::Kube(_) => "kube",
            AgentError::Watch(_) => "watch",
            AgentError::Host(ApplyError::Inventory(_)) => "inventory",
            AgentError::Host(ApplyError::State(_)) => "state",
            AgentError::Serve { .. } => "serve",
            AgentError::Runtime(_) => "runtime",
            AgentError::Panicked(_) => "panic",
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT (its own tokio runtime: the rest of the binary is blocking).
pub fn run_blocking(cfg: AgentConfig) -> Result<(), AgentError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    rt.block_on(run(cfg))
}

pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, AgentError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|source| AgentError::Kubeconfig { path: path.display().to_string(), source })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| AgentError::Config(e.to_string()))?
        }
        None => kube::Config::infer().await.map_err(|e| AgentError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(AgentError::Kube)
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    stopped(&mut rx).await;
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.is_ok();
}

pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::signal::terminated().await;
        tracing::info!("signalled: stopping");
        let _ = stop_tx.send(true);
    });
    let metrics = Metrics::new();
    let stale = cfg.rescan * 12;
    let mut servers = Vec::new();
    for addr in [cfg.metrics_addr, cfg.health_addr.filter(|h| Some(*h) != cfg.metrics_addr)].into_iter().flatten() {
        let h = metrics::serve(addr, metrics::router(metrics.clone(), stale), wait_stop(stop_rx.clone()))
            .await
            .map_err(|source| AgentError::Serve { addr, source })?;
        servers.push(h);
    }
    let client = client(cfg.kubeconfig.as_ref()).await?;
    let node = NodeApi::new(client.clone(), &cfg.node_name);
    let lease = tokio::spawn(heartbeat(
        Heartbeat::new(client, &cfg.namespace, &cfg.node_name),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let engine = Arc::new(Engine::new(
        cfg.sysfs_root.clone(),
        cfg.state_dir.clone(),
        cfg.mode,
        cfg.mdevctl_dir.clone(),
        metrics.clone(),
    ));
    let result = Loop {
        name: cfg.node_name.clone(),
        node,
        engine,
        metrics,
        latest: None,
        applied: None,
        rescan: cfg.rescan,
        pass_interval: cfg.pass_interval,
        last_pass: None,
    }
    .run(stop_rx)
    .await;
    let _ = lease.await;
    for s in servers {
        let _ = s.await;
    }
    result
}

async fn heartbeat(mut hb: Heartbeat, metrics: Metrics, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(RENEW_SECONDS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tick.tick() => {
                if let Err(e) = hb.renew().await {
                    let e = AgentError::Kube(e);
                    metrics.error(e.metric_label());
                    tracing::warn!("renewing the Lease: {e}");
                }
            }
        }
    }
}

struct Loop {
    name: String,
    node: NodeApi,
    engine: Arc<Engine>,
    metrics: Metrics,
    /// The CryptoNode as last seen (watch or our own write).
    latest: Option<CryptoNode>,
    /// The generation the last pass applied.
    applied: Option<i64>,
    rescan: Duration,
    pass_interval: Duration,
    /// When the last pass started.
    last_pass: Option<tokio::time::Instant>,
}

impl Loop {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), AgentError> {
        let selector = format!("metadata.name={}", self.name);
        // A consistent list (not "any" from the watch cache): a stale spec would undo newer work.
        let config = watcher::Config::default().fields(&selector).list_semantic(watcher::ListSemantic::MostRecent);
        let stream = watcher::watcher(self.node.api().clone(), config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(self.rescan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the current (re)list of the watch returned our CryptoNode.
        let mut listed = false;
        // A spec change waiting for the pass interval to pass.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let wait = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => return Ok(()),
                ev = stream.next() => match ev {
                    Some(Ok(Event::Apply(n) | Event::InitApply(n))) => {
                        listed = true;
                        if self.is_older(&n) {
                            tracing::debug!("ignoring an older version of CryptoNode {}", self.name);
                            continue;
                        }
                        let changed = n.metadata.generation != self.applied;
                        self.latest = Some(n);
                        if changed && due.is_none() {
                            let at = self.last_pass.map(|t| t + self.pass_interval);
                            match at.filter(|at| *at > tokio::time::Instant::now()) {
                                Some(at) => due = Some(at),
                                None => {
                                    self.step().await;
                                    tick.reset();
                                }
                            }
                        }
                    }
                    Some(Ok(Event::Delete(_))) => {
                        tracing::warn!("CryptoNode {} was deleted: creating it again", self.name);
                        self.gone().await;
                    }
                    Some(Ok(Event::Init)) => listed = false,
                    // Deleted before the watch (re)started: no Delete event will tell us.
                    Some(Ok(Event::InitDone)) if !listed && self.latest.is_some() => {
                        tracing::warn!("CryptoNode {} is gone: creating it again", self.name);
                        self.gone().await;
                    }
                    Some(Ok(Event::InitDone)) => {}
                    Some(Err(e)) => self.failed(AgentError::Watch(e)),
                    None => return Ok(()),
                },
                _ = wait => {
                    due = None;
                    if self.latest.as_ref().is_none_or(|n| n.metadata.generation != self.applied) {
                        self.step().await;
                        tick.reset();
                    }
                }
                _ = tick.tick() => {
                    due = None;
                    self.step().await;
                }
            }
        }
    }

    /// Whether `n` is an older spec of the object we hold (a generation never goes back): acting
    /// on it would undo newer desired state, e.g. remove an mdev just created.
    fn is_older(&self, n: &CryptoNode) -> bool {
        self.latest
            .as_ref()
            .is_some_and(|l| l.metadata.uid == n.metadata.uid && n.metadata.generation < l.metadata.generation)
    }

    /// The CryptoNode is gone: forget it, create it again and apply.
    async fn gone(&mut self) {
        self.latest = None;
        self.applied = None;
        self.step().await;
    }

    fn failed(&self, e: AgentError) {
        self.metrics.error(e.metric_label());
        tracing::warn!("{e}");
    }

    /// One pass and its status; failures are counted and logged, the loop goes on.
    async fn step(&mut self) {
        if let Err(e) = self.try_step().await {
            self.failed(e);
        }
    }

    async fn try_step(&mut self) -> Result<(), AgentError> {
        self.last_pass = Some(tokio::time::Instant::now());
        let node = match self.latest.take() {
            Some(n) => n,
            None => self.node.ensure().await?,
        };
        let generation = node.metadata.generation;
        let spec = node.spec.mdevs.clone();
        let previous = node.status.clone();
        self.latest = Some(node);
        let engine = self.engine.clone();
        let prev = previous.clone();
        let outcome = tokio::task::spawn_blocking(move || engine.pass(&spec, generation, prev.as_ref()))
            .await
            .map_err(|e| AgentError::Panicked(e.to_string()))?;
        let status = match outcome {
            Ok(p) => p.status,
            Err(e) => {
                let e = AgentError::Host(e);
                let message = e.to_string();
                self.failed(e);
                self.metrics.passed();
                let now = crate::ap::meta::now_rfc3339();
                status::unreadable(previous.as_ref(), &message, generation, &now)
            }
        };
        self.applied = generation;
        if previous.as_ref() == Some(&status) {
            return Ok(());
        }
        let written = match self.node.write_status(&status).await {
            Ok(w) => w,
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    // Deleted meanwhile: the next pass creates it again.
                    self.latest = None;
                    self.applied = None;
                }
                return Err(e.into());
            }
        };
        if let Some(n) = &self.latest {
            self.node.announce(n, previous.as_ref(), &status).await;
        }
        self.latest = Some(written);
        Ok(())
    }
}
