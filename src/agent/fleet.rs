//! `cryptopass agent-fleet` (hidden, for `hack/bench-scale` only): many simulated nodes in ONE
//! process. Each node is its own in-process simulator ([`crate::sim::Sim`]) FUSE-mounted under
//! `WORK/<node>/sys`, and its own unchanged agent loop ([`super::run::run`]) with its own
//! Kubernetes client, CryptoNode, Lease and state dir, all in one tokio runtime. The agents go
//! through the same file-I/O path as `cryptopass agent` over `cryptopass sim mount`; only the
//! processes are shared. No metrics server (100 ports would say nothing the apiserver's don't).
//!
//! Identity: every agent uses the one kubeconfig given (the bench passes the admin's); the
//! least-privilege, per-node identities are exercised by the integration tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::sim::{self, Kernel, Sim};

use super::plan::MaskMode;
use super::run::{AgentConfig, AgentError};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Node names, one agent and one simulator each.
    pub nodes: Vec<String>,
    /// A YAML machine file: every node is a copy of this host.
    pub machine: PathBuf,
    /// `WORK/<node>/{sys,state}`.
    pub work_dir: PathBuf,
    pub namespace: String,
    pub kubeconfig: Option<PathBuf>,
    pub mode: MaskMode,
    pub rescan: Duration,
    pub pass_interval: Duration,
}

/// Mounts every simulator, runs every agent until SIGTERM/SIGINT, then unmounts.
pub fn run_blocking(cfg: FleetConfig) -> Result<(), AgentError> {
    let text = std::fs::read_to_string(&cfg.machine)
        .map_err(|e| AgentError::Config(format!("reading {}: {e}", cfg.machine.display())))?;
    let kernel = Kernel::from_yaml(&text, None, &cfg.machine.display().to_string())
        .map_err(|e| AgentError::Config(e.to_string()))?;
    let mut sessions = Vec::with_capacity(cfg.nodes.len());
    let mut agents = Vec::with_capacity(cfg.nodes.len());
    for node in &cfg.nodes {
        let dir = cfg.work_dir.join(node);
        let root = dir.join("sys");
        let state = dir.join("state");
        for d in [&root, &state] {
            std::fs::create_dir_all(d).map_err(|e| AgentError::Config(format!("creating {}: {e}", d.display())))?;
        }
        sim::fuse::unmount_stale(&root);
        let mut k = kernel.clone();
        k.hostname = Some(node.clone());
        let session = sim::fuse::mount(Sim::new(k).shared(), &root)
            .map_err(|e| AgentError::Config(format!("mounting {}: {e}", root.display())))?;
        sessions.push(session);
        agents.push(AgentConfig {
            node_name: node.clone(),
            sysfs_root: root,
            state_dir: state,
            mode: cfg.mode,
            mdevctl_dir: None,
            namespace: cfg.namespace.clone(),
            kubeconfig: cfg.kubeconfig.clone(),
            metrics_addr: None,
            health_addr: None,
            rescan: cfg.rescan,
            pass_interval: cfg.pass_interval,
        });
    }
    eprintln!("cryptopass agent-fleet: {} simulated nodes mounted under {}", sessions.len(), cfg.work_dir.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    // Every agent stops on the same SIGTERM/SIGINT (each loop listens for it).
    let result = rt.block_on(async {
        let runs: Vec<_> = agents
            .into_iter()
            .map(|a| {
                let node = a.node_name.clone();
                (node, tokio::spawn(super::run::run(a)))
            })
            .collect();
        let mut first = Ok(());
        for (node, h) in runs {
            let r = h.await.unwrap_or_else(|e| Err(AgentError::Panicked(e.to_string())));
            if let Err(e) = r {
                tracing::error!("agent of {node}: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    });
    for s in sessions {
        let _ = s.umount_and_join();
    }
    result
}
