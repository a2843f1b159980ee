//! `CryptoPassthrough` (namespaced, `cpt`): which APQNs a VM gets and whether it may migrate.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "crypto.s390x.dev",
    version = "v1alpha1",
    kind = "CryptoPassthrough",
    namespaced,
    shortname = "cpt",
    status = "CryptoPassthroughStatus",
    printcolumn = r#"{"name":"VM","type":"string","jsonPath":".spec.vmName"}"#,
    printcolumn = r#"{"name":"UUID","type":"string","jsonPath":".status.uuid","priority":1}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeNode"}"#,
    printcolumn = r#"{"name":"Prepared","type":"integer","jsonPath":".status.preparedNodes"}"#,
    printcolumn = r#"{"name":"Compatible","type":"integer","jsonPath":".status.compatibleNodes"}"#,
    printcolumn = r#"{"name":"Incompatible","type":"integer","jsonPath":".status.incompatibleNodes","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Migration","type":"string","jsonPath":".status.conditions[?(@.type==\"MigrationReady\")].status"}"#,
    printcolumn = r#"{"name":"Last-Migration","type":"string","jsonPath":".status.lastMigration.outcome","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CryptoPassthroughSpec {
    /// The mdev UUID on every node (lowercase RFC 4122); default: the object's `metadata.uid`.
    /// Cannot be added, changed or removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Adapter ids (APIDs, 0..255); the vfio_ap matrix is adapters × domains. Write hex as `0x10`.
    pub adapters: Vec<u8>,
    /// Usage domain ids (APQIs, 0..255).
    pub domains: Vec<u8>,
    /// Control domain ids (0..255).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_domains: Vec<u8>,
    /// The VirtualMachine in this namespace that uses this passthrough (immutable).
    pub vm_name: String,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub migration: MigrationSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Nodes the VM may run on (and that may be prepared as migration targets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// How many compatible targets to keep prepared besides the active node: an integer ≥ 0 or `All`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::int_or_string")]
    pub standby: Standby,
}

impl Default for Placement {
    fn default() -> Self {
        Placement { node_selector: BTreeMap::new(), standby: Standby::Count(1) }
    }
}

/// `placement.standby`: a count or `All`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Standby {
    Count(u32),
    All(AllNodes),
}

/// The literal `All`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllNodes {
    All,
}

impl Default for Standby {
    fn default() -> Self {
        Standby::Count(1)
    }
}

impl Standby {
    /// The number of standby targets wanted among `candidates` other nodes.
    pub fn wanted(self, candidates: usize) -> usize {
        match self {
            Standby::Count(n) => (n as usize).min(candidates),
            Standby::All(_) => candidates,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Whether the VM may live-migrate (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for MigrationSpec {
    fn default() -> Self {
        MigrationSpec { enabled: true }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CryptoPassthroughStatus {
    /// The effective mdev UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The node the VM runs on now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_node: Option<String>,
    #[serde(default)]
    pub nodes: Vec<NodeVerdict>,
    #[serde(default)]
    pub prepared_nodes: u32,
    #[serde(default)]
    pub compatible_nodes: u32,
    #[serde(default)]
    pub incompatible_nodes: u32,
    #[serde(default)]
    #[schemars(schema_with = "super::condition::conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest live migration of the VM (a VirtualMachineInstanceMigration) and how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<LastMigration>,
}

/// The newest migration of the passthrough's VM, as the controller followed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastMigration {
    /// The VirtualMachineInstanceMigration's name.
    pub migration: String,
    /// Its uid (a later VMIM of the same name is another migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The node the VM ran on when the migration started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The target node, once KubeVirt placed the target pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The target's verdict relative to the source when last verified: `Equivalent` |
    /// `Compatible` | `Incompatible` | `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// `Running` | `Succeeded` | `Failed` | `Aborted` (by cryptopass, or the migration was deleted).
    pub outcome: String,
    /// A reason code: the verdict's code for our abort (e.g. `ApTypeNotCompatible`, `MdevMissing`,
    /// `MigrationDisabled`), `Completed`, `MigrationFailed`, `TargetNotPlaced` (failed before a
    /// target was placed), `AbortedByKubeVirt`, `Deleted`, or KubeVirt's phase while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In the kernel's words where the kernel has words for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the migration was requested (the VMIM's creation), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it succeeded, failed or was aborted, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// `endTime - startTime`, whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
}

/// One candidate node as this passthrough sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    pub name: String,
    /// `Active` | `Standby` | `Candidate`.
    pub role: String,
    /// Holds the synced mdev.
    pub prepared: bool,
    /// `Equivalent` | `Compatible` | `Incompatible` | `Unknown`, relative to the active node.
    pub verdict: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<VerdictReason>,
}

/// A reason in the kernel's words, with a stable code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictReason {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apqn: Option<String>,
    pub message: String,
}

impl CryptoPassthrough {
    /// `spec.uuid`, else `metadata.uid`.
    pub fn effective_uuid(&self) -> Option<String> {
        self.spec.uuid.clone().or_else(|| self.metadata.uid.clone()).map(|u| u.to_ascii_lowercase())
    }
}
