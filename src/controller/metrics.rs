//! The controller's metrics, with the exact names and labels of architecture.md ("Metrics").
//! prometheus-client appends `_total` to the counter `cryptopass_reconcile`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::Error;

pub const CONTROLLER: &str = "cryptopassthrough";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub namespace: String,
    pub passthrough: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApqnLabels {
    pub namespace: String,
    pub passthrough: String,
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    migrations: Family<OutcomeLabels, Counter>,
    migration_duration: Family<OutcomeLabels, Histogram>,
    reconcile: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    nodes: Family<NodeLabels, Gauge>,
    apqns: Family<ApqnLabels, Gauge>,
    /// The APQN series set per passthrough, to drop those that no longer apply.
    apqn_series: Mutex<HashMap<(String, String), Vec<ApqnLabels>>>,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let nodes = Family::<NodeLabels, Gauge>::default();
        let apqns = Family::<ApqnLabels, Gauge>::default();
        let migrations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "cryptopass_migrations",
            "Migrations of VMs with a passthrough that ended, by outcome (Succeeded, Failed, Aborted)",
            migrations.clone(),
        );
        let migration_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 12))) as fn() -> Histogram,
        );
        registry.register(
            "cryptopass_migration_duration_seconds",
            "From a migration's request (VMIM creation) to its end, by outcome",
            migration_duration.clone(),
        );
        registry.register("cryptopass_reconcile", "Reconciliations run", reconcile.clone());
        registry.register("cryptopass_reconcile_errors", "Reconciliations failed, by kind", errors.clone());
        registry.register("cryptopass_reconcile_duration_seconds", "Time of one reconciliation", duration.clone());
        registry.register("cryptopass_passthrough_nodes", "Listed nodes of a passthrough per verdict", nodes.clone());
        registry.register(
            "cryptopass_incompatible_apqns",
            "APQNs of a passthrough an incompatible node fails, per reason code",
            apqns.clone(),
        );
        Metrics {
            registry,
            migrations,
            migration_duration,
            reconcile,
            errors,
            duration,
            nodes,
            apqns,
            apqn_series: Mutex::new(HashMap::new()),
        }
    }
}

fn controller() -> ControllerLabels {
    ControllerLabels { controller: CONTROLLER.to_string() }
}

/// Observes the duration of one reconcile when dropped.
pub struct Timer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics.duration.get_or_create(&controller()).observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// For other parts of the process to register their metrics (the webhooks' admission metrics).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn reconcile_started(&self) -> Timer<'_> {
        self.reconcile.get_or_create(&controller()).inc();
        Timer { metrics: self, start: Instant::now() }
    }

    pub fn reconcile_failed(&self, e: &Error) {
        self.errors
            .get_or_create(&ErrorLabels { controller: CONTROLLER.into(), reason: e.metric_label().into() })
            .inc();
    }

    /// A followed migration ended with `outcome`.
    pub fn migration_finished(&self, outcome: &str, duration_seconds: Option<i64>) {
        let labels = OutcomeLabels { outcome: outcome.into() };
        self.migrations.get_or_create(&labels).inc();
        if let Some(d) = duration_seconds {
            self.migration_duration.get_or_create(&labels).observe(d as f64);
        }
    }

    /// Sets the per-passthrough gauges; `None` drops every series of the passthrough.
    pub fn set_passthrough(
        &self,
        namespace: &str,
        name: &str,
        verdicts: Option<&BTreeMap<&'static str, i64>>,
        apqns: &BTreeMap<(String, String), i64>,
    ) {
        let key = |verdict: &str| NodeLabels {
            namespace: namespace.into(),
            passthrough: name.into(),
            verdict: verdict.into(),
        };
        match verdicts {
            Some(v) => {
                for (verdict, n) in v {
                    self.nodes.get_or_create(&key(verdict)).set(*n);
                }
            }
            None => {
                for verdict in super::judge::Class::ALL {
                    self.nodes.remove(&key(verdict.as_str()));
                }
            }
        }
        let new: Vec<ApqnLabels> = apqns
            .keys()
            .map(|(node, reason)| ApqnLabels {
                namespace: namespace.into(),
                passthrough: name.into(),
                node: node.clone(),
                reason: reason.clone(),
            })
            .collect();
        for (labels, n) in new.iter().zip(apqns.values()) {
            self.apqns.get_or_create(labels).set(*n);
        }
        let mut series = self.apqn_series.lock().unwrap_or_else(|p| p.into_inner());
        let old = series.insert((namespace.into(), name.into()), new.clone()).unwrap_or_default();
        for gone in old.iter().filter(|o| !new.contains(o)) {
            self.apqns.remove(gone);
        }
    }

    /// The exposition in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_the_names_and_labels_of_the_architecture() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconcile_failed(&Error::NoUid("ns/p".into()));
        let verdicts = BTreeMap::from([("Equivalent", 2), ("Compatible", 0), ("Unknown", 0), ("Incompatible", 1)]);
        let apqns = BTreeMap::from([(("n3".to_string(), "FacilityDiffers".to_string()), 2)]);
        m.set_passthrough("ns", "p", Some(&verdicts), &apqns);
        m.migration_finished("Aborted", Some(12));
        let text = m.encode().unwrap();
        for line in [
            "cryptopass_reconcile_total{controller=\"cryptopassthrough\"} 1",
            "cryptopass_reconcile_errors_total{controller=\"cryptopassthrough\",reason=\"no_uid\"} 1",
            "cryptopass_reconcile_duration_seconds_count{controller=\"cryptopassthrough\"} 1",
            "cryptopass_passthrough_nodes{namespace=\"ns\",passthrough=\"p\",verdict=\"Equivalent\"} 2",
            "cryptopass_migrations_total{outcome=\"Aborted\"} 1",
            "cryptopass_migration_duration_seconds_count{outcome=\"Aborted\"} 1",
            "cryptopass_incompatible_apqns{namespace=\"ns\",passthrough=\"p\",node=\"n3\",reason=\"FacilityDiffers\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.set_passthrough("ns", "p", None, &BTreeMap::new());
        let text = m.encode().unwrap();
        assert!(!text.contains("passthrough=\"p\""), "a deleted passthrough leaves no series:\n{text}");
    }
}
