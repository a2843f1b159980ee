//! `cryptopass controller`: the client, the metrics endpoint, leader election, the reflectors and
//! the `kube::runtime::Controller` of CryptoPassthroughs, triggered by every kind it reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::Controller;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::error::Result;
use super::gc;
use super::http::{self, Health};
use super::leader;
use super::metrics::Metrics;
use super::reconcile::{Context, error_policy, reconcile};
use super::watch::{self, Stores};

/// Reconciles at once: bounds memory and the load on the apiserver (hack/bench-scale/RESULTS.md).
const RECONCILE_CONCURRENCY: u16 = 8;

/// What `cryptopass controller` is told.
#[derive(Debug, Clone)]
pub struct Options {
    pub kubeconfig: Option<PathBuf>,
    /// The release namespace: agent Leases and the leader Lease live there.
    pub namespace: String,
    pub metrics_addr: SocketAddr,
    /// This replica's identity in the leader Lease (default: hostname and pid).
    pub identity: Option<String>,
    /// Serve the migration gate webhooks (src/webhook) from this process.
    pub webhook: Option<crate::webhook::Serving>,
}

pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = std::env::var("POD_NAME").unwrap_or(host);
    format!("{host}-{}", std::process::id())
}

pub async fn run(opts: Options) -> Result<()> {
    let client = client(opts.kubeconfig.as_ref()).await?;
    let admission = crate::webhook::AdmissionMetrics::default();
    let metrics = {
        let mut m = Metrics::default();
        admission.register(m.registry_mut());
        Arc::new(m)
    };
    let ready = Arc::new(AtomicBool::new(false));
    let addr = http::serve(opts.metrics_addr, Health { metrics: metrics.clone(), ready: ready.clone() }).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");

    let identity = opts.identity.clone().unwrap_or_else(identity);
    let (leader_rx, lease_task) = leader::campaign(client.clone(), &opts.namespace, &identity).await?;
    let (stores, streams, synced) = watch::start(client.clone(), &opts.namespace);
    // The migration gate (src/webhook): every replica serves it from these caches, once synced;
    // the leader keeps the configurations' matchConditions.
    let mut serving: Option<Arc<dyn crate::webhook::tls::Certificates>> = None;
    if let Some(w) = &opts.webhook {
        let caches = crate::webhook::Caches {
            passthroughs: stores.passthroughs.clone(),
            vmis: stores.vmis.clone(),
            nodes: stores.nodes.clone(),
        };
        let gate = crate::webhook::Gate { caches, metrics: admission };
        let probe = synced.clone();
        let certs = crate::webhook::certificates(w, &client, leader_rx.clone())?;
        crate::webhook::start_with(w.addr, certs.clone(), gate, move || probe.all());
        let (probe, leader) = (synced.clone(), leader_rx.clone());
        crate::webhook::keep_scope(client.clone(), stores.passthroughs.clone(), leader, move || probe.all());
        // Not ready before a serving certificate is there (a self-managed one: the Secret).
        serving = Some(certs);
    }
    {
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut logged = Vec::new();
            loop {
                let mut pending = synced.pending();
                if serving.as_ref().is_some_and(|c| c.current().is_none()) {
                    pending.push("webhook certificate");
                }
                if pending.is_empty() {
                    tracing::info!("watch caches synced");
                    ready.store(true, Ordering::Release);
                    return;
                }
                if pending != logged {
                    if pending == ["webhook certificate"] {
                        tracing::info!("watch caches synced; not ready until the webhook certificate is there");
                    } else {
                        tracing::debug!(?pending, "waiting for watch caches");
                    }
                    logged = pending;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    // The orphan sweep: the leader only, from the caches, once they are synced.
    let sweep = {
        let (client, stores, ready, leader) = (client.clone(), stores.clone(), ready.clone(), leader_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(gc::PERIOD);
            loop {
                tick.tick().await;
                let leading = *leader.borrow();
                if leading
                    && ready.load(Ordering::Acquire)
                    && let Err(e) = gc::collect(&client, &stores).await
                {
                    tracing::warn!(error = %e, "orphan sweep failed");
                }
            }
        })
    };

    let reporter = Reporter { controller: "cryptopass-controller".into(), instance: Some(identity.clone()) };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, reporter),
        metrics,
        stores: stores.clone(),
        leader: leader_rx.clone(),
        node_locks: Default::default(),
    });
    let (s1, s2, s3, s4, s5) = (stores.clone(), stores.clone(), stores.clone(), stores.clone(), stores.clone());
    let (s6, s7) = (stores.clone(), stores.clone());
    Controller::for_stream(streams.passthroughs, stores.passthroughs.clone())
        .with_config(
            ControllerConfig::default().debounce(Duration::from_millis(200)).concurrency(RECONCILE_CONCURRENCY),
        )
        .watches_stream(streams.cnodes, move |c| s1.related_to_node(&c.name_any()))
        .watches_stream(streams.nodes, move |n| s2.related_to_node(&n.name_any()))
        .watches_stream(streams.leases, move |l| {
            Stores::lease_node(&l).map(|n| s3.related_to_node(&n)).unwrap_or_default()
        })
        .watches_stream(streams.vmis, move |v| s4.using_vmi(&v.namespace().unwrap_or_default(), &v.name_any()))
        .watches_stream(streams.kubevirts, move |_| s5.all())
        .watches_stream(streams.migrations, move |m| s6.using_migration(&m))
        .watches_stream(streams.target_pods, move |p| s7.using_target_pod(&p))
        .reconcile_all_on(leader::gained(leader_rx))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((o, _)) => tracing::debug!(object = %object_name(&o), "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    // Drop the last receivers of the leader channel: the lease task then releases the Lease, so the
    // next replica takes over at once instead of after the Lease expired.
    sweep.abort();
    let _ = sweep.await;
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
        other => tracing::warn!(?other, "leader Lease not released cleanly"),
    }
    Ok(())
}

fn object_name(o: &ObjectRef<crate::api::CryptoPassthrough>) -> String {
    format!("{}/{}", o.namespace.as_deref().unwrap_or_default(), o.name)
}
