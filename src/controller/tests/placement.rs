use super::*;
use crate::controller::judge::Class;

#[test]
fn the_active_node_is_where_the_running_vmi_is_and_there_is_none_before() {
    let pt = passthrough("p");
    let w = World::new().node("a", cex8().status()).node("b", cex8().status());
    assert_eq!(w.plan(&pt).placement.active, None);
    let mut w = w.running_on("ns", "vm", "b");
    assert_eq!(w.plan(&pt).placement.active.as_deref(), Some("b"));
    assert_eq!(w.plan(&pt).node("b").role, "Active");
    w.cluster.vmis.values_mut().for_each(|v| v.phase = Some("Scheduled".into()));
    assert_eq!(w.plan(&pt).placement.active, None, "only a Running VMI has an active node");
}

#[test]
fn standby_prefers_equivalent_over_compatible_and_says_which() {
    let pt = passthrough("p");
    // a and c: CEX7 (raw 13); b: CEX8 (raw 14) — a → b passes (newer target), b → a does not.
    let cex7 = || host(Kernel::V1).card(1, 13, CCA).card(2, 13, CCA);
    let w = World::new()
        .node("a", cex7().status())
        .node("b", cex8().status())
        .node("c", cex7().status())
        .running_on("ns", "vm", "a");
    let o = w.plan(&pt);
    assert_eq!(o.node("b").verdict, "Compatible");
    assert_eq!(o.node("c").verdict, "Equivalent");
    assert_eq!(o.desired_nodes(), vec!["a", "c"], "one standby: the equivalent one");
    assert_eq!(o.node("c").role, "Standby");
    assert_eq!(o.node("b").role, "Candidate");
    assert_eq!(o.status.compatible_nodes, 2);
    // With two standbys the compatible one is taken too.
    let mut pt2 = pt.clone();
    pt2.spec.placement.standby = Standby::Count(2);
    assert_eq!(w.plan(&pt2).desired_nodes(), vec!["a", "b", "c"]);
}

#[test]
fn an_incompatible_node_gets_kernel_worded_reasons_and_is_never_prepared() {
    let pt = all_standby(passthrough("p"));
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("bad", host(Kernel::V1).card(1, 14, ACCEL).card(2, 14, CCA).status())
        .running_on("ns", "vm", "a");
    let o = w.plan(&pt);
    let bad = o.node("bad");
    assert_eq!(bad.verdict, "Incompatible");
    assert!(!bad.prepared);
    assert!(!o.placement.desired.contains_key("bad"), "standby All still never prepares an incompatible node");
    assert!(!o.placement.labeled.contains("bad"));
    let r = bad.reasons.iter().find(|r| r.code == "FacilityDiffers").expect("a facility reason");
    assert_eq!(r.apqn.as_deref(), Some("01.0005"));
    assert!(r.message.contains("01.0005"), "the kernel names the queue: {}", r.message);
    assert_eq!(o.status.incompatible_nodes, 1);
    // Before the VM runs too.
    let o = World::new()
        .node("a", cex8().status())
        .node("bad", host(Kernel::V1).card(1, 14, ACCEL).card(2, 14, CCA).status())
        .plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["a"]);
    assert_eq!(o.node("bad").verdict, "Incompatible");
}

#[test]
fn a_kernel_that_cannot_migrate_is_incompatible_with_kernel_cannot_migrate() {
    let pt = passthrough("p");
    let old = host(Kernel::CannotMigrate).card(1, 14, CCA).card(2, 14, CCA);
    let o = World::new().node("a", cex8().status()).node("old", old.status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.node("old").verdict, "Incompatible");
    assert_eq!(o.codes("old"), vec!["KernelCannotMigrate"]);
    assert!(o.node("old").reasons[0].message.contains("cannot migrate vfio-ap guests"));
    assert_eq!(o.desired_nodes(), vec!["a"]);
}

#[test]
fn v1_and_latest_nodes_are_never_compatible() {
    let pt = passthrough("p");
    let latest = host(Kernel::Latest).card(1, 14, CCA).card(2, 14, CCA);
    let o = World::new().node("a", cex8().status()).node("l", latest.status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.node("l").verdict, "Incompatible");
    assert!(o.codes("l").contains(&"KernelRulesDiffer"), "{:?}", o.codes("l"));
}

#[test]
fn an_unknown_profile_node_passing_both_rule_sets_is_prepared_as_unknown_and_never_counts() {
    let pt = passthrough("p");
    let fresh = host(Kernel::Unknown).card(1, 14, CCA).card(2, 14, CCA);
    let w = World::new().node("a", cex8().status()).node("u", fresh.status()).running_on("ns", "vm", "a");
    let o = w.plan(&pt);
    assert_eq!(o.node("u").verdict, "Unknown");
    assert!(o.node("u").reasons.is_empty());
    assert_eq!(o.desired_nodes(), vec!["a", "u"], "may be prepared");
    assert!(!o.placement.labeled.contains("u"), "an Unknown standby carries no label");
    assert_eq!(o.condition("MigrationReady").status, "False", "Unknown never counts toward MigrationReady");
    assert_eq!(o.status.compatible_nodes, 0);
    // Our mdev reveals the profile (here v1: it has `migratable`): now Equivalent, labeled, counted.
    let o = w.prepared(&["a", "u"], &pt).plan(&pt);
    assert_eq!(o.node("u").verdict, "Equivalent");
    assert!(o.placement.labeled.contains("u"));
    assert_eq!(o.condition("MigrationReady").status, "True");
    // An unknown node whose queues fail either rule set is incompatible.
    let other = host(Kernel::Unknown).card(1, 14, ACCEL).card(2, 14, CCA);
    let o = World::new().node("a", cex8().status()).node("u", other.status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.node("u").verdict, "Incompatible");
}

#[test]
fn a_stale_agent_makes_its_node_no_candidate_and_the_reconcile_wakes_when_the_next_lease_goes_stale() {
    let pt = all_standby(passthrough("p"));
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .renewed_ago("b", 41)
        .renewed_ago("c", 30)
        .running_on("ns", "vm", "a");
    let o = w.plan(&pt);
    assert_eq!(o.node("b").verdict, "Unknown");
    assert_eq!(o.codes("b"), vec!["AgentStale"]);
    assert_eq!(o.desired_nodes(), vec!["a", "c"]);
    // c was renewed 30 s ago: stale in 10 s (plus a second of slack).
    assert_eq!(o.placement.requeue_after, Some(std::time::Duration::from_secs(11)));
}

#[test]
fn only_nodes_matching_the_node_selector_are_candidates() {
    let mut pt = all_standby(passthrough("p"));
    pt.spec.placement.node_selector.insert("zone".into(), "z1".into());
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .label("a", "zone", "z1")
        .label("b", "zone", "z1");
    let o = w.plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["a", "b"]);
    assert!(o.status.nodes.iter().all(|n| n.name != "c"), "c is not listed");
}

#[test]
fn before_the_vm_runs_one_plus_standby_mutually_equivalent_nodes_are_prepared() {
    let pt = passthrough("p");
    // "a" sorts first but only "b" and "c" are equivalent to each other.
    let w = World::new()
        .node("a", host(Kernel::V1).card(1, 13, CCA).card(2, 14, CCA).status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .node("d", cex8().status());
    let o = w.plan(&pt);
    assert_eq!(o.placement.reference.as_deref(), Some("b"));
    assert_eq!(o.desired_nodes(), vec!["b", "c"]);
    assert!(o.status.nodes.iter().filter(|n| o.placement.desired.contains_key(&n.name)).all(|n| n.role == "Standby"));
    assert!(o.labeled().is_empty(), "nothing is labeled before the agents prepared it");
    // Nodes that already hold our entry are kept (no needless moves).
    let o = w.entry("c", &pt).entry("d", &pt).plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["c", "d"]);
    // All: every preparable candidate.
    let o = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .plan(&all_standby(pt.clone()));
    assert_eq!(o.desired_nodes(), vec!["a", "b", "c"]);
}

#[test]
fn the_prepared_label_goes_to_prepared_nodes_before_and_to_the_active_node_and_compatible_standbys_after() {
    let pt = all_standby(passthrough("p"));
    let fresh = host(Kernel::Unknown).card(1, 14, CCA).card(2, 14, CCA);
    let w = World::new().node("a", cex8().status()).node("b", cex8().status()).node("u", fresh.status());
    let before = w.prepared(&["a", "b"], &pt);
    assert_eq!(before.plan(&pt).labeled(), vec!["a", "b"], "prepared nodes, and only those");
    let after = before.running_on("ns", "vm", "a");
    assert_eq!(after.plan(&pt).labeled(), vec!["a", "b"], "u is not prepared");
    let bad = World::new()
        .node("a", cex8().status())
        .node("x", host(Kernel::V1).card(1, 14, ACCEL).card(2, 14, CCA).status())
        .prepared(&["a", "x"], &pt)
        .running_on("ns", "vm", "a");
    assert_eq!(bad.plan(&pt).labeled(), vec!["a"], "a prepared but incompatible node carries no label");
}

#[test]
fn verdicts_describe_the_planned_state_not_the_host_as_it_is_now() {
    // Fresh hosts: queues bound to the host driver, masks all ones, no mdev of ours anywhere.
    let pt = passthrough("p");
    let o = World::new().node("a", cex8().status()).node("b", cex8().status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.node("b").verdict, "Equivalent", "{:?}", o.node("b").reasons);
    assert_eq!(o.node("a").verdict, "Equivalent", "the active node judged against itself");
}

#[test]
fn a_queue_outside_the_targets_configuration_is_reported_in_the_kernels_words() {
    let mut pt = passthrough("p");
    pt.spec.domains = vec![5, 6];
    let small = cex8().domains(&[5]);
    let o = World::new().node("a", cex8().status()).node("b", small.status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.node("b").verdict, "Incompatible");
    let codes = o.codes("b");
    assert!(codes.contains(&"ConfigSizeLarger") || codes.contains(&"QueueNotAssigned"), "{codes:?}");
    let r = o.node("b").reasons.iter().find(|r| r.code == "QueueNotAssigned").expect("missing queue");
    assert_eq!(r.apqn.as_deref(), Some("01.0006"));
}

#[test]
fn migration_disabled_keeps_only_the_active_node() {
    let mut pt = passthrough("p");
    pt.spec.migration.enabled = false;
    let o = World::new().node("a", cex8().status()).node("b", cex8().status()).running_on("ns", "vm", "a").plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["a"]);
    assert!(!o.placement.desired["a"].migratable);
    assert_eq!(o.condition("MigrationReady").reason, "MigrationDisabled");
}

#[test]
fn desired_entries_name_the_passthrough_and_carry_role_and_verdict() {
    let pt = passthrough("p");
    let o = World::new().node("a", cex8().status()).node("b", cex8().status()).running_on("ns", "vm", "a").plan(&pt);
    let a = &o.placement.desired["a"];
    assert_eq!(a.uuid, UUID);
    let r = a.passthrough.as_ref().expect("ref");
    assert_eq!((r.namespace.as_str(), r.name.as_str(), r.uid.as_str()), ("ns", "p", "uid-p"));
    assert_eq!(
        (a.adapters.as_slice(), a.domains.as_slice(), a.control_domains.as_slice()),
        (&[1u8, 2][..], &[5u8][..], &[5u8][..])
    );
    assert!(a.migratable);
    assert_eq!(a.role.as_deref(), Some("Active"));
    assert_eq!(o.placement.desired["b"].role.as_deref(), Some("Standby"));
    assert_eq!(o.placement.desired["b"].verdict.as_deref(), Some("Equivalent"));
}

#[test]
fn the_default_uuid_is_the_objects_uid() {
    let mut pt = passthrough("p");
    pt.spec.uuid = None;
    pt.metadata.uid = Some("AAAAAAAA-0000-4000-8000-000000000001".into());
    let o = World::new().node("a", cex8().status()).plan(&pt);
    assert_eq!(o.status.uuid.as_deref(), Some("aaaaaaaa-0000-4000-8000-000000000001"));
    assert_eq!(o.placement.desired["a"].uuid, "aaaaaaaa-0000-4000-8000-000000000001");
}

#[test]
fn deleting_withdraws_every_entry_and_label_and_names_the_nodes_still_holding_the_mdev() {
    let mut pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .prepared(&["a", "b"], &pt)
        .running_on("ns", "vm", "a");
    pt.metadata.deletion_timestamp = Some(Time(now()));
    let o = w.plan(&pt);
    assert!(o.placement.desired.is_empty());
    assert!(o.placement.labeled.is_empty());
    assert_eq!(o.placement.holding.iter().map(String::as_str).collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(o.condition("Ready").reason, "Releasing");
    assert!(World::new().node("a", cex8().status()).plan(&pt).placement.holding.is_empty());
}

#[test]
fn every_candidate_gets_exactly_one_verdict_word() {
    let pt = all_standby(passthrough("p"));
    let o = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("old", host(Kernel::CannotMigrate).card(1, 14, CCA).card(2, 14, CCA).status())
        .node("u", host(Kernel::Unknown).card(1, 14, CCA).card(2, 14, CCA).status())
        .running_on("ns", "vm", "a")
        .plan(&pt);
    for n in &o.status.nodes {
        assert!(Class::ALL.iter().any(|c| c.as_str() == n.verdict), "{}", n.verdict);
    }
    assert_eq!(o.verdict_counts["Equivalent"], 2);
    assert_eq!(o.verdict_counts["Incompatible"], 1);
    assert_eq!(o.verdict_counts["Unknown"], 1);
    assert_eq!(o.verdict_counts["Compatible"], 0);
    assert_eq!(
        o.incompatible_apqns[&("old".to_string(), "KernelCannotMigrate".to_string())],
        2,
        "every APQN of the matrix"
    );
}

#[test]
fn the_first_placement_waits_for_agents_that_have_not_reported_an_inventory_yet() {
    let pt = passthrough("p");
    // z15-like "old" reported first; "a" and "b" (equivalent to each other) are only starting.
    let old = host(Kernel::V1).card(1, 13, CCA).card(2, 13, CCA);
    let w = || World::new().node("old", old.status()).node("a", cex8().status()).node("b", cex8().status());
    let starting = w().cnode("a", |c| c.status = None).cnode("b", |c| c.status = None);
    let o = starting.plan(&pt);
    assert!(o.placement.desired.is_empty(), "nothing is prepared on partial knowledge");
    assert_eq!(o.condition("Ready").reason, "Preparing");
    assert!(o.condition("Ready").message.contains("a, b"), "{}", o.condition("Ready").message);
    assert!(o.placement.requeue_after.is_some());
    let o = w().plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["a", "b"]);
    // A CryptoNode without an inventory for longer than the stale bound no longer holds it up.
    let mut late = World::new().node("old", old.status()).node("a", cex8().status());
    late = late.cnode("a", |c| {
        c.status = None;
        c.metadata.creation_timestamp = Some(Time(now() - SignedDuration::from_secs(60)));
    });
    assert_eq!(late.plan(&pt).desired_nodes(), vec!["old"]);
}
