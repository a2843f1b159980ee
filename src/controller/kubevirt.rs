//! The KubeVirt objects the controller reads, as minimal typed subsets (only the fields read, so
//! the watch caches stay small): VMIs (where the VM runs, its `LiveMigratable` condition) and the
//! KubeVirt CR (does it keep virt-handler from sweeping our mdevs? kubevirt.md §4, §6).

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::inputs::{MigrationStateView, MigrationView, SweepProtection, VmiView};
use crate::api::Condition;

/// The name of the vfio_ap mdev type (`mdev_supported_types/vfio_ap-passthrough/name`), which a
/// `permittedHostDevices.mediatedDevices[].mdevNameSelector` must name to keep our mdevs.
pub const VFIO_AP_MDEV_NAME: &str = "VFIO AP Passthrough Device";

macro_rules! kubevirt_resource {
    ($ty:ident, $kind:literal, $plural:literal, $scope:ty) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("kubevirt.io")
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `kubevirt.io/v1` VirtualMachineInstance: only `status.phase`, `status.nodeName`, `status.conditions`
/// (and `spec.nodeSelector`, for the migration gate).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vmi {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VmiSpec,
    #[serde(default)]
    pub status: VmiStatus,
}
kubevirt_resource!(Vmi, "VirtualMachineInstance", "virtualmachineinstances", NamespaceResourceScope);

/// `spec.nodeSelector`: the webhooks (src/webhook) judge a migration target by the selector its
/// pod will get, of which this is a part (kubevirt.md §2).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiSpec {
    #[serde(default)]
    pub node_selector: Option<std::collections::BTreeMap<String, String>>,
    /// `None`, `LiveMigrate`, `LiveMigrateIfPossible` or `External` (unset: the KubeVirt CR's
    /// `spec.configuration.evictionStrategy`).
    #[serde(default)]
    pub eviction_strategy: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<VmiCondition>,
    /// The state of the newest migration (virt-controller writes it at the target hand-off,
    /// virt-handler through the handshake).
    #[serde(default)]
    pub migration_state: Option<MigrationState>,
    /// Set by KubeVirt's evacuation controller when the VMI's node is drained.
    #[serde(default)]
    pub evacuation_node_name: Option<String>,
}

/// `status.migrationState` of a VMI or a VMIM (kubevirt.md §1): the fields the lifecycle reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    #[serde(default)]
    pub migration_uid: Option<String>,
    #[serde(default)]
    pub source_node: Option<String>,
    #[serde(default)]
    pub target_node: Option<String>,
    #[serde(default)]
    pub target_node_address: Option<String>,
    #[serde(default)]
    pub start_timestamp: Option<Time>,
    #[serde(default)]
    pub end_timestamp: Option<Time>,
    #[serde(default)]
    pub completed: bool,
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub abort_status: Option<String>,
}

impl MigrationState {
    pub fn view(&self) -> MigrationStateView {
        MigrationStateView {
            migration_uid: self.migration_uid.clone(),
            source_node: self.source_node.clone(),
            target_node: self.target_node.clone(),
            handshake_started: self.target_node_address.is_some(),
            end: self.end_timestamp.as_ref().map(|t| t.0),
            completed: self.completed,
            failed: self.failed,
            failure_reason: self.failure_reason.clone(),
            abort_status: self.abort_status.clone(),
        }
    }
}

/// The VMI label virt-controller sets at the target hand-off (kubevirt.md §2).
pub const MIGRATION_TARGET_LABEL: &str = "kubevirt.io/migrationTargetNodeName";
/// The label virt-controller puts on a migration's target pod: the VMIM's uid.
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VmiCondition {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Vmi {
    pub fn view(&self) -> VmiView {
        let lm = self.status.conditions.iter().find(|c| c.type_ == "LiveMigratable").map(|c| Condition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
            last_transition_time: None,
            observed_generation: None,
        });
        VmiView {
            uid: self.metadata.uid.clone(),
            phase: self.status.phase.clone(),
            node_name: self.status.node_name.clone(),
            live_migratable: lm,
            migration_state: self.status.migration_state.as_ref().map(MigrationState::view),
            target_label: self.metadata.labels.as_ref().and_then(|l| l.get(MIGRATION_TARGET_LABEL)).cloned(),
            evacuation_node: self.status.evacuation_node_name.clone(),
            eviction_strategy: self.spec.eviction_strategy.clone(),
            node_selector: self.spec.node_selector.clone().unwrap_or_default(),
        }
    }
}

/// `kubevirt.io/v1` VirtualMachineInstanceMigration: the fields the lifecycle reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Migration {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: MigrationSpec,
    #[serde(default)]
    pub status: MigrationStatus,
}
kubevirt_resource!(
    Migration,
    "VirtualMachineInstanceMigration",
    "virtualmachineinstancemigrations",
    NamespaceResourceScope
);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmi_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_node_selector: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub migration_state: Option<MigrationState>,
    #[serde(default)]
    pub phase_transition_timestamps: Vec<PhaseTransition>,
    #[serde(default)]
    pub conditions: Vec<VmiCondition>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTransition {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub phase_transition_timestamp: Option<Time>,
}

impl Migration {
    /// The view of the pure core; `target_pod_node`: where the scheduler put its target pod.
    pub fn view(&self, target_pod_node: Option<String>) -> MigrationView {
        let phase = self.status.phase.clone();
        let ended = self
            .status
            .phase_transition_timestamps
            .iter()
            .rev()
            .find(|t| matches!(t.phase.as_deref(), Some("Succeeded" | "Failed")))
            .and_then(|t| t.phase_transition_timestamp.as_ref().map(|t| t.0));
        let failure = self
            .status
            .conditions
            .iter()
            .rev()
            .find(|c| c.status == "True" && c.message.as_deref().is_some_and(|m| !m.is_empty()))
            .and_then(|c| c.message.clone());
        MigrationView {
            name: self.metadata.name.clone().unwrap_or_default(),
            uid: self.metadata.uid.clone().unwrap_or_default(),
            vmi: self.spec.vmi_name.clone().unwrap_or_default(),
            created: self.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleting: self.metadata.deletion_timestamp.is_some(),
            phase,
            state: self.status.migration_state.as_ref().map(MigrationState::view),
            target_pod_node,
            ended,
            condition_message: failure,
            evacuation: self
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::webhook::vmim::EVACUATION_ANNOTATION))
                .cloned(),
        }
    }
}

/// `kubevirt.io/v1` KubeVirt: only the parts of `spec.configuration` that decide virt-handler's sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KubeVirt {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: KubeVirtSpec,
}
kubevirt_resource!(KubeVirt, "KubeVirt", "kubevirts", NamespaceResourceScope);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KubeVirtSpec {
    #[serde(default)]
    pub configuration: KubeVirtConfiguration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtConfiguration {
    #[serde(default)]
    pub mediated_devices_configuration: Option<MediatedDevicesConfiguration>,
    #[serde(default)]
    pub permitted_host_devices: Option<PermittedHostDevices>,
    #[serde(default)]
    pub developer_configuration: Option<DeveloperConfiguration>,
    /// The cluster-wide default of a VMI's `spec.evictionStrategy`.
    #[serde(default)]
    pub eviction_strategy: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MediatedDevicesConfiguration {
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermittedHostDevices {
    #[serde(default)]
    pub mediated_devices: Vec<MediatedDeviceEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediatedDeviceEntry {
    #[serde(default)]
    pub mdev_name_selector: String,
    #[serde(default)]
    pub resource_name: String,
    #[serde(default)]
    pub external_resource_provider: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeveloperConfiguration {
    #[serde(default)]
    pub feature_gates: Vec<String>,
}

fn protection(kv: &KubeVirt) -> Result<(&'static str, String), String> {
    let name = format!(
        "{}/{}",
        kv.metadata.namespace.as_deref().unwrap_or_default(),
        kv.metadata.name.as_deref().unwrap_or_default()
    );
    let c = &kv.spec.configuration;
    if c.mediated_devices_configuration.as_ref().and_then(|m| m.enabled) == Some(false) {
        return Ok((
            "MediatedDevicesConfigurationDisabled",
            format!("KubeVirt {name}: mediatedDevicesConfiguration.enabled is false"),
        ));
    }
    if c.developer_configuration
        .as_ref()
        .is_some_and(|d| d.feature_gates.iter().any(|g| g == "DisableMDEVConfiguration"))
    {
        return Ok(("DisableMDEVConfiguration", format!("KubeVirt {name}: feature gate DisableMDEVConfiguration")));
    }
    let entries = c.permitted_host_devices.as_ref().map(|p| p.mediated_devices.as_slice()).unwrap_or_default();
    if let Some(e) =
        entries.iter().find(|e| e.external_resource_provider && e.mdev_name_selector.trim() == VFIO_AP_MDEV_NAME)
    {
        return Ok((
            "ExternalResourceProvider",
            format!(
                "KubeVirt {name}: permittedHostDevices.mediatedDevices lists {:?} ({}) with externalResourceProvider: true",
                VFIO_AP_MDEV_NAME, e.resource_name
            ),
        ));
    }
    Err(format!(
        "KubeVirt {name}: virt-handler deletes vfio-ap mdevs it does not manage on every heartbeat; set \
         spec.configuration.mediatedDevicesConfiguration.enabled: false, or add a \
         permittedHostDevices.mediatedDevices entry {{mdevNameSelector: {VFIO_AP_MDEV_NAME:?}, externalResourceProvider: true}}"
    ))
}

/// The cluster-wide eviction strategy of the (first) KubeVirt CR.
pub fn default_eviction_strategy<'a>(kubevirts: impl IntoIterator<Item = &'a KubeVirt>) -> Option<String> {
    kubevirts.into_iter().find_map(|k| k.spec.configuration.eviction_strategy.clone())
}

/// Protected only when every KubeVirt CR protects our mdevs.
pub fn sweep_protection<'a>(kubevirts: impl IntoIterator<Item = &'a KubeVirt>) -> SweepProtection {
    let mut found = None;
    for kv in kubevirts {
        match protection(kv) {
            Err(message) => return SweepProtection::Unprotected { message },
            Ok((reason, message)) => {
                found.get_or_insert(SweepProtection::Protected { reason, message });
            }
        }
    }
    found.unwrap_or(SweepProtection::NoKubeVirt)
}
