//! The migration lifecycle: re-verify and abort, hand-over, last migration, evacuation.

use super::*;
use crate::api::LastMigration;
use crate::api::condition::find;
use crate::controller::inputs::{MigrationStateView, MigrationView};
use crate::controller::lifecycle::{self, EVACUATION};

/// CEX7 (raw 13): a CEX8 source (0e) cannot go there ("AP type of source (0e) not compatible …").
fn cex7() -> Host {
    host(Kernel::V1).card(1, 13, CCA).card(2, 13, CCA)
}

fn mig(name: &str, phase: &str) -> MigrationView {
    MigrationView {
        name: name.into(),
        uid: format!("uid-{name}"),
        vmi: "vm".into(),
        created: Some(now() - SignedDuration::from_secs(20)),
        phase: Some(phase.into()),
        ..Default::default()
    }
}

/// KubeVirt's hand-off of `m` to `target` (on the VMIM and the VMI), from `source`.
fn handed_off(mut m: MigrationView, source: &str, target: &str) -> MigrationView {
    m.state = Some(MigrationStateView {
        migration_uid: Some(m.uid.clone()),
        source_node: Some(source.into()),
        target_node: Some(target.into()),
        ..Default::default()
    });
    m
}

impl World {
    fn migration(mut self, m: MigrationView) -> World {
        self.cluster.migrations.entry(("ns".into(), m.vmi.clone())).or_default().push(m);
        self
    }
    fn vmi(mut self, f: impl FnOnce(&mut VmiView)) -> World {
        if let Some(v) = self.cluster.vmis.get_mut(&("ns".to_string(), "vm".to_string())) {
            f(v);
        }
        self
    }
    fn in_use(self, node: &str) -> World {
        self.cnode(node, |c| {
            if let Some(s) = c.status.as_mut() {
                s.mdevs.iter_mut().filter(|m| m.uuid == UUID).for_each(|m| m.in_use = true);
            }
        })
    }
}

fn with_last(mut pt: CryptoPassthrough, last: LastMigration) -> CryptoPassthrough {
    pt.status.get_or_insert_with(Default::default).last_migration = Some(last);
    pt
}

/// A running VM on a with b prepared (b's hardware as given).
fn bed(b: Host) -> (CryptoPassthrough, World) {
    let pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", b.status())
        .prepared(&["a", "b"], &pt)
        .running_on("ns", "vm", "a");
    (pt, w)
}

#[test]
fn a_verified_target_keeps_the_migration_running_with_its_verdict() {
    let (pt, w) = bed(cex8());
    let o = w.migration(handed_off(mig("m1", "PreparingTarget"), "a", "b")).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    let last = o.status.last_migration.clone().expect("lastMigration");
    assert_eq!(
        (last.migration.as_str(), last.outcome.as_str(), last.source.as_deref(), last.target.as_deref()),
        ("m1", "Running", Some("a"), Some("b"))
    );
    assert_eq!(last.verdict.as_deref(), Some("Equivalent"));
    assert_eq!(last.reason.as_deref(), Some("PreparingTarget"));
    assert!(last.start_time.is_some() && last.end_time.is_none() && last.duration_seconds.is_none());
    assert!(o.notes.iter().any(|n| n.reason == "MigrationTargetVerified" && !n.warning), "{:?}", o.notes);
    assert_eq!(o.lifecycle.finished, None);
}

#[test]
fn a_target_that_turned_incompatible_is_aborted_once_with_the_kernels_words() {
    let (pt, w) = bed(cex7());
    let w = w.migration(handed_off(mig("m1", "PreparingTarget"), "a", "b"));
    let o = w.plan(&pt);
    let abort = o.lifecycle.abort.clone().expect("an abort");
    assert_eq!((abort.name.as_str(), abort.uid.as_str()), ("m1", "uid-m1"), "deleted with the uid as precondition");
    assert_eq!(abort.reason, "ApTypeNotCompatible");
    assert!(abort.message.contains("AP type of source (0e) not compatible with target (0d)"), "{}", abort.message);
    let last = o.status.last_migration.clone().expect("lastMigration");
    assert_eq!(last.outcome, "Aborted");
    assert_eq!(last.reason.as_deref(), Some("ApTypeNotCompatible"));
    assert_eq!(last.verdict.as_deref(), Some("Incompatible"));
    assert_eq!(last.duration_seconds, Some(20));
    assert_eq!(o.lifecycle.finished, Some("Aborted"));
    assert!(o.notes.iter().any(|n| n.reason == "MigrationAborted" && n.warning));
    assert!(o.lifecycle.vmi_notes.iter().any(|n| n.reason == "MigrationAborted" && n.message.contains("(0d)")));
    // The target stays desired while the migration may still use it (nothing is pulled away
    // under KubeVirt's feet); it is not labeled (not a compatible target).
    assert!(o.placement.desired.contains_key("b"));
    assert!(!o.placement.labeled.contains("b"));

    // Recorded: the next reconcile does not abort again, counts nothing, says nothing.
    let pt2 = with_last(pt.clone(), last.clone());
    let o = w.plan(&pt2);
    assert_eq!(o.lifecycle.abort, None);
    assert_eq!(o.lifecycle.finished, None);
    assert_eq!(o.status.last_migration.as_ref(), Some(&last), "the abort's reason stays");
    assert!(o.notes.iter().all(|n| !n.reason.starts_with("Migration")), "{:?}", o.notes);

    // A new VMIM under the recorded name is another migration: judged afresh.
    let mut again = handed_off(mig("m1", "PreparingTarget"), "a", "b");
    again.uid = "uid-m1-again".into();
    again.created = Some(now() - SignedDuration::from_secs(5));
    let (pt3, w3) = bed(cex7());
    let o = w3.migration(again).plan(&with_last(pt3, last.clone()));
    assert_eq!(o.lifecycle.abort.map(|a| a.uid).as_deref(), Some("uid-m1-again"));

    // Not recorded but already being deleted (another passthrough of the VM aborted it, or a
    // user): no second delete either.
    let mut m = handed_off(mig("m1", "Running"), "a", "b");
    m.deleting = true;
    let (pt, w) = bed(cex7());
    let o = w.migration(m).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    let last = o.status.last_migration.expect("lastMigration");
    assert_eq!((last.outcome.as_str(), last.reason.as_deref()), ("Aborted", Some("Deleted")));
}

#[test]
fn an_ended_migration_is_never_aborted() {
    let (pt, w) = bed(cex7());
    // Succeeded per the VMI's state (virt-handler's last patch), before the VMIM's phase says so.
    let m = handed_off(mig("m1", "Running"), "a", "b");
    let mut state = m.state.clone().expect("state");
    state.completed = true;
    state.end = Some(now() - SignedDuration::from_secs(2));
    let o = w.clone().vmi(|v| v.migration_state = Some(state)).migration(m).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    let last = o.status.last_migration.expect("lastMigration");
    assert_eq!((last.outcome.as_str(), last.duration_seconds), ("Succeeded", Some(18)));
    assert_eq!(o.lifecycle.finished, Some("Succeeded"));
    // Failed: no abort either, the reason recorded.
    let mut m = handed_off(mig("m2", "Failed"), "a", "b");
    if let Some(s) = m.state.as_mut() {
        s.failed = true;
        s.failure_reason = Some("target pod unschedulable".into());
    }
    let o = w.migration(m).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    let last = o.status.last_migration.expect("lastMigration");
    assert_eq!(last.outcome, "Failed");
    assert_eq!(last.reason.as_deref(), Some("MigrationFailed"));
    assert!(last.message.as_deref().is_some_and(|m| m.contains("target pod unschedulable")), "{last:?}");
    assert_eq!(o.lifecycle.finished, Some("Failed"));
    assert!(o.notes.iter().any(|n| n.reason == "MigrationFailed" && n.warning));
    // Failed before KubeVirt placed a target (an unschedulable target pod): said so.
    let (pt3, w3) = bed(cex8());
    let o3 = w3.migration(mig("m3", "Failed")).plan(&pt3);
    let l3 = o3.status.last_migration.clone().expect("lastMigration");
    assert_eq!(
        (l3.outcome.as_str(), l3.reason.as_deref(), l3.target.as_deref()),
        ("Failed", Some("TargetNotPlaced"), None)
    );
    assert!(l3.message.as_deref().is_some_and(|m| m.contains("kubectl describe vmim m3")), "{l3:?}");
    assert_eq!(o3.desired_nodes(), vec!["a", "b"], "nothing lost");
    // Nothing lost: still active on a, its mdev still desired.
    assert_eq!(o.placement.active.as_deref(), Some("a"));
    assert!(o.placement.desired.contains_key("a"));
}

#[test]
fn the_target_is_known_from_the_first_of_pod_node_hand_off_or_label() {
    let (pt, w) = bed(cex7());
    let m = mig("m1", "Scheduling");
    // Nothing known yet: no verdict, no abort.
    let o = w.clone().migration(m.clone()).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    let last = o.status.last_migration.expect("lastMigration");
    assert_eq!((last.outcome.as_str(), last.target.as_deref(), last.source.as_deref()), ("Running", None, Some("a")));
    // The scheduler bound the target pod: verified then (before KubeVirt's hand-off).
    let mut scheduled = m.clone();
    scheduled.target_pod_node = Some("b".into());
    assert_eq!(
        w.clone().migration(scheduled).plan(&pt).lifecycle.abort.map(|a| a.reason).as_deref(),
        Some("ApTypeNotCompatible")
    );
    // The VMI's label, while its migrationState is this migration's.
    let labeled = w
        .clone()
        .vmi(|v| {
            v.target_label = Some("b".into());
            v.migration_state = Some(MigrationStateView { migration_uid: Some("uid-m1".into()), ..Default::default() });
        })
        .migration(m.clone());
    assert!(labeled.plan(&pt).lifecycle.abort.is_some());
    // A label left from an older migration says nothing about this one.
    let stale = w
        .vmi(|v| {
            v.target_label = Some("b".into());
            v.migration_state =
                Some(MigrationStateView { migration_uid: Some("uid-old".into()), ..Default::default() });
        })
        .migration(m);
    assert_eq!(stale.plan(&pt).lifecycle.abort, None);
}

#[test]
fn a_target_without_our_synced_mdev_or_with_migration_disabled_is_aborted() {
    let pt = passthrough("p");
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .node("c", cex8().status())
        .prepared(&["a", "b"], &pt)
        .running_on("ns", "vm", "a");
    let a = w.clone().migration(handed_off(mig("m1", "Scheduled"), "a", "c")).plan(&pt).lifecycle.abort.expect("abort");
    assert_eq!(a.reason, "MdevMissing");
    assert!(a.message.contains("node c does not hold the synced mdev"), "{}", a.message);
    let mut off = pt.clone();
    off.spec.migration.enabled = false;
    let a = w.migration(handed_off(mig("m1", "Scheduled"), "a", "b")).plan(&off).lifecycle.abort.expect("abort");
    assert_eq!(a.reason, "MigrationDisabled");
}

#[test]
fn kubevirt_reporting_live_migratable_true_changes_nothing_in_the_lifecycle() {
    let (pt, w) = bed(cex8());
    let w = w.vmi(|v| {
        v.live_migratable = Some(crate::api::Condition::new("LiveMigratable", true, "", ""));
    });
    let o = w.clone().plan(&pt);
    let c = o.condition("KubeVirtLiveMigratable");
    assert_eq!(c.status, "True");
    let o = w.migration(handed_off(mig("m1", "Running"), "a", "b")).plan(&pt);
    assert_eq!(o.lifecycle.abort, None);
    assert_eq!(o.status.last_migration.map(|l| l.outcome).as_deref(), Some("Running"));
}

#[test]
fn after_the_hand_over_the_active_node_moves_and_the_old_one_is_released_only_once_unused() {
    let mut pt = passthrough("p");
    pt.spec.placement.standby = Standby::Count(0);
    // b is a newer machine: a → b compatible, b → a not, so a is no standby of b.
    let w = World::new().node("a", cex7().status()).node("b", cex8().status()).prepared(&["a", "b"], &pt).in_use("a");
    // In flight: b is the target and keeps its entry although standby is 0.
    let flying = w.clone().running_on("ns", "vm", "a").migration(handed_off(mig("m1", "Running"), "a", "b"));
    assert_eq!(flying.plan(&pt).desired_nodes(), vec!["a", "b"]);
    // Completed: the VMI runs on b; a still reports the mdev in use (the source QEMU has not
    // let go yet): it keeps its entry.
    let done = |m: MigrationView| {
        let mut m = handed_off(m, "a", "b");
        if let Some(s) = m.state.as_mut() {
            s.completed = true;
        }
        m
    };
    let moved = w.clone().running_on("ns", "vm", "b").migration(done(mig("m1", "Succeeded")));
    let o = moved.plan(&pt);
    assert_eq!(o.placement.active.as_deref(), Some("b"));
    assert_eq!(o.node("a").verdict, "Incompatible", "relative to the new active node");
    assert_eq!(o.desired_nodes(), vec!["a", "b"], "in use on a: kept");
    assert!(!o.placement.labeled.contains("a"));
    // The agent saw the guest leave a: the entry goes (the agent then removes the mdev).
    let released = World::new()
        .node("a", cex7().status())
        .node("b", cex8().status())
        .prepared(&["a", "b"], &pt)
        .in_use("b")
        .running_on("ns", "vm", "b")
        .migration(done(mig("m1", "Succeeded")));
    let o = released.plan(&pt);
    assert_eq!(o.desired_nodes(), vec!["b"]);
    assert_eq!(o.status.last_migration.map(|l| l.outcome).as_deref(), Some("Succeeded"));
}

#[test]
fn the_newest_migration_is_the_last_one() {
    let (pt, w) = bed(cex8());
    let mut old = handed_off(mig("m0", "Failed"), "a", "b");
    old.created = Some(now() - SignedDuration::from_secs(600));
    let o = w.migration(old).migration(handed_off(mig("m1", "Running"), "a", "b")).plan(&pt);
    assert_eq!(o.status.last_migration.map(|l| l.migration).as_deref(), Some("m1"));
}

#[test]
fn the_desired_migratable_follows_migration_enabled() {
    // v1 kernels: the agent writes the per-mdev attribute from this field, on the source too.
    let (pt, w) = bed(cex8());
    let o = w.plan(&pt);
    assert!(o.placement.desired.values().all(|e| e.migratable), "{:?}", o.placement.desired);
    let mut off = pt.clone();
    off.spec.migration.enabled = false;
    let o = w.plan(&off);
    assert_eq!(o.desired_nodes(), vec!["a"], "no standby without migration");
    assert!(!o.placement.desired["a"].migratable, "the source mdev is not migratable while migration is disabled");
}

fn evacuating(w: World, strategy: Option<&str>) -> World {
    let strategy = strategy.map(str::to_string);
    w.vmi(|v| {
        v.uid = Some("vmi-uid".into());
        v.evacuation_node = Some("a".into());
        v.eviction_strategy = strategy;
    })
}

#[test]
fn external_eviction_creates_one_steered_migration_per_attempt() {
    let (pt, w) = bed(cex8());
    let w = evacuating(w, Some("External"));
    let o = w.plan(&pt);
    let create = o.lifecycle.create.clone().expect("a VMIM to create");
    assert_eq!(create.name, lifecycle::evacuation_name("vm", "vmi-uid", "a", 0));
    assert!(create.name.starts_with(lifecycle::EVACUATION_PREFIX));
    assert_eq!(create.vmi, "vm");
    assert_eq!(create.evacuation_node, "a");
    assert_eq!(create.added_node_selector.get(&crate::api::prepared_label(UUID)).map(String::as_str), Some("true"));
    assert_eq!(w.plan(&pt).lifecycle.create, Some(create.clone()), "the same name every time: idempotent");
    let c = find(&o.status.conditions, EVACUATION).expect("Evacuation condition");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "MigrationCreated"));
    assert!(o.lifecycle.vmi_notes.iter().any(|n| n.reason == "EvacuationMigrationCreated"));

    // Once it exists and runs: nothing more is created.
    let mut m = mig(&create.name, "Scheduling");
    m.evacuation = Some("a".into());
    let o = w.clone().migration(m.clone()).plan(&pt);
    assert_eq!(o.lifecycle.create, None);
    assert_eq!(find(&o.status.conditions, EVACUATION).map(|c| c.reason.as_str()), Some("MigrationInFlight"));
    // It failed: the next attempt gets the next name, after a pause.
    m.phase = Some("Failed".into());
    m.ended = Some(now() - SignedDuration::from_secs(10));
    let o = w.clone().migration(m.clone()).plan(&pt);
    assert_eq!(o.lifecycle.create, None);
    assert_eq!(o.lifecycle.requeue_after, Some(std::time::Duration::from_secs(20)));
    m.ended = Some(now() - SignedDuration::from_secs(31));
    let o = w.clone().migration(m).plan(&pt);
    assert_eq!(o.lifecycle.create.map(|c| c.name), Some(lifecycle::evacuation_name("vm", "vmi-uid", "a", 1)));

    // Evacuated: the condition goes.
    let o = w.vmi(|v| v.evacuation_node = None).plan(&pt);
    assert!(find(&o.status.conditions, EVACUATION).is_none());
}

#[test]
fn an_evacuation_without_a_compatible_target_says_why_the_drain_waits() {
    let (pt, w) = bed(cex7());
    for strategy in [Some("External"), None] {
        let o = evacuating(w.clone(), strategy).plan(&pt);
        assert_eq!(o.lifecycle.create, None);
        let c = find(&o.status.conditions, EVACUATION).expect("Evacuation condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "NoTarget"));
        assert!(c.message.contains("the drain of node a waits"), "{}", c.message);
        assert!(c.message.contains("AP type of source (0e) not compatible with target (0d)"), "{}", c.message);
        let n = o.lifecycle.vmi_notes.iter().find(|n| n.reason == "EvacuationBlocked").expect("an event on the VMI");
        assert!(n.warning);
        // Said once: with the condition recorded, no new event.
        let mut pt2 = pt.clone();
        pt2.status = Some(o.status.clone());
        assert!(evacuating(w.clone(), strategy).plan(&pt2).lifecycle.vmi_notes.is_empty());
    }
    // KubeVirt's own strategy with a target: KubeVirt creates the VMIM, we only report.
    let (pt, w) = bed(cex8());
    let o = evacuating(w, Some("LiveMigrate")).plan(&pt);
    assert_eq!(o.lifecycle.create, None);
    assert_eq!(find(&o.status.conditions, EVACUATION).map(|c| c.reason.as_str()), Some("WaitingForKubeVirt"));
}

#[test]
fn the_cluster_default_eviction_strategy_applies_when_the_vmi_has_none() {
    let (pt, w) = bed(cex8());
    let mut w = evacuating(w, None);
    assert_eq!(w.plan(&pt).lifecycle.create, None);
    w.cluster.default_eviction_strategy = Some("External".into());
    assert!(w.plan(&pt).lifecycle.create.is_some());
}

#[test]
fn once_the_recorded_migration_is_gone_an_older_one_is_no_news() {
    let (pt, w) = bed(cex8());
    let mut old = handed_off(mig("m0", "Succeeded"), "a", "b");
    old.created = Some(now() - SignedDuration::from_secs(600));
    // m1 was aborted and its VMIM is gone; m0 remains in the cache.
    let recorded = LastMigration {
        migration: "m1".into(),
        uid: Some("uid-m1".into()),
        source: Some("a".into()),
        target: Some("b".into()),
        verdict: Some("Incompatible".into()),
        outcome: "Aborted".into(),
        reason: Some("ApTypeNotCompatible".into()),
        message: Some("node b is Incompatible".into()),
        start_time: Some((now() - SignedDuration::from_secs(20)).to_string()),
        end_time: Some(now().to_string()),
        duration_seconds: Some(20),
    };
    let pt = with_last(pt, recorded.clone());
    let o = w.clone().migration(old).plan(&pt);
    assert_eq!(o.status.last_migration, Some(recorded.clone()));
    assert_eq!(o.lifecycle.finished, None, "not counted again");
    assert!(o.notes.iter().all(|n| !n.reason.starts_with("Migration")), "{:?}", o.notes);
    // A newer one is followed.
    let mut new = mig("m2", "Scheduling");
    new.created = Some(now() - SignedDuration::from_secs(5));
    let o = w.migration(new).plan(&pt);
    assert_eq!(o.status.last_migration.map(|l| l.migration).as_deref(), Some("m2"));
}
