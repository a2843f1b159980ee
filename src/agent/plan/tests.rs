//! The planner's rules, one test each (architecture.md "Masks", "`migratable`", agent refusals).

use crate::agent::desired::{Desired, DesiredMdev};
use crate::agent::ownership::Ownership;
use crate::agent::reason::Code;
use crate::ap::inventory::{HOST_QUEUE_DRIVER, VFIO_AP_DRIVER};
use crate::ap::{Apqn, HostConfig, Inventory, KernelInfo, Mask, Matrix, Mdev, Queue};

use super::*;

const U1: &str = "4b1d0000-0000-4000-8000-000000000001";
const U2: &str = "4b1d0000-0000-4000-8000-000000000002";
const F: &str = "4b1d0000-0000-4000-8000-0000000000ff";

/// Cards 0..=3, usage domains 0..=15, masks all ones, every queue online with the host driver.
fn host(features: &[&str]) -> Inventory {
    let mut inv = Inventory {
        kernel: KernelInfo {
            matrix_features: Some(features.iter().map(|s| s.to_string()).collect()),
            vfio_ap_loaded: true,
            ..Default::default()
        },
        max_adapter_id: 63,
        max_domain_id: 84,
        apmask: Mask::full(),
        aqmask: Mask::full(),
        config: HostConfig {
            adapters: Some(Mask::from_ids(0..=3)),
            usage_domains: Some(Mask::from_ids(0..=15)),
            control_domains: Some(Mask::from_ids(0..=15)),
        },
        ..Default::default()
    };
    for a in 0..=3 {
        for d in 0..=15 {
            let apqn = Apqn::new(a, d);
            inv.queues.insert(
                apqn,
                Queue {
                    apqn,
                    driver: None,
                    functions: None,
                    online: None,
                    config: true,
                    chkstop: false,
                    status: None,
                    driver_override: None,
                },
            );
        }
    }
    rebind(&mut inv);
    inv
}

fn latest() -> Inventory {
    host(&["guest_matrix", "hotplug", "ap_config", "migratable"])
}

/// Queue drivers as the bus binds them after a mask or override change.
fn rebind(inv: &mut Inventory) {
    let (ap, aq) = (inv.apmask, inv.aqmask);
    for q in inv.queues.values_mut() {
        let vfio = match q.driver_override.as_deref() {
            Some(o) if !o.is_empty() => o == VFIO_AP_DRIVER,
            _ => !(ap.get(q.apqn.apid) && aq.get(q.apqn.apqi)),
        };
        q.driver = Some(if vfio { VFIO_AP_DRIVER } else { HOST_QUEUE_DRIVER }.to_string());
        q.online = (!vfio).then_some(true);
    }
}

fn m(a: &[u8], d: &[u8], c: &[u8]) -> Matrix {
    Matrix::new(Mask::from_ids(a.iter().copied()), Mask::from_ids(d.iter().copied()), Mask::from_ids(c.iter().copied()))
}

fn add_mdev(inv: &mut Inventory, uuid: &str, matrix: Matrix, in_use: bool) {
    let mdev = Mdev { uuid: uuid.into(), matrix, guest_matrix: matrix, migratable: None, in_use, iommu_group: None };
    inv.mdevs.insert(uuid.into(), mdev);
}

fn want(uuid: &str, a: &[u8], d: &[u8]) -> DesiredMdev {
    DesiredMdev::new(uuid, a, d, &[], false)
}

fn ours(uuids: &[&str]) -> Ownership {
    let mut o = Ownership::default();
    o.mdevs.extend(uuids.iter().map(|u| u.to_string()));
    o
}

fn run(inv: &Inventory, own: &Ownership, mode: MaskMode, d: Vec<DesiredMdev>) -> Plan {
    plan(&Desired::new(d), inv, own, mode)
}

fn ops(p: &Plan) -> Vec<Op> {
    p.steps.iter().map(|s| s.op.clone()).collect()
}

fn code(p: &Plan, uuid: &str) -> Option<Code> {
    p.mdev(uuid).and_then(|m| m.reason.as_ref()).map(|r| r.code)
}

#[test]
fn a_new_mdev_is_mask_edit_then_create_then_one_ap_config_write() {
    let mut inv = latest();
    // No host queue online: both mask options are allowed, the one with less collateral wins.
    for q in inv.queues.values_mut() {
        q.online = Some(false);
    }
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0, 1, 2, 3], &[5])]);
    let o = ops(&p);
    assert!(matches!(&o[0], Op::Mask { mask: BusMask::Aqmask, edit, .. } if edit == "-5"), "{o:?}");
    assert_eq!(o[1], Op::Create { uuid: U1.into() });
    assert!(matches!(&o[2], Op::ApConfig { config, .. } if *config == m(&[0, 1, 2, 3], &[5], &[])));
    assert_eq!(o.len(), 3);
    assert_eq!(p.mdev(U1).map(|x| x.action), Some(Action::Create));
    let phases: Vec<Phase> = p.steps.iter().map(|s| s.phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn ties_in_collateral_go_to_aqmask() {
    let mut inv = latest();
    inv.queues.values_mut().for_each(|q| q.online = Some(false));
    // 1 adapter × 1 domain: apmask moves 15 other domains of card 0, aqmask 3 other cards.
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0], &[5])]);
    assert!(matches!(&ops(&p)[0], Op::Mask { mask: BusMask::Aqmask, .. }), "fewer collateral queues");
    // whole card 0: apmask moves nothing else; aqmask would move cards 1..3 of every domain
    let all: Vec<u8> = (0..=15).collect();
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0], &all)]);
    assert!(matches!(&ops(&p)[0], Op::Mask { mask: BusMask::Apmask, edit, .. } if edit == "-0"));
    // a square matrix over the whole machine: no collateral either way → aqmask
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0, 1, 2, 3], &all)]);
    assert!(matches!(&ops(&p)[0], Op::Mask { mask: BusMask::Aqmask, edit, .. } if edit == "-0-15"));
}

#[test]
fn the_option_without_online_collateral_wins_and_collateral_is_reported() {
    let mut inv = latest();
    // domain 5 of cards 1..3 is online for the host, the other domains of card 0 are offline
    for q in inv.queues.values_mut() {
        q.online = Some(q.apqn.apqi == 5);
    }
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0], &[5])]);
    assert!(matches!(&ops(&p)[0], Op::Mask { mask: BusMask::Apmask, edit, .. } if edit == "-0"));
    let notes = &p.mdev(U1).map(|x| x.notes.clone()).unwrap_or_default();
    assert!(notes.iter().any(|n| n.code == Code::CollateralQueuesMoved && n.apqns.len() == 15), "{notes:?}");
}

#[test]
fn every_option_moving_an_online_host_queue_is_refused_naming_them() {
    let inv = latest(); // everything online
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::CollateralHostQueues));
    assert!(p.steps.is_empty(), "nothing written for a refused mdev");
    let r = p.mdev(U1).and_then(|x| x.reason.clone()).unwrap();
    assert!(r.apqns.contains(&Apqn::new(1, 5)) && r.apqns.contains(&Apqn::new(0, 6)));
}

#[test]
fn queues_already_with_vfio_ap_need_no_mask_edit() {
    let mut inv = latest();
    inv.aqmask = Mask::full().and_not(&Mask::from_ids([5]));
    rebind(&mut inv);
    let p = run(&inv, &Ownership::default(), MaskMode::Observe, vec![want(U1, &[0, 1], &[5])]);
    assert_eq!(ops(&p).len(), 2, "create + ap_config only");
    assert!(p.mdev(U1).is_some_and(|x| x.action == Action::Create));
}

#[test]
fn observe_mode_refuses_queues_owned_by_the_host() {
    let p = run(&latest(), &Ownership::default(), MaskMode::Observe, vec![want(U1, &[0], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::QueueOwnedByHost));
    assert_eq!(p.mdev(U1).and_then(|x| x.reason.clone()).and_then(|r| r.errno), Some("EADDRNOTAVAIL".into()));
    assert!(p.steps.is_empty());
}

#[test]
fn a_queue_in_a_foreign_mdev_refuses_with_eaddrinuse_and_the_foreign_mdev_is_left_alone() {
    let mut inv = latest();
    inv.aqmask = Mask::full().and_not(&Mask::from_ids([5, 6]));
    rebind(&mut inv);
    add_mdev(&mut inv, F, m(&[1], &[6], &[]), false);
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0, 1], &[5, 6]), want(U2, &[2], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::ForeignMdevHoldsQueue));
    assert_eq!(
        p.mdev(U1).and_then(|x| x.reason.clone()).map(|r| (r.errno, r.apqns)),
        Some((Some("EADDRINUSE".into()), vec![Apqn::new(1, 6)]))
    );
    assert_eq!(p.mdev(U2).map(|x| x.action), Some(Action::Create));
    assert_eq!(p.mdev(F).map(|x| x.action), Some(Action::Foreign));
    assert!(p.steps.iter().all(|s| s.op.mdev() != Some(F)));
}

#[test]
fn a_uuid_taken_by_a_foreign_mdev_or_an_earlier_entry_is_uuid_in_use() {
    let mut inv = latest();
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    add_mdev(&mut inv, F, m(&[], &[], &[]), false);
    let p = run(
        &inv,
        &Ownership::default(),
        MaskMode::Manage,
        vec![want(F, &[0], &[1]), want(U1, &[0], &[2]), want(U1, &[1], &[3])],
    );
    assert_eq!(code(&p, F), Some(Code::UuidInUse));
    assert_eq!(
        p.mdevs.iter().filter(|x| x.uuid == U1).map(|x| x.action).collect::<Vec<_>>(),
        vec![Action::Create, Action::Refused]
    );
    assert_eq!(p.mdevs[2].reason.as_ref().map(|r| r.code), Some(Code::UuidInUse));
}

#[test]
fn ids_above_the_host_maximum_are_refused_with_enodev() {
    let p =
        run(&latest(), &Ownership::default(), MaskMode::Manage, vec![DesiredMdev::new(U1, &[64], &[85], &[90], false)]);
    let r = p.mdev(U1).and_then(|x| x.reason.clone()).unwrap();
    assert_eq!((r.code, r.errno.as_deref()), (Code::IdAboveMaximum, Some("ENODEV")));
    assert!(r.message.contains("[64]") && r.message.contains("[85, 90]"), "{}", r.message);
}

#[test]
fn two_desired_mdevs_wanting_one_apqn_the_first_wins_the_other_gets_eaddrinuse() {
    let mut inv = latest();
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0, 1], &[5]), want(U2, &[1, 2], &[5])]);
    assert_eq!(p.mdev(U1).map(|x| x.action), Some(Action::Create));
    let r = p.mdev(U2).and_then(|x| x.reason.clone()).unwrap();
    assert_eq!(
        (r.code, r.errno.as_deref(), r.apqns.clone()),
        (Code::ApqnConflict, Some("EADDRINUSE"), vec![Apqn::new(1, 5)])
    );
    // the one that already holds the APQN wins, even when listed second
    add_mdev(&mut inv, U2, m(&[1, 2], &[5], &[]), false);
    let p = run(&inv, &ours(&[U2]), MaskMode::Manage, vec![want(U1, &[0, 1], &[5]), want(U2, &[1, 2], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::ApqnConflict));
    assert_eq!(p.mdev(U2).map(|x| x.action), Some(Action::Unchanged));
}

#[test]
fn a_refused_mdev_of_ours_keeps_its_queues_and_refuses_those_that_wanted_them() {
    let mut inv = latest();
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0], &[5], &[]), false);
    add_mdev(&mut inv, F, m(&[3], &[7], &[]), false);
    // U1 moves from 00.0005 to 03.0007 (foreign: refused); U2 wants 00.0005, which U1 keeps.
    let p = run(&inv, &ours(&[U1]), MaskMode::Manage, vec![want(U1, &[3], &[7]), want(U2, &[0], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::ForeignMdevHoldsQueue));
    assert_eq!(code(&p, U2), Some(Code::ApqnConflict));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
}

#[test]
fn our_mdevs_swapping_queues_release_first_then_configure() {
    let mut inv = latest();
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0], &[5], &[]), false);
    add_mdev(&mut inv, U2, m(&[1], &[5], &[]), false);
    let p = run(&inv, &ours(&[U1, U2]), MaskMode::Manage, vec![want(U1, &[1], &[5]), want(U2, &[0], &[5])]);
    let o: Vec<(Phase, String)> = p.steps.iter().map(|s| (s.phase, s.op.data())).collect();
    assert_eq!(o.iter().filter(|(ph, _)| *ph == Phase::Release).count(), 2, "{o:?}");
    assert_eq!(o.iter().filter(|(ph, _)| *ph == Phase::Configure).count(), 2);
    assert!(p.steps.iter().all(|s| s.phase == Phase::Release || s.phase == Phase::Configure));
}

#[test]
fn an_obsolete_mdev_of_ours_holding_a_wanted_queue_is_removed_before_the_configure() {
    let mut inv = latest();
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0], &[5], &[]), false);
    let p = run(&inv, &ours(&[U1]), MaskMode::Manage, vec![want(U2, &[0], &[5])]);
    let o = ops(&p);
    assert_eq!(o[0], Op::Create { uuid: U2.into() });
    assert_eq!(o[1], Op::Remove { uuid: U1.into() });
    assert!(matches!(o[2], Op::ApConfig { .. }));
}

#[test]
fn an_obsolete_mdev_in_use_is_not_removed_and_its_bits_stay_cleared() {
    let mut inv = latest();
    inv.aqmask = Mask::full().and_not(&Mask::from_ids([5]));
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0], &[5], &[]), true);
    let mut own = ours(&[U1]);
    own.aqmask_cleared = Mask::from_ids([5]);
    let p = run(&inv, &own, MaskMode::Manage, vec![]);
    assert_eq!(code(&p, U1), Some(Code::MdevInUse));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    // once released: removed, then the bit goes back
    inv.mdevs.get_mut(U1).unwrap().in_use = false;
    let p = run(&inv, &own, MaskMode::Manage, vec![]);
    assert_eq!(ops(&p)[0], Op::Remove { uuid: U1.into() });
    assert!(matches!(&ops(&p)[1], Op::Mask { mask: BusMask::Aqmask, edit, .. } if edit == "+5"));
}

#[test]
fn bits_go_back_only_when_no_mdev_holds_their_queues_foreign_ones_included() {
    let mut inv = latest();
    inv.aqmask = Mask::full().and_not(&Mask::from_ids([5, 6]));
    rebind(&mut inv);
    add_mdev(&mut inv, F, m(&[2], &[6], &[]), false);
    let own = Ownership { aqmask_cleared: Mask::from_ids([5, 6]), ..Default::default() };
    let p = run(&inv, &own, MaskMode::Manage, vec![]);
    assert_eq!(
        ops(&p),
        vec![Op::Mask { mask: BusMask::Aqmask, edit: "+5".into(), clear: Mask::empty(), set: Mask::from_ids([5]) }]
    );
    // bits the agent did not clear are never set
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![]);
    assert!(p.steps.is_empty());
}

#[test]
fn a_satisfied_host_plans_no_write() {
    let mut inv = latest();
    inv.aqmask = Mask::full().and_not(&Mask::from_ids([5]));
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0, 1], &[5], &[5]), false);
    let mut own = ours(&[U1]);
    own.aqmask_cleared = Mask::from_ids([5]);
    let p = run(&inv, &own, MaskMode::Manage, vec![DesiredMdev::new(U1, &[0, 1], &[5], &[5], true)]);
    assert!(p.steps.is_empty() && p.forget.is_empty(), "{:?}", p.steps);
    assert_eq!(p.mdev(U1).map(|x| x.action), Some(Action::Unchanged));
}

#[test]
fn migratable_is_written_only_where_the_attribute_exists() {
    let mut v1 = latest();
    v1.aqmask = Mask::empty();
    rebind(&mut v1);
    add_mdev(&mut v1, F, m(&[], &[], &[]), false);
    v1.mdevs.get_mut(F).unwrap().migratable = Some(false);
    let p = run(&v1, &Ownership::default(), MaskMode::Manage, vec![DesiredMdev::new(U1, &[0], &[1], &[], true)]);
    assert!(ops(&p).contains(&Op::Migratable { uuid: U1.into(), value: true, if_present: false }));
    // no mdev yet: v1 or latest cannot be told apart, so the write depends on the attribute
    let mut unknown = latest();
    unknown.aqmask = Mask::empty();
    rebind(&mut unknown);
    let p = run(&unknown, &Ownership::default(), MaskMode::Manage, vec![DesiredMdev::new(U1, &[0], &[1], &[], true)]);
    assert!(ops(&p).contains(&Op::Migratable { uuid: U1.into(), value: true, if_present: true }));
    // latest: the capability is enough
    let mut l = unknown.clone();
    add_mdev(&mut l, F, m(&[], &[], &[]), false);
    let p = run(&l, &Ownership::default(), MaskMode::Manage, vec![DesiredMdev::new(U1, &[0], &[1], &[], true)]);
    assert!(!ops(&p).iter().any(|o| matches!(o, Op::Migratable { .. })));
    assert!(p.node.is_empty());
}

#[test]
fn migratable_on_a_kernel_without_it_still_makes_the_mdev_and_reports_kernel_cannot_migrate() {
    let mut inv = host(&["guest_matrix", "hotplug", "ap_config"]);
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![DesiredMdev::new(U1, &[0], &[1], &[], true)]);
    assert_eq!(p.mdev(U1).map(|x| x.action), Some(Action::Create));
    assert_eq!(p.node.first().map(|r| r.code), Some(Code::KernelCannotMigrate));
    assert!(p.mdev(U1).is_some_and(|x| x.notes.iter().any(|n| n.code == Code::KernelCannotMigrate)));
}

#[test]
fn apqns_absent_from_the_host_configuration_are_allowed_and_reported() {
    let mut inv = latest();
    inv.apmask = Mask::full().and_not(&Mask::from_ids([0x30]));
    rebind(&mut inv);
    let p =
        run(&inv, &Ownership::default(), MaskMode::Observe, vec![DesiredMdev::new(U1, &[0x30], &[1], &[40], false)]);
    let notes = p.mdev(U1).map(|x| x.notes.clone()).unwrap_or_default();
    assert_eq!(p.mdev(U1).map(|x| x.action), Some(Action::Create));
    assert_eq!(notes.iter().filter(|n| n.code == Code::NotInHostConfig).count(), 2, "{notes:?}");
}

#[test]
fn override_mode_sets_one_override_per_queue_and_never_a_mask() {
    let mut inv = latest();
    inv.kernel.driver_override_capable = true;
    inv.queues.values_mut().for_each(|q| q.driver_override = Some(String::new()));
    let p = run(&inv, &Ownership::default(), MaskMode::Override, vec![want(U1, &[0, 1], &[5])]);
    let o = ops(&p);
    assert_eq!(
        &o[..2],
        &[Op::Override { apqn: Apqn::new(0, 5), set: true }, Op::Override { apqn: Apqn::new(1, 5), set: true }]
    );
    assert!(!o.iter().any(|x| matches!(x, Op::Mask { .. })));
    // a foreign override (IBM's CEX DRA driver) is never changed
    inv.queues.get_mut(&Apqn::new(1, 5)).unwrap().driver_override = Some("cex4queue".into());
    let p = run(&inv, &Ownership::default(), MaskMode::Override, vec![want(U1, &[0, 1], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::QueueOwnedByHost));
}

#[test]
fn masks_and_overrides_are_never_mixed() {
    let mut inv = latest();
    inv.kernel.driver_override_capable = true;
    inv.queues.values_mut().for_each(|q| q.driver_override = Some(String::new()));
    inv.queues.get_mut(&Apqn::new(3, 3)).unwrap().driver_override = Some("vfio_ap".into());
    rebind(&mut inv);
    let p = run(&inv, &Ownership::default(), MaskMode::Manage, vec![want(U1, &[0], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::HostProfileMismatch));
    let mut masked = latest();
    masked.kernel.driver_override_capable = true;
    masked.aqmask = Mask::full().and_not(&Mask::from_ids([9]));
    let p = run(&masked, &Ownership::default(), MaskMode::Override, vec![want(U1, &[0], &[5])]);
    assert_eq!(code(&p, U1), Some(Code::HostProfileMismatch));
    assert!(p.steps.is_empty());
}

#[test]
fn overrides_go_back_when_no_mdev_holds_the_queue() {
    let mut inv = latest();
    inv.kernel.driver_override_capable = true;
    inv.queues.values_mut().for_each(|q| q.driver_override = Some(String::new()));
    for q in [Apqn::new(0, 5), Apqn::new(1, 5)] {
        inv.queues.get_mut(&q).unwrap().driver_override = Some("vfio_ap".into());
    }
    rebind(&mut inv);
    add_mdev(&mut inv, F, m(&[1], &[5], &[]), false);
    let mut own = Ownership::default();
    own.overrides.extend([Apqn::new(0, 5), Apqn::new(1, 5), Apqn::new(2, 2)]);
    let p = run(&inv, &own, MaskMode::Override, vec![]);
    assert_eq!(ops(&p), vec![Op::Override { apqn: Apqn::new(0, 5), set: false }]);
    assert_eq!(p.forget.overrides, vec![Apqn::new(2, 2)], "recorded but not set: forgotten");
}

#[test]
fn without_ap_config_unassignments_come_before_assignments() {
    let mut inv = host(&["guest_matrix", "hotplug"]);
    inv.aqmask = Mask::empty();
    rebind(&mut inv);
    add_mdev(&mut inv, U1, m(&[0, 1], &[5], &[5]), false);
    let p = run(&inv, &ours(&[U1]), MaskMode::Manage, vec![DesiredMdev::new(U1, &[1, 2], &[5, 6], &[], false)]);
    let o: Vec<String> =
        p.steps.iter().map(|s| format!("{} {}", s.op.path().rsplit('/').next().unwrap_or(""), s.op.data())).collect();
    assert_eq!(
        o,
        vec!["unassign_adapter 0x00", "unassign_control_domain 0x05", "assign_adapter 0x02", "assign_domain 0x06"]
    );
}

#[test]
fn stale_record_entries_are_forgotten() {
    let inv = latest();
    let mut own = ours(&[U1]);
    own.apmask_cleared = Mask::from_ids([2]);
    let p = run(&inv, &own, MaskMode::Manage, vec![]);
    assert!(p.steps.is_empty());
    assert_eq!(p.forget.mdevs, vec![U1.to_string()]);
    assert_eq!(p.forget.apmask, Mask::from_ids([2]));
}
