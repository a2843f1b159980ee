//! Leader election on the Lease `cryptopass-controller` in the release namespace: only the leader
//! writes. Every replica keeps its caches warm, so a hand-over only waits for the Lease.

use futures::Stream;
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::Result;

pub const LEASE_NAME: &str = "cryptopass-controller";
/// Seconds a leader may go without renewing before another replica takes over.
pub const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the leader renews.
pub const GRACE_SECONDS: u64 = 5;

pub type LeaseTask =
    JoinHandle<std::result::Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>;

/// Starts campaigning; the receiver says whether this replica leads now. Dropping every receiver
/// releases the Lease (a clean shutdown hands over at once).
pub async fn campaign(client: Client, namespace: &str, identity: &str) -> Result<(watch::Receiver<bool>, LeaseTask)> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_parameters(LeaseParams::new(identity, LEASE_SECONDS, GRACE_SECONDS))
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Yields once each time this replica becomes the leader (the Controller then reconciles all).
pub fn gained(rx: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                tracing::info!("became the leader");
                return Some(((), rx));
            }
            tracing::info!("lost the leadership");
        }
    })
}
