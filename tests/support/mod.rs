//! Shared support for the Kubernetes integration tests (agent, controller, …), against the ONE
//! control plane of `make test` (testbed.md, "One control plane per make test"): its admin
//! kubeconfig comes in `CRYPTOPASS_TEST_KUBECONFIG` (a test panics without it, never skips).
//!
//! Every test isolates itself: its own namespace ([`TestNamespace`]), fake s390x nodes with unique
//! names ([`FakeNode`]), its own simulator mounts and agent processes ([`SimAgent`]), so tests
//! run in parallel. What all tests share is applied idempotently (server-side apply) and once
//! per process: the CRDs, and `deploy/` (namespace, RBAC, the agent's admission policy).
//!
//! KubeVirt's real virt-controller runs in the test bed: [`KubeVirt`] (module `kubevirt`) gives a test
//! a namespace it acts in, nodes of the test's own pool, and plays the kubelet and virt-handler for
//! starting (`run_vmi`) and migrating (`migrate`, `target_pod`, `complete_migration`) VMs.
//!
//! ```ignore
//! mod support;
//! let c = support::cluster().await;
//! let node = support::FakeNode::create(&c, "z16").await;
//! let agent = support::SimAgent::start(&c, &node, support::machine("z16-cca")).await;
//! let cn = support::eventually("the CryptoNode", || agent.crypto_node()).await;
//! ```
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod cnode;
pub mod identity;
pub mod kubevirt;
pub mod nodes;
pub mod sim_agent;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cluster::{Cluster, TestNamespace, apply_yaml, cluster};
pub use identity::{Identity, agent_identity, controller_identity};
pub use kubevirt::{KubeVirt, VmiOptions};
pub use nodes::FakeNode;
pub use sim_agent::SimAgent;

/// The release namespace of `deploy/` (the agents' Leases live there).
pub const RELEASE_NAMESPACE: &str = "cryptopass";
/// Field manager of what the tests apply.
pub const TEST_MANAGER: &str = "cryptopass-test";

/// How long [`eventually`] waits unless told otherwise (the agent re-scans every 5 s).
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Between two attempts of [`eventually`].
const POLL: Duration = Duration::from_millis(100);

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `hack/machines/<name>.yaml`.
pub fn machine(name: &str) -> PathBuf {
    repo().join("hack/machines").join(format!("{name}.yaml"))
}

/// A short random suffix for unique names (lowercase hex, DNS-label safe).
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// `<prefix>-<random>`, cut to a DNS label.
pub fn unique(prefix: &str) -> String {
    let mut p: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    p.truncate(50);
    format!("{}-{}", p.trim_matches('-'), suffix())
}

/// Polls `f` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, f).await
}

/// [`eventually`] with its own deadline.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls a blocking predicate (no runtime needed) until true, or panics naming `what`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a kube error is an API status with this HTTP code.
pub fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
