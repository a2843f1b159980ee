//! The validating webhook's decisions and their messages (architecture.md, "Webhooks").

use super::fixture::*;
use crate::api::Condition;
use crate::webhook::decide::{Decision, Refusal, target_selector};
use crate::webhook::message::MAX_NODES;

fn allowed_targets(c: &Case) -> Vec<String> {
    match c.decide() {
        Decision::Allow { targets } => targets,
        other => panic!("expected an admission, got {other:?}"),
    }
}

#[test]
fn a_vmi_that_no_passthrough_names_is_not_ours() {
    assert_eq!(Case::new(vec![]).decide(), Decision::NotOurs);
}

#[test]
fn a_prepared_equivalent_standby_matching_the_selector_admits_the_migration() {
    assert_eq!(allowed_targets(&Case::new(vec![passthrough("p1", "vm1")])), vec!["b"]);
}

#[test]
fn compatible_counts_as_a_target_and_unknown_never_does() {
    let pt = with_nodes(
        passthrough("p1", "vm1"),
        vec![
            node("a", "Active", true, "Equivalent", vec![]),
            node("b", "Standby", true, "Compatible", vec![]),
            node("c", "Standby", true, "Unknown", vec![]),
        ],
    );
    let mut c = Case::new(vec![pt]);
    c.labels.get_mut("c").unwrap().insert(key(), "true".into());
    assert_eq!(allowed_targets(&c), vec!["b"]);
}

#[test]
fn disabled_migration_is_refused_naming_the_passthrough() {
    let mut pt = passthrough("p1", "vm1");
    pt.spec.migration.enabled = false;
    assert_eq!(
        Case::new(vec![pt]).denied(),
        "CryptoPassthrough p1: migration is disabled (spec.migration.enabled: false)"
    );
}

#[test]
fn a_passthrough_that_is_not_ready_is_refused_with_the_reason_of_its_condition() {
    let mut pt = passthrough("p1", "vm1");
    pt.status.as_mut().unwrap().conditions =
        vec![Condition::new("Ready", false, "NotSynced", "waiting for the agent of the active node a to sync mdev")];
    assert_eq!(
        Case::new(vec![pt]).denied(),
        "CryptoPassthrough p1 is not Ready (NotSynced: waiting for the agent of the active node a to sync mdev)"
    );
    let mut pt = passthrough("p1", "vm1");
    pt.status = None;
    assert_eq!(
        Case::new(vec![pt]).denied(),
        "CryptoPassthrough p1 is not Ready (NoStatus: the controller has not reported on it yet)"
    );
}

#[test]
fn an_active_node_whose_kernel_cannot_migrate_is_refused_in_the_kernels_words() {
    let words = "source host a cannot migrate vfio-ap guests: its kernel lacks vfio-ap migration \
                 (`migratable` missing from /sys/devices/vfio_ap/matrix/features)";
    let pt = with_nodes(
        passthrough("p1", "vm1"),
        vec![
            node("a", "Active", true, "Incompatible", vec![reason("KernelCannotMigrate", None, words)]),
            node("b", "Standby", true, "Incompatible", vec![reason("KernelCannotMigrate", None, words)]),
        ],
    );
    assert_eq!(Case::new(vec![pt]).denied(), format!("CryptoPassthrough p1: active node a: {words}"));
}

#[test]
fn no_prepared_compatible_target_names_each_candidate_with_its_first_reason() {
    let facility = "Facility bit 3 set in source queue 01.0005; Facility bit 3 not set in target queue 01.0005";
    let pt = with_nodes(
        passthrough("p1", "vm1"),
        vec![
            node("a", "Active", true, "Equivalent", vec![]),
            node(
                "b",
                "Candidate",
                false,
                "Incompatible",
                vec![
                    reason("FacilityDiffers", Some("01.0005"), facility),
                    reason(
                        "ApTypeNotCompatible",
                        Some("01.0005"),
                        "AP type of source (0e) not compatible with target (0d)",
                    ),
                ],
            ),
            node("c", "Standby", false, "Compatible", vec![]),
        ],
    );
    assert_eq!(
        Case::new(vec![pt]).denied(),
        format!(
            "CryptoPassthrough p1: no prepared compatible target for a VM on a: b Incompatible: {facility} (+1 more); \
             c not prepared yet"
        )
    );
}

#[test]
fn a_passthrough_without_other_nodes_says_there_is_no_candidate() {
    let pt = with_nodes(passthrough("p1", "vm1"), vec![node("a", "Active", true, "Equivalent", vec![])]);
    assert_eq!(
        Case::new(vec![pt]).denied(),
        "CryptoPassthrough p1: no node besides a is a candidate (placement.nodeSelector, agents)"
    );
}

#[test]
fn the_vmims_added_node_selector_narrows_the_targets() {
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.added.insert("kubernetes.io/hostname".into(), "c".into());
    assert_eq!(
        c.denied(),
        "CryptoPassthrough p1: no prepared compatible target for a VM on a: b has kubernetes.io/hostname=b, not c"
    );
    c.added.insert("kubernetes.io/hostname".into(), "b".into());
    assert_eq!(allowed_targets(&c), vec!["b"]);
}

#[test]
fn the_vms_own_node_selector_counts_and_wins_on_a_clash() {
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.vmi_selector = sel(&[("zone", "z1")]);
    assert_eq!(c.denied(), "CryptoPassthrough p1: no prepared compatible target for a VM on a: b lacks zone=z1");
    c.labels.get_mut("b").unwrap().insert("zone".into(), "z1".into());
    c.added.insert("zone".into(), "z2".into());
    assert_eq!(allowed_targets(&c), vec!["b"], "the VMI's zone=z1 wins over the VMIM's zone=z2");
    assert_eq!(target_selector(&sel(&[("k", "added")]), &sel(&[("k", "vmi")])), sel(&[("k", "vmi")]));
}

#[test]
fn a_user_selector_with_our_key_and_another_value_is_refused_first() {
    let mut pt = passthrough("p1", "vm1");
    pt.spec.migration.enabled = false;
    let mut c = Case::new(vec![pt]);
    c.added = sel(&[(&key(), "false")]);
    assert_eq!(
        c.denied(),
        format!(
            "CryptoPassthrough p1: addedNodeSelector sets {k}=false; cryptopass steers the target with {k}=true, \
             leave that key out",
            k = key()
        )
    );
    assert!(matches!(c.decide(), Decision::Deny(d) if matches!(d.refusal, Refusal::SelectorConflict { .. })));
}

#[test]
fn a_selector_without_our_label_is_refused_because_the_target_would_not_be_steered() {
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.added.clear();
    assert_eq!(
        c.denied(),
        format!(
            "CryptoPassthrough p1: the target is not restricted to prepared nodes ({}=true is not in the selector: \
             is webhook vmim.mutate.crypto.s390x.dev registered?)",
            key()
        )
    );
    // The VM's own selector on the prepared label steers as well (the VM was placed that way).
    c.vmi_selector = steered();
    assert_eq!(allowed_targets(&c), vec!["b"]);
}

#[test]
fn a_prepared_standby_that_does_not_carry_the_label_yet_is_not_a_target() {
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.labels.get_mut("b").unwrap().remove(&key());
    assert_eq!(
        c.denied(),
        format!("CryptoPassthrough p1: no prepared compatible target for a VM on a: b lacks {}=true", key())
    );
    c.labels.remove("b");
    assert_eq!(c.denied(), "CryptoPassthrough p1: no prepared compatible target for a VM on a: b no such Node");
}

#[test]
fn a_vmi_that_is_missing_or_not_running_or_ahead_of_the_status_is_refused() {
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.vmi_exists = false;
    assert_eq!(c.denied(), "CryptoPassthrough p1: VMI vm1 not found");
    c.vmi_exists = true;
    c.vmi_node = None;
    assert_eq!(c.denied(), "CryptoPassthrough p1: VMI vm1 does not run on a node yet");
    c.vmi_node = Some("b".into());
    assert_eq!(
        c.denied(),
        "CryptoPassthrough p1: VMI vm1 runs on b but the status has active node a; retry once the controller has caught up"
    );
    let mut pt = passthrough("p1", "vm1");
    pt.status.as_mut().unwrap().active_node = None;
    let mut c = Case::new(vec![pt]);
    c.vmi_node = Some("a".into());
    assert_eq!(
        c.denied(),
        "CryptoPassthrough p1: VMI vm1 runs on a but the status has no active node; retry once the controller has caught up"
    );
}

#[test]
fn an_evacuation_gets_the_same_rules_and_says_that_the_drain_waits() {
    let mut pt = passthrough("p1", "vm1");
    pt.spec.migration.enabled = false;
    let mut c = Case::new(vec![pt]);
    c.evacuation = Some("a".into());
    assert_eq!(
        c.denied(),
        "evacuation of node a waits: CryptoPassthrough p1: migration is disabled (spec.migration.enabled: false)"
    );
    let mut c = Case::new(vec![passthrough("p1", "vm1")]);
    c.evacuation = Some("a".into());
    assert_eq!(allowed_targets(&c), vec!["b"]);
}

#[test]
fn a_long_list_of_candidates_stays_short_enough_to_read() {
    let long = "x".repeat(400);
    let mut nodes = vec![node("a", "Active", true, "Equivalent", vec![])];
    for n in ["b", "c", "d", "e", "f"] {
        nodes.push(node(n, "Candidate", false, "Incompatible", vec![reason("FacilityDiffers", None, &long); 3]));
    }
    let msg = Case::new(vec![with_nodes(passthrough("p1", "vm1"), nodes)]).denied();
    assert!(msg.ends_with("; +2 more (kubectl get cpt p1 -o yaml)"), "{msg}");
    assert_eq!(msg.matches(" Incompatible: ").count(), MAX_NODES);
    assert!(msg.chars().count() < 700, "{} characters: {msg}", msg.chars().count());
}

#[test]
fn two_passthroughs_of_one_vm_need_a_target_in_common() {
    let uuid2_key = crate::api::prepared_label(UUID2);
    let mut p2 = with_nodes(
        passthrough("p2", "vm1"),
        vec![node("a", "Active", true, "Equivalent", vec![]), node("c", "Standby", true, "Equivalent", vec![])],
    );
    p2.spec.uuid = Some(UUID2.into());
    let mut c = Case::new(vec![p2.clone(), passthrough("p1", "vm1")]);
    c.added.insert(uuid2_key.clone(), "true".into());
    for n in ["a", "c"] {
        c.labels.get_mut(n).unwrap().insert(uuid2_key.clone(), "true".into());
    }
    // c lacks p1's label, b lacks p2's: each passthrough has no target under the joint selector.
    assert_eq!(
        c.denied(),
        format!("CryptoPassthrough p1: no prepared compatible target for a VM on a: b lacks {uuid2_key}=true")
    );
    c.labels.get_mut("b").unwrap().insert(uuid2_key.clone(), "true".into());
    let p2 = with_nodes(
        p2,
        vec![node("a", "Active", true, "Equivalent", vec![]), node("b", "Standby", true, "Equivalent", vec![])],
    );
    c.pts = vec![p2, passthrough("p1", "vm1")];
    assert_eq!(allowed_targets(&c), vec!["b"]);
}

#[test]
fn two_passthroughs_whose_targets_differ_are_refused_with_the_targets_of_each() {
    let mut p2 = with_nodes(
        passthrough("p2", "vm1"),
        vec![node("a", "Active", true, "Equivalent", vec![]), node("c", "Standby", true, "Equivalent", vec![])],
    );
    p2.spec.uuid = Some(UUID2.into());
    let k2 = crate::api::prepared_label(UUID2);
    let mut c = Case::new(vec![passthrough("p1", "vm1"), p2]);
    c.added.insert(k2.clone(), "true".into());
    for n in ["a", "b", "c"] {
        c.labels.get_mut(n).unwrap().insert(key(), "true".into());
        c.labels.get_mut(n).unwrap().insert(k2.clone(), "true".into());
    }
    assert_eq!(c.denied(), "the CryptoPassthroughs of this VMI have no target node in common: p1 → b; p2 → c");
}
