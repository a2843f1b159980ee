//! The destination kernel's rules as specifications (kernel-ap.md §6, §9).

use crate::ap::functions::{APSC, FULL, STATELESS};
use crate::ap::{ApFunctions, Apqn, KernelProfile, Mask, Matrix, kmsg};

use super::testkit::*;
use super::*;

fn judge(s: &Inventory, t: &Inventory) -> Verdict {
    verdict(s, t, UUID, RuleChoice::Auto)
}

fn codes(v: &Verdict) -> Vec<(ReasonCode, Option<Apqn>)> {
    v.reasons.iter().map(|r| (r.code, r.apqn)).collect()
}

/// An incompatible verdict whose destination kernel failed with `errno` and logged `log`.
fn assert_kernel(v: &Verdict, errno: i32, log: &[String]) {
    assert!(!v.compatible, "{v:#?}");
    assert_eq!(v.errno, Some(errno), "{v:#?}");
    assert_eq!(v.kernel_log, log, "{v:#?}");
    assert_eq!(v.console, Some(kmsg::console_load_failed(errno)));
}

fn assert_compatible(v: &Verdict) {
    assert!(v.compatible && v.reasons.is_empty(), "{v:#?}");
    assert_eq!((v.errno, v.kernel_log.len(), &v.console), (None, 0, &None));
}

fn pair(f: usize, q: Apqn, in_source: bool) -> [String; 2] {
    kmsg::facility_differs(UUID, &crate::ap::functions::FACILITIES[f], q, in_source)
}

// ---- v1 (kernel-ap.md §6.1) ----

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

// ---- latest (kernel-ap.md §6.2, §9) ----

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

// ---- profiles, streams, mdevs ----

#[test]
fn kernel_without_migration_is_refused_by_the_source_console() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = Host::cannot_migrate().card(1, CEX8, CCA).build();
    let v = judge(&s, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::KernelCannotMigrate, None)]);
    assert!(v.reasons[0].message.starts_with("target host cannot migrate"), "{}", v.reasons[0].message);
    assert!(v.reasons[0].message.contains("`migratable` missing from /sys/devices/vfio_ap/matrix/features"));
    assert_eq!((v.errno, v.kernel_log.len()), (None, 0));
    assert_eq!(v.console, Some(kmsg::console_migration_disabled(UUID)));
    t.kernel.se_guest = Some(true);
    t.kernel.hostname = Some("z16-b".into());
    let v = judge(&t, &s);
    assert!(v.reasons[0].message.starts_with("source host z16-b cannot migrate"));
    assert!(v.reasons[0].message.contains("Secure Execution guest"));
}

#[test]
fn explicit_rules_override_profiles_but_still_report_kernel_cannot_migrate() {
    let s = Host::cannot_migrate().card(1, CEX8, CCA).build();
    let t = Host::latest().card(1, CEX8, CCA & !APSC).build();
    let v = verdict(&s, &t, UUID, RuleChoice::Latest);
    assert_eq!(v.rules, Some(RuleSet::Latest));
    assert_eq!(codes(&v), vec![(ReasonCode::KernelCannotMigrate, None), (ReasonCode::FacilityDiffers, Some(q(1, 5)))]);
    assert_eq!((v.errno, v.kernel_log.len()), (None, 0), "the migration never reaches the kernel");
    let v1 = Host::v1().card(1, CEX8, CCA).build();
    let latest = Host::latest().card(1, CEX8, CCA).build();
    assert_compatible(&verdict(&v1, &latest, UUID, RuleChoice::Latest));
}

#[test]
fn v1_and_latest_kernels_never_migrate_the_stream_is_rejected_with_einval() {
    let v1 = Host::v1().card(1, CEX8, CCA).build();
    let latest = Host::latest().card(1, CEX8, CCA).build();
    for (s, t) in [(&v1, &latest), (&latest, &v1)] {
        let v = judge(s, t);
        assert_eq!(codes(&v), vec![(ReasonCode::KernelRulesDiffer, None)]);
        assert_kernel(&v, libc::EINVAL, &[]);
    }
}

#[test]
fn unknown_target_is_judged_by_the_source_profile() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    t.mdevs.clear();
    assert_eq!(t.profile(), KernelProfile::Unknown);
    let v = judge(&s, &t);
    assert_eq!(v.rules, Some(RuleSet::Latest));
    assert_eq!(codes(&v), vec![(ReasonCode::MdevMissing, None)]);
    assert_eq!(v.console, Some(kmsg::console_device_not_found(UUID)));
    // The latest rules need no target mdev, so queue findings still show.
    give_to_host(&mut t, q(1, 5));
    let c = codes(&judge(&s, &t));
    assert!(c.contains(&(ReasonCode::QueueNotAvailable, Some(q(1, 5)))), "{c:?}");
}

#[test]
fn both_unknown_profiles_are_judged_by_both_rule_sets() {
    let s = Host::cannot_migrate().card(1, CEX8, CCA).build();
    let t = Host::cannot_migrate().card(1, 15, CCA).build();
    let v = judge(&t, &s);
    assert_eq!(v.rules, None);
    let c = codes(&v);
    // Both rule sets flag the type; the duplicate line is listed once.
    let types = c.iter().filter(|x| x.0 == ReasonCode::ApTypeNotCompatible).count();
    assert_eq!(types, 1, "{c:?}");
    assert!(c.contains(&(ReasonCode::MigrationDisabled, None)));
}

#[test]
fn source_mdev_missing_leaves_nothing_to_compare() {
    let mut s = Host::latest().card(1, CEX8, CCA).build();
    let t = s.clone();
    s.mdevs.clear();
    let v = judge(&s, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::MdevMissing, None)]);
    assert!(v.reasons[0].message.contains("not found on the source host"));
    assert_eq!((v.errno, v.console), (None, Some(kmsg::console_device_not_found(UUID))));
}

#[test]
fn different_streams_are_a_reason_different_releases_a_warning() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let mut t = s.clone();
    t.kernel.release = Some("6.21.0".into());
    let v = judge(&s, &t);
    assert!(v.compatible);
    assert_eq!(v.warnings.iter().map(|w| w.code).collect::<Vec<_>>(), vec![ReasonCode::KernelReleasesDiffer]);
    let mut s2 = s.clone();
    s2.kernel.vfio_ap_stream = Some("v4".into());
    t.kernel.vfio_ap_stream = Some("v5".into());
    let v = judge(&s2, &t);
    assert_eq!(codes(&v), vec![(ReasonCode::MigrationStreamDiffers, None)]);
    assert!(v.warnings.is_empty());
    assert_kernel(&v, libc::EINVAL, &[]);
}

#[test]
fn uuid_is_accepted_in_any_case_and_logged_lowercase() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let t = Host::latest().card(1, CEX7, CCA).build();
    let v = verdict(&s, &t, &UUID.to_uppercase(), RuleChoice::Auto);
    assert_eq!(v.kernel_log[0], kmsg::queues_not_compatible(UUID, q(1, 5)));
}

#[test]
fn verdict_json_uses_stable_names() {
    let s = Host::latest().card(1, CEX8, CCA).build();
    let t = Host::latest().card(1, CEX7, CCA).build();
    let v = judge(&s, &t);
    let j = serde_json::to_value(&v).expect("serializes");
    assert_eq!(j["rules"], "latest");
    assert_eq!(j["errno"], libc::EINVAL);
    assert_eq!(j["errnoName"], "EINVAL");
    assert_eq!(j["reasons"][0]["code"], "ApTypeNotCompatible");
    assert_eq!(j["reasons"][0]["apqn"], "01.0005");
    assert!(j["kernelLog"].is_array() && j["console"].is_string());
    let back: Verdict = serde_json::from_value(j).expect("round trip");
    assert_eq!(back, v);
    for c in ReasonCode::ALL {
        assert_eq!(serde_json::to_value(c).expect("code"), c.as_str());
    }
}
