//! `cryptopass_admission_requests_total{webhook,decision}` and
//! `cryptopass_admission_duration_seconds{webhook}` (architecture.md, "Metrics"), registered into
//! the controller's registry so that its `/metrics` shows them.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Webhook {
    validate,
    mutate,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    allowed,
    denied,
    mutated,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: Webhook,
    pub decision: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: Webhook,
}

#[derive(Clone)]
pub struct AdmissionMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<WebhookLabels, Histogram>,
}

/// 25 µs … 0.4 s: the handler's goal is p99 < 200 µs (architecture.md, "Tests and benchmarks").
fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 15))
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        AdmissionMetrics {
            requests: Family::default(),
            duration: Family::<WebhookLabels, Histogram>::new_with_constructor(histogram as fn() -> Histogram),
        }
    }
}

impl AdmissionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("cryptopass_admission_requests", "Admission reviews answered", self.requests.clone());
        registry.register(
            "cryptopass_admission_duration_seconds",
            "Time to answer one admission review (handler only)",
            self.duration.clone(),
        );
    }

    pub fn observe(&self, webhook: Webhook, decision: Outcome, took: Duration) {
        self.requests.get_or_create(&RequestLabels { webhook, decision }).inc();
        self.duration.get_or_create(&WebhookLabels { webhook }).observe(took.as_secs_f64());
    }
}
