//! The seed (v1) rules, kernel-ap.md §6.1.

use crate::ap::functions::{APSC, FULL, STATELESS};
use crate::ap::{ApFunctions, kmsg};
use crate::compat::testkit::*;
use crate::compat::*;

use super::*;

#[test]
fn v1_identical_hosts_are_compatible() {
    let h = Host::v1().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let v = judge(&h, &h);
    assert_compatible(&v);
    assert_eq!(v.rules, Some(RuleSet::V1));
}

#[test]
fn v1_source_not_migratable_is_refused_before_anything_is_sent() {
    let mut s = Host::v1().card(1, CEX8, CCA).build();
    let t = s.clone();
    our_mdev(&mut s).migratable = Some(false);
    let v = judge(&s, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::MigrationDisabled, None)]);
    assert_eq!((v.errno, v.kernel_log.is_empty()), (None, true));
    assert_eq!(v.console, Some(kmsg::console_migration_disabled(UUID)));
}

#[test]
fn v1_more_source_apqns_fails_with_eio_config_size() {
    let s = Host::v1().card(1, CEX8, CCA).card(2, CEX8, CCA).build();
    let t = Host::v1().card(1, CEX8, CCA).build();
    let v = judge(&s, &t);
    assert_kernel(&v, libc::EIO, &[kmsg::config_size_larger(UUID, 2, 1)]);
    assert_eq!(
        codes(&v),
        vec![(ReasonCode::ConfigSizeLarger, None), (ReasonCode::QueueNotAssigned, Some(q(2, 5)))],
        "every rule's findings are listed, the count differs only once"
    );
    assert_eq!(v.reasons[0].message, "migration failed: source guest's AP config size (2) larger than target's (1)");
}

#[test]
fn v1_more_target_apqns_fails_with_enodev_queue_count() {
    let s = Host::v1().card(1, CEX8, CCA).build();
    let t = Host::v1().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let v = judge(&s, &t);
    assert_kernel(&v, libc::ENODEV, &[kmsg::queue_count_differs(UUID, 1, 2)]);
    assert_eq!(codes(&v), vec![(ReasonCode::QueueCountDiffers, None)]);
}

#[test]
fn v1_queue_not_in_target_guest_matrix_fails_with_enodev_logging_the_first_only() {
    let s = Host::v1().card(1, CEX8, CCA).card(2, CEX8, CCA).build();
    let t = Host::v1().card(3, CEX8, CCA).card(4, CEX8, CCA).build();
    let v = judge(&s, &t);
    assert_kernel(&v, libc::ENODEV, &[kmsg::queue_not_assigned(UUID, q(1, 5))]);
    assert_eq!(
        codes(&v),
        vec![(ReasonCode::QueueNotAssigned, Some(q(1, 5))), (ReasonCode::QueueNotAssigned, Some(q(2, 5)))]
    );
}

#[test]
fn v1_card_facility_differs_fails_with_efault_logging_the_first_queue_only() {
    let s = Host::v1().card(1, CEX8, CCA).domains(&[5, 6]).build();
    let t = Host::v1().card(1, CEX8, CCA & !APSC).domains(&[5, 6]).build();
    let v = judge(&s, &t);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q(1, 5))];
    log.extend(pair(0, q(1, 5), true));
    assert_kernel(&v, libc::EFAULT, &log);
    assert_eq!(v.kernel_log[1], format!("vfio_ap_mdev {UUID}: APSC facility installed in source queue 01.0005"));
    assert_eq!(
        codes(&v),
        vec![(ReasonCode::FacilityDiffers, Some(q(1, 5))), (ReasonCode::FacilityDiffers, Some(q(1, 6)))]
    );
    assert_eq!(
        v.reasons[1].message,
        "APSC facility installed in source queue 01.0006; APSC facility not installed in target queue 01.0006"
    );
}

#[test]
fn v1_differences_are_logged_named_facilities_then_other_bits_then_type() {
    let bit12 = 0x8000_0000u32 >> 12;
    let s = Host::v1().card(1, 15, CCA | bit12).build();
    let t = Host::v1().card(1, CEX8, (CCA & !FULL) | STATELESS).build();
    let v = judge(&s, &t);
    let q15 = q(1, 5);
    let mut log = vec![kmsg::queues_not_compatible(UUID, q15)];
    log.extend(pair(8, q15, true));
    log.extend(pair(9, q15, false));
    log.extend(kmsg::facility_bit_differs(UUID, 12, q15, true));
    log.push(kmsg::ap_type_not_compatible(UUID, 15, CEX8));
    assert_kernel(&v, libc::EFAULT, &log);
    assert!(v.kernel_log.last().is_some_and(|l| l.ends_with("AP type of source (0f) not compatible with target (0e)")));
    let c: Vec<_> = v.reasons.iter().map(|r| r.code).collect();
    use ReasonCode::*;
    assert_eq!(c, vec![FacilityDiffers, FacilityDiffers, FacilityDiffers, ApTypeNotCompatible]);
}

#[test]
fn v1_compares_raw_type_never_hwtype() {
    // Both cards report the compatible hwtype CEX8; the source's raw type is newer.
    let s = Host::v1().card(1, 15, CCA).build();
    let t = Host::v1().card(1, CEX8, CCA).build();
    assert_eq!((s.cards[&1].hwtype, t.cards[&1].hwtype), (CEX8, CEX8));
    let v = judge(&s, &t);
    let log = [kmsg::queues_not_compatible(UUID, q(1, 5)), kmsg::ap_type_not_compatible(UUID, 15, CEX8)];
    assert_kernel(&v, libc::EFAULT, &log);
    assert_eq!(codes(&v), vec![(ReasonCode::ApTypeNotCompatible, Some(q(1, 5)))]);
}

#[test]
fn v1_newer_target_card_passes_and_the_way_back_fails() {
    let old = Host::v1().card(1, CEX7, CCA).build();
    let new = Host::v1().card(1, CEX8, CCA).build();
    assert_compatible(&judge(&old, &new));
    assert_kernel(
        &judge(&new, &old),
        libc::EFAULT,
        &[kmsg::queues_not_compatible(UUID, q(1, 5)), kmsg::ap_type_not_compatible(UUID, CEX8, CEX7)],
    );
    assert!(!equivalent(&old, &new, UUID));
    assert!(equivalent(&new, &new, UUID));
}

#[test]
fn v1_target_secure_execution_guest_fails_with_eopnotsupp() {
    let s = Host::v1().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    t.kernel.se_guest = Some(true);
    let v = judge(&s, &t);
    assert_kernel(&v, libc::EOPNOTSUPP, &[kmsg::target_is_se_guest(UUID)]);
    assert_eq!(codes(&v), vec![(ReasonCode::SecureExecution, None)]);
    // Only the target matters to v1.
    assert_compatible(&judge(&t, &s));
}

#[test]
fn card_functions_hide_se_bits_in_v1_but_latest_sees_them() {
    let s = Host::v1().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    queue(&mut t, 1, 5).functions = Some(ApFunctions(CCA | 0x8000)); // bound, not associated
    assert_compatible(&judge(&s, &t));
    let v = verdict(&s, &t, UUID, RuleChoice::Latest);
    let log = [kmsg::queues_not_compatible(UUID, q(1, 5)), kmsg::bind_state_not_zero(UUID, 0, 2, q(1, 5))];
    assert_kernel(&v, libc::EINVAL, &log);
    assert_eq!(codes(&v), vec![(ReasonCode::BindStateNotZero, Some(q(1, 5)))]);
}

#[test]
fn v1_rules_skip_without_a_target_mdev() {
    let s = Host::v1().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    t.mdevs.clear();
    let v = judge(&s, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::MdevMissing, None)]);
    assert_eq!(v.console, Some(kmsg::console_device_not_found(UUID)));
    assert_eq!((v.errno, v.kernel_log.len()), (None, 0));
}
