//! The latest rules, kernel-ap.md §6.2 and §9.

use crate::ap::functions::{APSC, FULL, STATELESS};
use crate::ap::{Mask, Matrix, kmsg};
use crate::compat::testkit::*;
use crate::compat::*;

use super::*;

#[test]
fn latest_identical_hosts_are_compatible() {
    let h = Host::latest().card(1, CEX8, CCA).card(2, CEX8, ACCEL).domains(&[5, 6]).build();
    let v = judge(&h, &h);
    assert_compatible(&v);
    assert_eq!(v.rules, Some(RuleSet::Latest));
}

#[test]
fn latest_destination_needs_no_configuration_only_free_queues() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    our_mdev(&mut t).matrix = Matrix::default();
    our_mdev(&mut t).guest_matrix = Matrix::default();
    assert_compatible(&judge(&s, &t));
}

#[test]
fn latest_queue_not_bound_to_vfio_ap_fails_with_enodev_logging_every_queue() {
    let s = Host::latest().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let mut t = s.clone();
    give_to_host(&mut t, q(1, 5));
    t.queues.remove(&q(1, 6));
    let v = judge(&s, &t);
    let log = [kmsg::queue_not_available(UUID, q(1, 5)), kmsg::queue_not_available(UUID, q(1, 6))];
    assert_kernel(&v, libc::ENODEV, &log);
    let c = codes(&v);
    assert_eq!(
        &c[..2],
        &[(ReasonCode::QueueNotAvailable, Some(q(1, 5))), (ReasonCode::QueueNotAvailable, Some(q(1, 6)))]
    );
    assert!(c.contains(&(ReasonCode::ConfigRejected, Some(q(1, 5)))), "a later rule is still reported: {c:?}");
}

#[test]
fn latest_control_domain_not_on_destination_fails_with_enodev() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    our_mdev(&mut t).matrix.control = Mask::empty();
    let mut s2 = s.clone();
    our_mdev(&mut s2).matrix.control = Mask::from_ids([5, 7]);
    t.config.control_domains = Some(Mask::from_ids([5]));
    let v = judge(&s2, &t);
    assert_kernel(&v, libc::ENODEV, &[kmsg::control_domain_not_available(UUID, 7)]);
    assert_eq!(codes(&v), vec![(ReasonCode::ControlDomainNotAvailable, None)]);
    t.config.control_domains = None;
    assert_compatible(&judge(&s2, &t));
}

#[test]
fn latest_facility_differs_fails_with_einval_logging_every_queue() {
    let s = Host::latest().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let t = Host::latest().card(1, CEX8, CCA & !APSC).domains(&[5, 6]).build();
    let v = judge(&s, &t);
    let mut log = Vec::new();
    for d in [5, 6] {
        log.push(kmsg::queues_not_compatible(UUID, q(1, d)));
        log.extend(pair(0, q(1, d), true));
    }
    assert_kernel(&v, libc::EINVAL, &log);
}

#[test]
fn latest_compares_eight_facilities_not_every_bit() {
    let bit12 = 0x8000_0000u32 >> 12;
    let s = Host::latest().card(1, CEX8, CCA | bit12).build();
    let t = Host::latest().card(1, CEX8, CCA).build();
    assert_compatible(&judge(&s, &t));
    assert!(!verdict(&s, &t, UUID, RuleChoice::V1).compatible, "v1 compares all 32 bits");
}

#[test]
fn latest_newer_target_type_passes_and_the_way_back_fails_with_einval() {
    let old = Host::latest().card(1, CEX7, CCA).build();
    let new = Host::latest().card(1, CEX8, CCA).build();
    assert_compatible(&judge(&old, &new));
    let log = [kmsg::queues_not_compatible(UUID, q(1, 5)), kmsg::ap_type_not_compatible(UUID, CEX8, CEX7)];
    assert_kernel(&judge(&new, &old), libc::EINVAL, &log);
}

#[test]
fn latest_compares_raw_type_never_hwtype() {
    let s = Host::latest().card(1, 15, CCA).build();
    let t = Host::latest().card(1, CEX8, CCA).build();
    let v = judge(&s, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::ApTypeNotCompatible, Some(q(1, 5)))]);
}

const STATELESS_ONLY: u32 = (CCA & !FULL) | STATELESS;

#[test]
fn latest_stateless_to_full_passes_full_to_stateless_fails_with_function_downgrade() {
    let stateless = Host::latest().card(1, CEX8, STATELESS_ONLY).build();
    let full = Host::latest().card(1, CEX8, CCA).build();
    assert_compatible(&judge(&stateless, &full));
    let v = judge(&full, &stateless);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q(1, 5))];
    log.extend(kmsg::function_downgrade(UUID, q(1, 5)));
    assert_kernel(&v, libc::EINVAL, &log);
    assert_eq!(codes(&v), vec![(ReasonCode::FunctionClassDowngrade, Some(q(1, 5)))]);
    assert!(!equivalent(&stateless, &full, UUID));
}

#[test]
fn latest_other_function_class_mismatch_logs_the_facility_lines() {
    let full_and_stateless = Host::latest().card(1, CEX8, CCA | STATELESS).build();
    let full = Host::latest().card(1, CEX8, CCA).build();
    let v = judge(&full, &full_and_stateless);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q(1, 5))];
    log.extend(pair(9, q(1, 5), false));
    assert_kernel(&v, libc::EINVAL, &log);
    let neither = Host::latest().card(1, CEX8, CCA & !FULL).build();
    let v = judge(&neither, &full);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q(1, 5))];
    log.extend(pair(8, q(1, 5), false));
    assert_kernel(&v, libc::EINVAL, &log);
    assert_eq!(codes(&v), vec![(ReasonCode::FacilityDiffers, Some(q(1, 5)))]);
}

#[test]
fn latest_bind_state_not_zero_fails_with_einval_after_the_other_lines() {
    let s = Host::latest().card(1, CEX8, CCA | 0x4000).build();
    let t = Host::latest().card(1, CEX7, CCA & !APSC).build();
    let v = judge(&s, &t);
    let q15 = q(1, 5);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q15)];
    log.extend(pair(0, q15, true));
    log.push(kmsg::ap_type_not_compatible(UUID, CEX8, CEX7));
    log.push(kmsg::bind_state_not_zero(UUID, 1, 0, q15));
    assert_kernel(&v, libc::EINVAL, &log);
}

#[test]
fn latest_tapq_failure_is_a_reason_with_rc_from_the_queue_state() {
    let s = Host::latest().card(1, CEX8, CCA).domains(&[5, 6, 7]).build();
    let mut t = s.clone();
    for d in [5, 6, 7] {
        queue(&mut t, 1, d).functions = None;
    }
    queue(&mut t, 1, 5).chkstop = true;
    queue(&mut t, 1, 6).config = false;
    let v = judge(&s, &t);
    let log: Vec<_> = [(5, 4), (6, 3), (7, 1)].map(|(d, rc)| kmsg::tapq_failed(UUID, q(1, d), rc)).into();
    assert_kernel(&v, libc::EIO, &log);
    assert!(v.reasons.iter().all(|r| r.code == ReasonCode::TapqFailed));
    assert_eq!(v.reasons[0].message, "Failed to get hwinfo for queue 01.0005: TAPQ rc=4");
}

#[test]
fn latest_tapq_rc_1_fails_with_enodev_and_wins_over_incompatible_queues() {
    let s = Host::latest().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let mut t = Host::latest().card(1, CEX8, CCA & !APSC).domains(&[5, 6]).build();
    queue(&mut t, 1, 6).functions = None;
    let v = judge(&s, &t);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q(1, 5))];
    log.extend(pair(0, q(1, 5), true));
    log.push(kmsg::tapq_failed(UUID, q(1, 6), 1));
    assert_kernel(&v, libc::ENODEV, &log);
}

#[test]
fn latest_source_tapq_failure_is_reported_too() {
    let mut s = Host::latest().card(1, CEX8, CCA).build();
    let t = s.clone();
    queue(&mut s, 1, 5).functions = None;
    queue(&mut s, 1, 5).chkstop = true;
    assert_kernel(&judge(&s, &t), libc::EIO, &[kmsg::tapq_failed(UUID, q(1, 5), 4)]);
}

#[test]
fn latest_config_with_id_above_maximum_fails_with_enodev_without_a_log() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    let mut s2 = s.clone();
    our_mdev(&mut s2).matrix.adapters.set(0x50, true);
    t.max_adapter_id = 63;
    let v = judge(&s2, &t);
    assert_kernel(&v, libc::ENODEV, &[]);
    assert_eq!(codes(&v), vec![(ReasonCode::ConfigRejected, None)]);
    assert!(v.reasons[0].message.contains("ENODEV") && v.reasons[0].message.contains("adapter 80 (0x50)"));
}

#[test]
fn latest_config_with_host_owned_queue_fails_with_eaddrnotavail() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut s2 = s.clone();
    our_mdev(&mut s2).matrix.domains.set(7, true); // not in the guest matrix: no queue device
    let mut t = s.clone();
    t.apmask.set(1, true);
    t.aqmask.set(7, true);
    let v = judge(&s2, &t);
    assert_kernel(&v, libc::EADDRNOTAVAIL, &[]);
    assert_eq!(codes(&v), vec![(ReasonCode::ConfigRejected, Some(q(1, 7)))]);
    assert!(v.reasons[0].message.contains("EADDRNOTAVAIL"));
}

#[test]
fn latest_driver_override_decides_host_ownership_before_the_masks() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    t.apmask = Mask::full();
    t.aqmask = Mask::full();
    queue(&mut t, 1, 5).driver_override = Some("vfio_ap".into());
    assert_compatible(&judge(&s, &t));
    queue(&mut t, 1, 5).driver_override = Some("cex4queue".into());
    t.apmask = Mask::empty();
    assert_kernel(&judge(&s, &t), libc::EADDRNOTAVAIL, &[]);
    queue(&mut t, 1, 5).driver_override = Some(String::new());
    assert_compatible(&judge(&s, &t));
}

#[test]
fn latest_queue_of_another_mdev_fails_with_eaddrinuse_logging_the_first_mdev() {
    let s = Host::latest().card(1, CEX8, CCA).card(2, CEX8, CCA).build();
    let mut t = s.clone();
    let one = Matrix::new(Mask::from_ids([1]), Mask::from_ids([5]), Mask::empty());
    let both = Matrix::new(Mask::from_ids([1, 2]), Mask::from_ids([5]), Mask::empty());
    t.mdevs.insert(
        "ffffffff-0000-4000-8000-000000000000".into(),
        mdev("ffffffff-0000-4000-8000-000000000000", both, None),
    );
    t.mdevs.insert(OTHER.into(), mdev(OTHER, one, None));
    let v = judge(&s, &t);
    assert_kernel(&v, libc::EADDRINUSE, &[kmsg::already_assigned(UUID, q(1, 5), OTHER)]);
    assert_eq!(v.reasons.len(), 3, "every shared queue of every mdev: {v:#?}");
    assert!(v.reasons[0].message.contains("(EADDRINUSE): Userspace may not assign queue 01.0005"));
}

#[test]
fn latest_secure_execution_on_either_side_fails_with_eperm() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut se = s.clone();
    se.kernel.se_guest = Some(true);
    assert_kernel(&judge(&s, &se), libc::EPERM, &[kmsg::se_not_allowed(UUID)]);
    assert_kernel(&judge(&se, &s), libc::EPERM, &[kmsg::se_not_allowed(UUID)]);
}

#[test]
fn latest_kernel_stops_at_the_first_failing_rule_reasons_list_all() {
    let s = Host::latest().card(1, CEX8, CCA).card(2, CEX8, CCA).build();
    let mut t = Host::latest().card(1, CEX8, CCA & !APSC).card(2, CEX8, CCA).build();
    give_to_host(&mut t, q(2, 5));
    t.kernel.se_guest = Some(true);
    let v = judge(&s, &t);
    assert_kernel(&v, libc::ENODEV, &[kmsg::queue_not_available(UUID, q(2, 5))]);
    use ReasonCode::*;
    let c: Vec<_> = v.reasons.iter().map(|r| r.code).collect();
    assert_eq!(c, vec![QueueNotAvailable, FacilityDiffers, ConfigRejected, SecureExecution]);
}
