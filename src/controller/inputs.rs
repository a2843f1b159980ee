//! What one reconcile reads, as plain values built from the watch caches: the pure core never
//! sees a client. Tests build these by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{Condition, CryptoNode, CryptoPassthrough};

/// An agent Lease renewed longer ago than this is stale (architecture.md, "CryptoNode").
pub const AGENT_STALE_AFTER: Duration = Duration::from_secs(40);

/// The name of a node agent's Lease in the release namespace.
pub fn agent_lease_name(node: &str) -> String {
    format!("cryptopass-agent-{node}")
}

/// One Kubernetes node as placement sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.renewTime` (else `acquireTime`) of the agent's Lease; `None` without a Lease.
    pub lease_renewed: Option<Timestamp>,
    /// The node's CryptoNode, if its agent created one.
    pub cnode: Option<Arc<CryptoNode>>,
}

impl NodeView {
    /// The agent renewed its Lease less than [`AGENT_STALE_AFTER`] before `now`.
    pub fn agent_fresh(&self, now: Timestamp) -> bool {
        self.stale_in(now).is_some()
    }

    /// How long until the Lease goes stale; `None` when it already is (or does not exist).
    pub fn stale_in(&self, now: Timestamp) -> Option<Duration> {
        let renewed = self.lease_renewed?;
        let age = now.duration_since(renewed);
        let limit = k8s_openapi::jiff::SignedDuration::try_from(AGENT_STALE_AFTER).ok()?;
        (age < limit).then(|| Duration::try_from(limit - age).ok()).flatten()
    }

    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// The part of a KubeVirt VMI that placement and the migration lifecycle read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmiView {
    pub uid: Option<String>,
    pub phase: Option<String>,
    pub node_name: Option<String>,
    /// The VMI's own `LiveMigratable` condition (virt-handler's, not our verdict).
    pub live_migratable: Option<Condition>,
    /// `status.migrationState`: the newest migration as virt-controller and virt-handler see it.
    pub migration_state: Option<MigrationStateView>,
    /// The label `kubevirt.io/migrationTargetNodeName`.
    pub target_label: Option<String>,
    /// `status.evacuationNodeName`: a drain wants the VM off that node.
    pub evacuation_node: Option<String>,
    /// `spec.evictionStrategy`.
    pub eviction_strategy: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
}

/// `status.migrationState` of a VMI or VMIM (kubevirt.md §1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationStateView {
    pub migration_uid: Option<String>,
    pub source_node: Option<String>,
    pub target_node: Option<String>,
    /// virt-handler's handshake began (`targetNodeAddress` is set).
    pub handshake_started: bool,
    pub end: Option<Timestamp>,
    pub completed: bool,
    pub failed: bool,
    pub failure_reason: Option<String>,
    pub abort_status: Option<String>,
}

/// One VirtualMachineInstanceMigration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationView {
    pub name: String,
    pub uid: String,
    /// `spec.vmiName`.
    pub vmi: String,
    pub created: Option<Timestamp>,
    /// Has a `deletionTimestamp` (an abort was requested by deleting it).
    pub deleting: bool,
    pub phase: Option<String>,
    pub state: Option<MigrationStateView>,
    /// The node of its target pod (label `kubevirt.io/migrationJobUID`), once scheduled.
    pub target_pod_node: Option<String>,
    /// When it entered `Succeeded` or `Failed`.
    pub ended: Option<Timestamp>,
    /// The message of its newest true condition (why it failed, when it did).
    pub condition_message: Option<String>,
    /// `kubevirt.io/evacuationMigration`: the node a drain evacuates.
    pub evacuation: Option<String>,
}

impl VmiView {
    /// The node the VM runs on: `status.nodeName` while the phase is `Running`.
    pub fn running_on(&self) -> Option<&str> {
        (self.phase.as_deref() == Some("Running")).then_some(self.node_name.as_deref()).flatten()
    }
}

/// Whether the KubeVirt CR keeps virt-handler from sweeping our mdevs (kubevirt.md §4, §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepProtection {
    /// `reason` names the protection found.
    Protected {
        reason: &'static str,
        message: String,
    },
    Unprotected {
        message: String,
    },
    /// No KubeVirt CR exists (yet).
    NoKubeVirt,
}

/// Everything one reconcile of one passthrough reads.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub now: Timestamp,
    /// Every node, by name.
    pub nodes: BTreeMap<String, NodeView>,
    /// Every passthrough (for UUID and APQN conflicts), including the one reconciled.
    pub passthroughs: Vec<Arc<CryptoPassthrough>>,
    /// VMIs by `(namespace, name)`.
    pub vmis: BTreeMap<(String, String), VmiView>,
    /// VMIMs by the `(namespace, spec.vmiName)` they migrate.
    pub migrations: BTreeMap<(String, String), Vec<MigrationView>>,
    /// The KubeVirt CR's `spec.configuration.evictionStrategy`.
    pub default_eviction_strategy: Option<String>,
    pub sweep: SweepProtection,
}

impl Cluster {
    pub fn vmi(&self, namespace: &str, name: &str) -> Option<&VmiView> {
        self.vmis.get(&(namespace.to_string(), name.to_string()))
    }

    /// The VMIMs of a VMI.
    pub fn migrations_of(&self, namespace: &str, vmi: &str) -> &[MigrationView] {
        self.migrations.get(&(namespace.to_string(), vmi.to_string())).map(Vec::as_slice).unwrap_or_default()
    }

    /// The node a passthrough's VM runs on.
    pub fn active_node(&self, pt: &CryptoPassthrough) -> Option<&str> {
        let ns = pt.metadata.namespace.as_deref()?;
        self.vmi(ns, &pt.spec.vm_name)?.running_on()
    }
}

/// Precedence of passthroughs: older first (creationTimestamp), then namespace and name.
pub fn age_key(pt: &CryptoPassthrough) -> (Option<Timestamp>, String, String) {
    (
        pt.metadata.creation_timestamp.as_ref().map(|t| t.0),
        pt.metadata.namespace.clone().unwrap_or_default(),
        pt.metadata.name.clone().unwrap_or_default(),
    )
}
