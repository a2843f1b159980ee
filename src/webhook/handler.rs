//! The admission handlers: `POST /validate-vmim` and `POST /mutate-vmim` take an
//! `admission.k8s.io/v1` AdmissionReview of a VMIM create and answer from the watch caches only
//! (never a live GET: a decision costs a few map look-ups, and an apiserver that is slow to answer
//! us cannot make admission slow).

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Node;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::{ObjectRef, Store};

use super::decide::{self, Decision, NodeLabels, NodeMatch, Request, VmiFacts, mismatch};
use super::metrics::{AdmissionMetrics, Outcome, Webhook};
use super::mutate;
use super::vmim::Vmim;
use crate::api::CryptoPassthrough;
use crate::controller::kubevirt::Vmi;

pub const VALIDATE_PATH: &str = "/validate-vmim";
pub const MUTATE_PATH: &str = "/mutate-vmim";

/// The watch caches the gate reads (the controller's reflector stores).
#[derive(Clone)]
pub struct Caches {
    pub passthroughs: Store<CryptoPassthrough>,
    pub vmis: Store<Vmi>,
    pub nodes: Store<Node>,
}

impl NodeLabels for Store<Node> {
    fn node_match(&self, node: &str, selector: &BTreeMap<String, String>) -> NodeMatch {
        match self.get(&ObjectRef::new(node)) {
            Some(n) => mismatch(n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()), selector),
            None => NodeMatch::Gone,
        }
    }
}

impl Caches {
    /// The passthroughs naming VMI `ns/vmi` (`spec.vmName`; a VMI has its VM's name).
    pub fn passthroughs_of(&self, ns: &str, vmi: &str) -> Vec<std::sync::Arc<CryptoPassthrough>> {
        self.passthroughs.state_filter(|p| p.spec.vm_name == vmi && p.metadata.namespace.as_deref() == Some(ns))
    }
}

/// The state of the handlers.
#[derive(Clone)]
pub struct Gate {
    pub caches: Caches,
    pub metrics: AdmissionMetrics,
}

pub fn router(gate: Gate) -> Router {
    Router::new().route(VALIDATE_PATH, post(validate)).route(MUTATE_PATH, post(mutate)).with_state(gate)
}

type Review = AdmissionReview<DynamicObject>;

async fn validate(State(g): State<Gate>, body: Bytes) -> Json<Review> {
    let start = Instant::now();
    let (outcome, review) = g.review(&body, Gate::validate);
    g.metrics.observe(Webhook::validate, outcome, start.elapsed());
    Json(review)
}

async fn mutate(State(g): State<Gate>, body: Bytes) -> Json<Review> {
    let start = Instant::now();
    let (outcome, review) = g.review(&body, Gate::mutate);
    g.metrics.observe(Webhook::mutate, outcome, start.elapsed());
    Json(review)
}

/// One webhook's answer to a parsed request.
type Decide = fn(&Gate, &AdmissionRequest<Vmim>, Option<Named<'_>>) -> (Outcome, AdmissionResponse);

/// What a VMIM create names.
struct Named<'a> {
    namespace: &'a str,
    vmi: &'a str,
    vmim: &'a Vmim,
}

impl Gate {
    /// Parses the review and answers it with `decide`; an unreadable review is refused
    /// (`failurePolicy: Fail` would refuse it too).
    fn review(&self, body: &[u8], decide: Decide) -> (Outcome, Review) {
        let req: AdmissionRequest<Vmim> = match serde_json::from_slice::<AdmissionReview<Vmim>>(body)
            .map_err(|e| e.to_string())
            .and_then(|r| r.try_into().map_err(|_| "the AdmissionReview has no request".to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable AdmissionReview");
                return (Outcome::error, AdmissionResponse::invalid(format!("cryptopass: {e}")).into_review());
            }
        };
        let named = match (&req.operation, &req.object) {
            (Operation::Create, Some(vmim)) => {
                let namespace = req.namespace.as_deref().or(vmim.metadata.namespace.as_deref());
                match (namespace, vmim.spec.vmi_name.as_deref()) {
                    (Some(namespace), Some(vmi)) => Some(Named { namespace, vmi, vmim }),
                    _ => None,
                }
            }
            _ => None,
        };
        let (outcome, resp) = decide(self, &req, named);
        (outcome, resp.into_review())
    }

    fn validate(&self, req: &AdmissionRequest<Vmim>, named: Option<Named<'_>>) -> (Outcome, AdmissionResponse) {
        let allowed = AdmissionResponse::from(req);
        // Not a VMIM create naming a VMI: KubeVirt's own webhook judges that.
        let Some(n) = named else { return (Outcome::allowed, allowed) };
        let pts = self.caches.passthroughs_of(n.namespace, n.vmi);
        let pts: Vec<&CryptoPassthrough> = pts.iter().map(|p| p.as_ref()).collect();
        if pts.is_empty() {
            return (Outcome::allowed, allowed);
        }
        let vmi = self.caches.vmis.get(&ObjectRef::new(n.vmi).within(n.namespace));
        let empty = BTreeMap::new();
        let facts = vmi.as_deref().map(|v| VmiFacts {
            node_name: v.status.node_name.as_deref(),
            node_selector: v.spec.node_selector.as_ref().unwrap_or(&empty),
        });
        let request = Request {
            namespace: n.namespace,
            vmi_name: n.vmi,
            added_node_selector: n.vmim.spec.added_node_selector.as_ref().unwrap_or(&empty),
            evacuation_node: n.vmim.evacuation_node(),
        };
        match decide::validate(&request, facts, &pts, &self.caches.nodes) {
            Decision::NotOurs => (Outcome::allowed, allowed),
            Decision::Allow { targets } => {
                tracing::debug!(namespace = n.namespace, vmi = n.vmi, ?targets, "migration admitted");
                (Outcome::allowed, allowed)
            }
            Decision::Deny(d) => {
                let message = d.to_string();
                tracing::info!(namespace = n.namespace, vmi = n.vmi, %message, "migration refused");
                (Outcome::denied, allowed.deny(message))
            }
        }
    }

    fn mutate(&self, req: &AdmissionRequest<Vmim>, named: Option<Named<'_>>) -> (Outcome, AdmissionResponse) {
        let allowed = AdmissionResponse::from(req);
        let Some(n) = named else { return (Outcome::allowed, allowed) };
        let pts = self.caches.passthroughs_of(n.namespace, n.vmi);
        let pts: Vec<&CryptoPassthrough> = pts.iter().map(|p| p.as_ref()).collect();
        let added = n.vmim.spec.added_node_selector.as_ref();
        let pairs = mutate::additions(added, &pts);
        if pairs.is_empty() {
            return (Outcome::allowed, allowed);
        }
        match allowed.clone().with_patch(mutate::patch(added, &pairs)) {
            Ok(resp) => (Outcome::mutated, resp),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the patch");
                (Outcome::error, allowed.deny(format!("cryptopass: cannot encode the patch: {e}")))
            }
        }
    }
}
