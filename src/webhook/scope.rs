//! The webhooks' `matchConditions` (architecture.md, "Webhooks"): they send us only the VMIMs of
//! VMIs that a CryptoPassthrough names, so that `failurePolicy: Fail` refuses those when every
//! replica is down and never blocks any other VMIM. The leader keeps the map literal current.
//!
//! An entry is the passthrough's `namespace/vmName`, present for as long as the passthrough
//! object exists: it exists before its first mdev is prepared and, held by its finalizer, until
//! after its last one is released.

use std::collections::BTreeSet;

use crate::api::CryptoPassthrough;

/// The name of our match condition in both configurations.
pub const CONDITION: &str = "vmi-uses-a-cryptopassthrough";
/// As shipped: nothing is sent to us.
pub const NOTHING: &str = "false";

/// `namespace/vmName` of every passthrough.
pub fn entries<'a>(passthroughs: impl IntoIterator<Item = &'a CryptoPassthrough>) -> BTreeSet<String> {
    passthroughs
        .into_iter()
        .filter_map(|p| Some(format!("{}/{}", p.metadata.namespace.as_deref()?, p.spec.vm_name)))
        .collect()
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The CEL expression that matches the VMIMs of exactly these `namespace/vmi` entries.
pub fn expression(entries: &BTreeSet<String>) -> String {
    if entries.is_empty() {
        return NOTHING.to_string();
    }
    let map: Vec<String> = entries.iter().map(|e| format!("{}: true", quoted(e))).collect();
    format!(
        "has(object.spec.vmiName) && (object.metadata.namespace + '/' + object.spec.vmiName) in {{{}}}",
        map.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_passthrough_sends_nothing_and_entries_form_a_map_literal() {
        assert_eq!(expression(&BTreeSet::new()), "false");
        let e: BTreeSet<String> = ["ns1/vm-a".to_string(), "ns2/vm-b".to_string()].into();
        assert_eq!(
            expression(&e),
            "has(object.spec.vmiName) && (object.metadata.namespace + '/' + object.spec.vmiName) in \
             {'ns1/vm-a': true, 'ns2/vm-b': true}"
        );
        let odd: BTreeSet<String> = ["ns/it's".to_string()].into();
        assert!(expression(&odd).ends_with(r"in {'ns/it\'s': true}"));
    }
}
