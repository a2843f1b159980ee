use super::*;
use crate::api::node::MdevError;

#[test]
fn ready_needs_the_mdev_synced_on_the_active_node() {
    let pt = passthrough("p");
    let w = World::new().node("a", cex8().status()).node("b", cex8().status()).running_on("ns", "vm", "a");
    assert_eq!(w.plan(&pt).condition("Ready").reason, "NotSynced");
    let w = w.entry("a", &pt).mdev("a", &pt, false);
    assert_eq!(w.plan(&pt).condition("Ready").status, "False", "reported but not synced");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .prepared(&["b"], &pt)
        .running_on("ns", "vm", "a");
    assert_eq!(w.plan(&pt).condition("Ready").status, "False", "a prepared standby is not enough once the VM runs");
    let w = w.prepared(&["a"], &pt);
    let r = w.plan(&pt);
    assert_eq!((r.condition("Ready").status.as_str(), r.condition("Ready").reason.as_str()), ("True", "Synced"));
}

#[test]
fn before_the_vm_runs_ready_needs_one_prepared_node() {
    let pt = passthrough("p");
    let w = World::new().node("a", cex8().status()).node("b", cex8().status());
    assert_eq!(w.plan(&pt).condition("Ready").reason, "Preparing");
    let o = w.prepared(&["b"], &pt).plan(&pt);
    assert_eq!(o.condition("Ready").status, "True");
    assert_eq!(o.status.prepared_nodes, 1);
    assert_eq!(World::new().plan(&pt).condition("Ready").reason, "NoCandidates");
}

#[test]
fn migration_ready_needs_a_prepared_compatible_standby() {
    let pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .running_on("ns", "vm", "a")
        .prepared(&["a"], &pt);
    let o = w.plan(&pt);
    assert_eq!(o.condition("MigrationReady").status, "False");
    assert!(
        o.condition("MigrationReady").message.contains("b: Equivalent (not prepared yet)"),
        "{}",
        o.condition("MigrationReady").message
    );
    let o = w.prepared(&["b"], &pt).plan(&pt);
    let c = o.condition("MigrationReady");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "StandbyPrepared"));
    assert!(c.message.contains("b (Equivalent)"), "says which kind: {}", c.message);
}

#[test]
fn a_failed_preparation_is_a_reason_in_the_agents_words_degrades_and_keeps_its_entry() {
    let pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .running_on("ns", "vm", "a")
        .prepared(&["a"], &pt);
    let w = w.entry("b", &pt).mdev("b", &pt, false).cnode("b", |c| {
        if let Some(m) = c.status.as_mut().and_then(|s| s.mdevs.iter_mut().find(|m| m.uuid == UUID)) {
            m.last_error = Some(MdevError {
                reason: "ForeignMdevHoldsQueue".into(),
                errno: Some("EADDRINUSE".into()),
                message: "queue 01.0005 is held by mdev 1234".into(),
            });
        }
    });
    let o = w.plan(&pt);
    assert_eq!(o.node("b").verdict, "Incompatible");
    assert_eq!(o.node("b").reasons[0].code, "MdevMissing");
    assert!(o.node("b").reasons[0].message.contains("EADDRINUSE"));
    let d = o.condition("Degraded");
    assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "NodeFailure"));
    assert!(d.message.contains("node b: ForeignMdevHoldsQueue (EADDRINUSE)"), "{}", d.message);
    assert!(o.placement.desired.contains_key("b"), "the agent keeps retrying");
    assert!(o.placement.desired.contains_key("c"), "and another standby is prepared meanwhile");
}

#[test]
fn a_lost_prepared_mdev_degrades() {
    let pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .running_on("ns", "vm", "a")
        .prepared(&["a", "b"], &pt);
    let mut pt2 = pt.clone();
    pt2.status = Some(w.plan(&pt).status);
    let gone = w.cnode("b", |c| {
        if let Some(s) = c.status.as_mut() {
            s.mdevs.retain(|m| m.uuid != UUID);
        }
    });
    let o = gone.plan(&pt2);
    let d = o.condition("Degraded");
    assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "MdevLost"));
    assert!(d.message.contains('b'));
}

#[test]
fn kubevirts_live_migratable_is_mirrored_apart_from_our_verdicts() {
    let pt = passthrough("p");
    let mut w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .running_on("ns", "vm", "a")
        .prepared(&["a", "b"], &pt);
    if let Some(v) = w.cluster.vmis.values_mut().next() {
        v.live_migratable = Some(crate::api::Condition::new(
            "LiveMigratable",
            false,
            "HostDeviceNotLiveMigratable",
            "host devices are not live migratable",
        ));
    }
    let o = w.plan(&pt);
    let c = o.condition("KubeVirtLiveMigratable");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "HostDeviceNotLiveMigratable"));
    assert!(c.message.contains("host devices are not live migratable"), "KubeVirt's words kept: {}", c.message);
    assert!(
        c.message.contains("KubeVirt's own limit") && c.message.contains("not a cryptopass verdict"),
        "{}",
        c.message
    );
    assert_eq!(o.condition("MigrationReady").status, "True", "our verdict stays ours");
    assert_eq!(World::new().plan(&pt).condition("KubeVirtLiveMigratable").status, "Unknown");
}

#[test]
fn conditions_carry_the_generation_and_keep_their_transition_time_while_unchanged() {
    let mut pt = passthrough("p");
    let w = World::new().node("a", cex8().status());
    let first = w.plan(&pt);
    assert_eq!(first.status.observed_generation, Some(1));
    assert!(first.status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    pt.status = Some(first.status.clone());
    let mut later = w.clone_with_now(60);
    let again = later.plan(&pt);
    assert_eq!(again.status.conditions, first.status.conditions, "nothing changed: the same status, no write");
    assert!(again.notes.is_empty(), "no event without a change");
    later = later.prepared(&["a"], &pt);
    let ready = later.plan(&pt);
    let t = ready.condition("Ready");
    assert_eq!(t.status, "True");
    assert_ne!(t.last_transition_time, first.condition("Ready").last_transition_time);
    assert!(ready.notes.iter().any(|n| !n.warning && n.reason == "Prepared"), "{:?}", ready.notes);
}

#[test]
fn a_node_turning_incompatible_is_a_warning_event_quoting_the_kernel() {
    let mut pt = passthrough("p");
    let w = World::new().node("a", cex8().status()).node("b", cex8().status()).running_on("ns", "vm", "a");
    pt.status = Some(w.plan(&pt).status);
    let changed = World::new()
        .node("a", cex8().status())
        .node("b", host(Kernel::V1).card(1, 14, ACCEL).card(2, 14, CCA).status())
        .running_on("ns", "vm", "a");
    let o = changed.plan(&pt);
    let n = o.notes.iter().find(|n| n.reason == "VerdictIncompatible").expect("an event");
    assert!(n.warning);
    assert!(n.message.starts_with("node b: Incompatible (was Equivalent): FacilityDiffers"), "{}", n.message);
}

impl World {
    fn clone_with_now(&self, secs: i64) -> World {
        let mut c = self.cluster.clone();
        c.now = now() + SignedDuration::from_secs(secs);
        for v in c.nodes.values_mut() {
            v.lease_renewed = Some(c.now - SignedDuration::from_secs(5));
        }
        World { cluster: c }
    }
}
