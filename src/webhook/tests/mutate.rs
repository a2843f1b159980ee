//! The mutating webhook's patch: exactly our pair, idempotent, never over a user's own key.

use std::collections::BTreeMap;

use serde_json::json;

use super::fixture::*;
use crate::webhook::mutate::{additions, patch};

fn applied(doc: serde_json::Value, added: Option<&BTreeMap<String, String>>) -> serde_json::Value {
    let pt = passthrough("p1", "vm1");
    let p = patch(added, &additions(added, &[&pt]));
    let mut doc = doc;
    json_patch::patch(&mut doc, &p).unwrap();
    doc
}

#[test]
fn a_vmim_without_added_node_selector_gets_one_holding_only_our_pair() {
    let pt = passthrough("p1", "vm1");
    let p = patch(None, &additions(None, &[&pt]));
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!([{"op": "add", "path": "/spec/addedNodeSelector", "value": {key(): "true"}}])
    );
    let doc = applied(json!({"spec": {"vmiName": "vm1"}}), None);
    assert_eq!(doc, json!({"spec": {"vmiName": "vm1", "addedNodeSelector": {key(): "true"}}}));
}

#[test]
fn our_pair_is_added_beside_the_users_keys_with_the_slash_escaped() {
    let user = sel(&[("zone", "z1")]);
    let pt = passthrough("p1", "vm1");
    let p = patch(Some(&user), &additions(Some(&user), &[&pt]));
    let path = format!("/spec/addedNodeSelector/crypto.s390x.dev~1prepared-{UUID}");
    assert_eq!(serde_json::to_value(&p).unwrap(), json!([{"op": "add", "path": path, "value": "true"}]));
    let doc = applied(json!({"spec": {"vmiName": "vm1", "addedNodeSelector": {"zone": "z1"}}}), Some(&user));
    assert_eq!(doc["spec"]["addedNodeSelector"], json!({"zone": "z1", key(): "true"}));
}

#[test]
fn the_patch_is_idempotent_and_never_overrides_a_users_value() {
    let pt = passthrough("p1", "vm1");
    assert!(additions(Some(&steered()), &[&pt]).is_empty(), "already there: nothing to add");
    let user = sel(&[(&key(), "false")]);
    assert!(additions(Some(&user), &[&pt]).is_empty(), "the user's value stays (the validating webhook refuses it)");
    assert!(patch(Some(&user), &BTreeMap::new()).0.is_empty());
}

#[test]
fn a_vmi_without_passthrough_gets_no_patch_and_two_passthroughs_get_both_pairs() {
    assert!(additions(None, &[]).is_empty());
    let p1 = passthrough("p1", "vm1");
    let mut p2 = passthrough("p2", "vm1");
    p2.spec.uuid = Some(UUID2.into());
    let pairs = additions(None, &[&p1, &p2]);
    assert_eq!(pairs, sel(&[(&key(), "true"), (&crate::api::prepared_label(UUID2), "true")]));
}

#[test]
fn without_spec_uuid_the_objects_uid_is_the_uuid() {
    let mut pt = passthrough("p1", "vm1");
    pt.spec.uuid = None;
    let pairs = additions(None, &[&pt]);
    assert_eq!(pairs, sel(&[(&crate::api::prepared_label("ffffffff-0000-4000-8000-000000000000"), "true")]));
}
