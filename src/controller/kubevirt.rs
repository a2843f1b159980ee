//! The KubeVirt objects the controller reads, as minimal typed subsets (only the fields read, so
//! the watch caches stay small): VMIs (where the VM runs, its `LiveMigratable` condition) and the
//! KubeVirt CR (does it keep virt-handler from sweeping our mdevs? kubevirt.md §4, §6).

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};

use super::inputs::{SweepProtection, VmiView};
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
}

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
        VmiView { phase: self.status.phase.clone(), node_name: self.status.node_name.clone(), live_migratable: lm }
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
