//! What the migration tests write beside `support::kubevirt`: VMI status fields that no component of
//! the test bed writes (KubeVirt's evacuation controller sets `status.evacuationNodeName` on a
//! drain; it does not run here), and VMIM reads.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::support::kubevirt::{vmi_resource, vmim_resource};

pub fn vmims(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &vmim_resource())
}

/// A merge patch of a VMI (it has no status subresource: status goes this way too).
pub async fn patch_vmi(client: &Client, ns: &str, name: &str, patch: Value) {
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &vmi_resource())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("VMI patch: {e}"));
}
