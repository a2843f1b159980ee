//! The Kubernetes API of cryptopass: the CRD types (the single source of `crds/*.yaml`), their
//! schema rules, and the conversion between a host inventory and `CryptoNode.status`.

pub mod condition;
pub mod convert;
pub mod node;
pub mod passthrough;
mod schema;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use condition::Condition;
pub use node::{CryptoNode, CryptoNodeSpec, CryptoNodeStatus, DesiredMdev, PassthroughRef};
pub use passthrough::{
    CryptoPassthrough, CryptoPassthroughSpec, CryptoPassthroughStatus, LastMigration, NodeVerdict, Standby,
};

pub const GROUP: &str = "crypto.s390x.dev";
/// Prefix of labels, annotations and finalizers.
pub const PREFIX: &str = "crypto.s390x.dev/";
pub const FINALIZER: &str = "crypto.s390x.dev/release";

/// The node label that marks a node prepared for a passthrough's UUID.
pub fn prepared_label(uuid: &str) -> String {
    format!("{PREFIX}prepared-{uuid}")
}

/// schemars names Rust integer widths (`uint8`, `uint32`) as formats; the apiserver knows only
/// `int32`/`int64` and warns on the rest. The ranges stay as `minimum`/`maximum`.
fn drop_unknown_formats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| f.starts_with("uint") || f == "int8" || f == "int16")
            {
                m.remove("format");
            }
            m.values_mut().for_each(drop_unknown_formats);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}

fn patched(mut crd: CustomResourceDefinition, patch: fn(&mut serde_json::Value)) -> CustomResourceDefinition {
    for v in &mut crd.spec.versions {
        if let Some(s) = v.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            let mut json = serde_json::to_value(&*s).unwrap_or_default();
            patch(&mut json);
            drop_unknown_formats(&mut json);
            if let Ok(back) = serde_json::from_value(json) {
                *s = back;
            }
        }
    }
    crd
}

/// The CRDs, as `kubectl apply` takes them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![patched(CryptoPassthrough::crd(), schema::patch_passthrough), patched(CryptoNode::crd(), schema::patch_node)]
}

/// `(file name, YAML)` per CRD, as checked in under `crds/`.
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|c| {
            let name = format!("{}.yaml", c.spec.names.plural);
            (name, serde_yaml::to_string(&c).unwrap_or_default())
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream.
pub fn crd_yaml() -> String {
    crd_files().into_iter().map(|(_, y)| format!("---\n{y}")).collect()
}

#[cfg(test)]
mod tests;
