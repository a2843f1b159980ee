//! Passthroughs with a written status, VMIs and node labels, as the caches would hold them.

use std::collections::BTreeMap;

use crate::api::passthrough::{NodeVerdict, VerdictReason};
use crate::api::{Condition, CryptoPassthrough, CryptoPassthroughStatus, prepared_label};
use crate::webhook::decide::{self, Decision, Request, VmiFacts};

pub const UUID: &str = "0b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a4b";
pub const UUID2: &str = "1b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a4b";

pub fn key() -> String {
    prepared_label(UUID)
}

pub fn reason(code: &str, apqn: Option<&str>, message: &str) -> VerdictReason {
    VerdictReason { code: code.into(), apqn: apqn.map(str::to_string), message: message.into() }
}

pub fn node(name: &str, role: &str, prepared: bool, verdict: &str, reasons: Vec<VerdictReason>) -> NodeVerdict {
    NodeVerdict { name: name.into(), role: role.into(), prepared, verdict: verdict.into(), reasons }
}

/// A Ready passthrough `name` of VM `vm` running on `a`, with a prepared Equivalent standby `b`.
pub fn passthrough(name: &str, vm: &str) -> CryptoPassthrough {
    let mut p: CryptoPassthrough = serde_json::from_value(serde_json::json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1",
        "kind": "CryptoPassthrough",
        "metadata": {"name": name, "namespace": "ns", "uid": "ffffffff-0000-4000-8000-000000000000"},
        "spec": {"uuid": UUID, "adapters": [1], "domains": [5], "vmName": vm},
    }))
    .unwrap();
    p.status = Some(CryptoPassthroughStatus {
        uuid: Some(UUID.into()),
        active_node: Some("a".into()),
        nodes: vec![node("a", "Active", true, "Equivalent", vec![]), node("b", "Standby", true, "Equivalent", vec![])],
        conditions: vec![Condition::new("Ready", true, "Synced", "mdev synced on the active node a")],
        ..CryptoPassthroughStatus::default()
    });
    p
}

pub fn with_nodes(mut p: CryptoPassthrough, nodes: Vec<NodeVerdict>) -> CryptoPassthrough {
    if let Some(s) = p.status.as_mut() {
        s.nodes = nodes;
    }
    p
}

/// Every node named labeled as the controller would: prepared label on `a` and `b`.
pub fn labels() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for n in ["a", "b", "c", "d", "e", "f"] {
        let mut l = BTreeMap::from([("kubernetes.io/hostname".to_string(), n.to_string())]);
        if matches!(n, "a" | "b") {
            l.insert(key(), "true".into());
        }
        m.insert(n.to_string(), l);
    }
    m
}

pub fn sel(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What the mutating webhook leaves in `addedNodeSelector`.
pub fn steered() -> BTreeMap<String, String> {
    sel(&[(&key(), "true")])
}

/// The world of one decision.
pub struct Case {
    pub pts: Vec<CryptoPassthrough>,
    pub added: BTreeMap<String, String>,
    pub vmi_selector: BTreeMap<String, String>,
    pub vmi_node: Option<String>,
    pub vmi_exists: bool,
    pub evacuation: Option<String>,
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Case {
    pub fn new(pts: Vec<CryptoPassthrough>) -> Case {
        Case {
            pts,
            added: steered(),
            vmi_selector: BTreeMap::new(),
            vmi_node: Some("a".into()),
            vmi_exists: true,
            evacuation: None,
            labels: labels(),
        }
    }

    pub fn decide(&self) -> Decision {
        let req = Request {
            namespace: "ns",
            vmi_name: "vm1",
            added_node_selector: &self.added,
            evacuation_node: self.evacuation.as_deref(),
        };
        let vmi = self
            .vmi_exists
            .then_some(VmiFacts { node_name: self.vmi_node.as_deref(), node_selector: &self.vmi_selector });
        let pts: Vec<&CryptoPassthrough> = self.pts.iter().collect();
        decide::validate(&req, vmi, &pts, &self.labels)
    }

    /// The denial message, or a panic naming what was decided instead.
    pub fn denied(&self) -> String {
        match self.decide() {
            Decision::Deny(d) => d.to_string(),
            other => panic!("expected a denial, got {other:?}"),
        }
    }
}
