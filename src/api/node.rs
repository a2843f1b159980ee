//! `CryptoNode` (cluster-scoped, `cnode`, name = node name): the controller writes the desired
//! mdevs into `spec.mdevs` (one server-side-apply field manager per passthrough), the node's agent
//! writes what the host is and has into `status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "crypto.s390x.dev",
    version = "v1alpha1",
    kind = "CryptoNode",
    shortname = "cnode",
    status = "CryptoNodeStatus",
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".status.kernel.profile"}"#,
    printcolumn = r#"{"name":"Release","type":"string","jsonPath":".status.kernel.release","priority":1}"#,
    printcolumn = r#"{"name":"Cards","type":"integer","jsonPath":".status.cardCount"}"#,
    printcolumn = r#"{"name":"Mdevs","type":"integer","jsonPath":".status.mdevCount"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CryptoNodeSpec {
    /// Desired mdevs, one per passthrough placed on this node (a list map keyed by `uuid`).
    #[serde(default)]
    #[schemars(schema_with = "desired_mdevs_schema")]
    pub mdevs: Vec<DesiredMdev>,
}

/// The field names of the agent's desired state (issue 4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredMdev {
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<PassthroughRef>,
    pub adapters: Vec<u8>,
    pub domains: Vec<u8>,
    #[serde(default)]
    pub control_domains: Vec<u8>,
    #[serde(default)]
    pub migratable: bool,
    /// `Active` | `Standby` | `Candidate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassthroughRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

fn desired_mdevs_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = g.subschema_for::<DesiredMdev>();
    schemars::json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["uuid"]
    })
}

/// Written by the agent only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CryptoNodeStatus {
    #[serde(default)]
    pub kernel: KernelStatus,
    #[serde(default)]
    pub max_adapter_id: u8,
    #[serde(default)]
    pub max_domain_id: u8,
    /// As the kernel prints them (`0x` + 64 hex digits).
    #[serde(default)]
    pub apmask: String,
    #[serde(default)]
    pub aqmask: String,
    #[serde(default)]
    pub host_config: HostConfigStatus,
    #[serde(default)]
    pub card_count: u32,
    #[serde(default)]
    pub mdev_count: u32,
    #[serde(default)]
    pub cards: Vec<CardStatus>,
    /// The queues, grouped: per adapter, the domains whose queues show the same attributes (one
    /// entry per queue made a CryptoNode ~50 KB and every write of it costly: hack/bench-scale).
    #[serde(default)]
    pub queue_groups: Vec<QueueGroupStatus>,
    #[serde(default)]
    pub mdevs: Vec<ObservedMdev>,
    /// Host-bound queues a mask edit moved along (architecture.md, "Masks").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collateral_queues: Vec<String>,
    #[serde(default)]
    #[schemars(schema_with = "super::condition::conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelStatus {
    /// `v1` | `latest` | `unknown` | `cannotMigrate`.
    #[serde(default)]
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfio_ap_stream: Option<String>,
    #[serde(default)]
    pub bus_features: Vec<String>,
    /// `None` when the matrix has no `features` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_execution_guest: Option<bool>,
    #[serde(default)]
    pub driver_override_capable: bool,
    #[serde(default)]
    pub vfio_ap_loaded: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_domains: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_domains: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CardStatus {
    pub id: u8,
    /// zcrypt name, e.g. `CEX8C`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub hwtype: u8,
    pub raw_hwtype: u8,
    /// `0x%08X` as the card shows them.
    pub functions: String,
    /// lszcrypt letters, e.g. `S--D--N-F-`.
    pub letters: String,
    pub mode: String,
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// The queues `adapter` × `domains` (each as `lszcrypt` lists queues `AA.DDDD`), which all show
/// the attributes below.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueGroupStatus {
    pub adapter: u8,
    pub domains: Vec<u8>,
    /// `vfio_ap`, `cex4queue`, or absent when unbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Live TAPQ (`0x%08X`); absent when TAPQ failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    pub config: bool,
    pub chkstop: bool,
    /// vfio_ap's `status`: `unassigned` | `assigned` | `in use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_override: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedMdev {
    pub uuid: String,
    /// Created by this agent (else foreign: IBM's CEX DRA driver, mdevctl, an administrator).
    pub managed: bool,
    pub adapters: Vec<u8>,
    pub domains: Vec<u8>,
    pub control_domains: Vec<u8>,
    pub guest_adapters: Vec<u8>,
    pub guest_domains: Vec<u8>,
    pub guest_control_domains: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migratable: Option<bool>,
    pub in_use: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
    /// Matches the desired state.
    pub synced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<MdevError>,
}

/// Why a desired mdev is not (yet) as desired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MdevError {
    /// A reason code (architecture.md).
    pub reason: String,
    /// The kernel's errno name, e.g. `EADDRINUSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    pub message: String,
}
