//! The agent's metrics (architecture.md, "Metrics") and its HTTP endpoints: `/metrics`
//! (Prometheus text) and `/healthz` (the loop finished a pass recently).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::status::MdevCounts;
use crate::ap::Inventory;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` | `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `synced` | `pending` | `failed` | `foreign`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabel {
    /// `vfio_ap` | `host` | `none`.
    pub driver: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `metric_label()` of the agent's error.
    pub reason: &'static str,
}

/// Every metric of the agent; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    pub sysfs_writes: Family<ResultLabel, Counter>,
    pub mdevs: Family<StateLabel, Gauge>,
    pub apply_duration: Histogram,
    pub queues: Family<DriverLabel, Gauge>,
    pub errors: Family<ReasonLabel, Counter>,
    registry: Arc<Registry>,
    /// Unix seconds of the last finished pass (0: none yet).
    last_pass: Arc<AtomicI64>,
    started: i64,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let sysfs_writes = Family::<ResultLabel, Counter>::default();
        let mdevs = Family::<StateLabel, Gauge>::default();
        let apply_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let queues = Family::<DriverLabel, Gauge>::default();
        let errors = Family::<ReasonLabel, Counter>::default();
        let mut r = Registry::default();
        r.register("cryptopass_agent_sysfs_writes", "Writes to sysfs by result", sysfs_writes.clone());
        r.register("cryptopass_agent_mdevs", "vfio_ap mdevs on this node by state", mdevs.clone());
        r.register(
            "cryptopass_agent_apply_duration_seconds",
            "Duration of one pass: read, plan, execute, read again",
            apply_duration.clone(),
        );
        r.register("cryptopass_agent_queues", "AP queues on this node by driver", queues.clone());
        r.register("cryptopass_agent_errors", "Failures of the agent loop by kind", errors.clone());
        for result in ["ok", "error"] {
            let _ = sysfs_writes.get_or_create(&ResultLabel { result });
        }
        Metrics {
            sysfs_writes,
            mdevs,
            apply_duration,
            queues,
            errors,
            registry: Arc::new(r),
            last_pass: Arc::new(AtomicI64::new(0)),
            started: unix_now(),
        }
    }

    pub fn write(&self, ok: bool) {
        self.sysfs_writes.get_or_create(&ResultLabel { result: if ok { "ok" } else { "error" } }).inc();
    }

    pub fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// After a pass: its duration, the mdevs by state and the queues by driver.
    pub fn pass(&self, took: Duration, counts: MdevCounts, inv: &Inventory) {
        self.apply_duration.observe(took.as_secs_f64());
        for (state, n) in [
            ("synced", counts.synced),
            ("pending", counts.pending),
            ("failed", counts.failed),
            ("foreign", counts.foreign),
        ] {
            self.mdevs.get_or_create(&StateLabel { state }).set(n);
        }
        let (mut vfio, mut host, mut none) = (0, 0, 0);
        for q in inv.queues.values() {
            match q.driver.as_deref() {
                Some(crate::ap::inventory::VFIO_AP_DRIVER) => vfio += 1,
                Some(_) => host += 1,
                None => none += 1,
            }
        }
        for (driver, n) in [("vfio_ap", vfio), ("host", host), ("none", none)] {
            self.queues.get_or_create(&DriverLabel { driver }).set(n);
        }
        self.passed();
    }

    /// A pass finished (even one that failed to read the host: the loop is alive).
    pub fn passed(&self) {
        self.last_pass.store(unix_now(), Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }

    /// Healthy while a pass finished within `stale` (or the agent started within it).
    pub fn healthy(&self, stale: Duration) -> bool {
        let last = self.last_pass.load(Ordering::Relaxed).max(self.started);
        unix_now() - last <= stale.as_secs() as i64
    }
}

#[derive(Clone)]
struct Served {
    metrics: Metrics,
    stale: Duration,
}

async fn metrics(State(s): State<Served>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
}

async fn healthz(State(s): State<Served>) -> impl IntoResponse {
    if s.metrics.healthy(s.stale) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no pass finished recently")
    }
}

/// The routes: `/metrics` and `/healthz` (both on every listener: one address may serve both).
pub fn router(metrics: Metrics, stale: Duration) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .with_state(Served { metrics, stale })
}

/// Binds `addr` now (so a bad address fails the start), serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("serving /metrics and /healthz on {}", listener.local_addr()?);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::warn!("HTTP server on {addr}: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_their_spec_names() {
        let m = Metrics::new();
        m.write(true);
        m.write(false);
        m.write(true);
        m.pass(
            Duration::from_millis(5),
            MdevCounts { synced: 2, pending: 0, failed: 1, foreign: 3 },
            &Inventory::default(),
        );
        let t = m.render();
        for want in [
            "cryptopass_agent_sysfs_writes_total{result=\"ok\"} 2",
            "cryptopass_agent_sysfs_writes_total{result=\"error\"} 1",
            "cryptopass_agent_mdevs{state=\"synced\"} 2",
            "cryptopass_agent_mdevs{state=\"foreign\"} 3",
            "cryptopass_agent_apply_duration_seconds_count 1",
            "cryptopass_agent_queues{driver=\"vfio_ap\"} 0",
        ] {
            assert!(t.contains(want), "{want} missing in\n{t}");
        }
        assert!(m.healthy(Duration::from_secs(60)));
    }
}
