//! The mutating webhook's patch: `crypto.s390x.dev/prepared-<uuid>: "true"` in the VMIM's
//! `addedNodeSelector` for each passthrough of the VMI, so that virt-controller only places the
//! target pod on a node holding the prepared mdev (architecture.md, "Node label"). Idempotent (a
//! key already present is left alone) and never overrides a user's own value of that key (the
//! validating webhook refuses such a VMIM with a message instead).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};

use super::decide::PREPARED_VALUE;
use crate::api::{CryptoPassthrough, prepared_label};

/// The pairs to add: our label of each passthrough whose key `added` does not have yet.
pub fn additions(
    added: Option<&BTreeMap<String, String>>,
    passthroughs: &[&CryptoPassthrough],
) -> BTreeMap<String, String> {
    passthroughs
        .iter()
        .filter_map(|p| p.effective_uuid())
        .map(|u| prepared_label(&u))
        .filter(|k| added.is_none_or(|a| !a.contains_key(k)))
        .map(|k| (k, PREPARED_VALUE.to_string()))
        .collect()
}

/// The JSON patch (RFC 6902) adding `pairs` to `spec.addedNodeSelector`; the whole map when the
/// VMIM has none. Empty when there is nothing to add.
pub fn patch(added: Option<&BTreeMap<String, String>>, pairs: &BTreeMap<String, String>) -> Patch {
    if pairs.is_empty() {
        return Patch(Vec::new());
    }
    let add = |path: PointerBuf, value: serde_json::Value| PatchOperation::Add(AddOperation { path, value });
    match added {
        None => Patch(vec![add(PointerBuf::from_tokens(["spec", "addedNodeSelector"]), serde_json::json!(pairs))]),
        Some(_) => Patch(
            pairs
                .iter()
                .map(|(k, v)| {
                    add(PointerBuf::from_tokens(["spec", "addedNodeSelector", k.as_str()]), serde_json::json!(v))
                })
                .collect(),
        ),
    }
}
