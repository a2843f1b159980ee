//! The part of a `kubevirt.io/v1` VirtualMachineInstanceMigration the gate reads (kubevirt.md §1):
//! `spec.vmiName`, `spec.addedNodeSelector` and the evacuation annotation. Everything else of the
//! request object is ignored when it is read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};

/// Set by KubeVirt's evacuation controller on the VMIMs of a drain: the node being drained.
pub const EVACUATION_ANNOTATION: &str = "kubevirt.io/evacuationMigration";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vmim {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VmimSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmimSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmi_name: Option<String>,
    /// `None` when the field is absent (a JSON patch must then add the whole map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_node_selector: Option<BTreeMap<String, String>>,
}

impl Resource for Vmim {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("VirtualMachineInstanceMigration")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("kubevirt.io")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("virtualmachineinstancemigrations")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Vmim {
    /// The node a drain evacuates, when this VMIM is part of one.
    pub fn evacuation_node(&self) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(EVACUATION_ANNOTATION).map(String::as_str)
    }
}
