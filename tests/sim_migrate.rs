//! `sim::migrate` runs the destination kernel's checks (kernel-ap.md §6) with the exact log lines.

use cryptopass::ap::{Mask, Matrix};
use cryptopass::sim::{Kernel, migrate};

const U: &str = "4b1d0000-0000-4000-8000-0000000000aa";

fn host(profile: &str, cards: &str) -> Kernel {
    let yaml = format!(
        "kernel: {{ profile: {profile} }}\nmaxDomainId: 84\nusageDomains: [\"0-15\"]\napmask: \"0x0fff\"\ncards:\n{cards}"
    );
    Kernel::from_yaml(&yaml, None, "test").unwrap()
}

fn cca(ids: &[u8], ty: &str) -> String {
    ids.iter().map(|i| format!("  - {{ id: {i}, type: {ty}, mode: CCA }}\n")).collect()
}

fn with_mdev(mut k: Kernel, adapters: &[u8], domains: &[u8], control: &[u8], migratable: bool) -> Kernel {
    k.store_create(U).unwrap();
    let m = Matrix::new(
        Mask::from_ids(adapters.iter().copied()),
        Mask::from_ids(domains.iter().copied()),
        Mask::from_ids(control.iter().copied()),
    );
    k.store_ap_config(U, &m.ap_config_string()).unwrap();
    if k.has_migratable_attr() {
        k.store_migratable(U, if migratable { "1" } else { "0" }).unwrap();
    }
    k
}

#[test]
fn v1_equal_hosts_migrate_and_log_nothing() {
    let s = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[5], true);
    let mut t = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[5], false);
    let r = migrate(&s, &mut t, U);
    assert!(r.is_ok(), "{r:?}");
    assert!(t.log.is_empty());
}

#[test]
fn v1_source_not_migratable_is_refused_on_the_source_console() {
    let s = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], false);
    let mut t = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, None);
    assert_eq!(
        r.console.as_deref(),
        Some(format!("error: Requested operation is not valid: cannot migrate domain: {U}: Migration is disabled for VFIO device").as_str())
    );
}

#[test]
fn missing_target_mdev_is_device_not_found() {
    let s = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = host("mig-v1", &cca(&[0], "CEX8"));
    let r = migrate(&s, &mut t, U);
    assert_eq!(
        r.console.as_deref(),
        Some(format!("error: device not found: mediated device '{U}' not found").as_str())
    );
}

#[test]
fn v1_more_source_apqns_fail_with_eio_config_size() {
    let s = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[], true);
    let mut t = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0], &[5], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EIO));
    assert_eq!(
        r.kernel_log,
        vec![format!("vfio_ap_mdev {U}: migration failed: source guest's AP config size (2) larger than target's (1)")]
    );
    assert_eq!(
        r.console.as_deref(),
        Some("error: operation failed: job 'migration in' failed: load of migration failed: Input/output error")
    );
}

#[test]
fn v1_more_target_apqns_fail_with_enodev_queue_count() {
    let s = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::ENODEV));
    assert_eq!(
        r.kernel_log,
        vec![format!(
            "vfio_ap_mdev {U}: migration failed: number of queues on source (1) and target (2) guests differ"
        )]
    );
}

#[test]
fn v1_unassigned_apqn_fails_with_enodev_naming_the_first_queue() {
    let s = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[0], &[5, 6], &[], true);
    let mut t = with_mdev(host("mig-v1", &cca(&[0, 1], "CEX8")), &[1], &[5, 6], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::ENODEV));
    assert_eq!(
        r.kernel_log,
        vec![format!("vfio_ap_mdev {U}: migration failed: queue 00.0005 not assigned to guest matrix")]
    );
}

#[test]
fn v1_older_target_card_fails_with_efault_and_names_the_types() {
    let s = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-v1", &cca(&[0], "CEX7")), &[0], &[5], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EFAULT));
    assert_eq!(
        r.kernel_log,
        vec![
            format!("vfio_ap_mdev {U}: Migration failed: Source and target queue (00.0005) not compatible"),
            format!("vfio_ap_mdev {U}: AP type of source (0e) not compatible with target (0d)"),
        ]
    );
    assert_eq!(
        r.console.as_deref(),
        Some("error: operation failed: job 'migration in' failed: load of migration failed: Bad address")
    );
    // the relation is not symmetric: a newer target is fine
    let s2 = with_mdev(host("mig-v1", &cca(&[0], "CEX7")), &[0], &[5], &[], true);
    let mut t2 = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], false);
    assert!(migrate(&s2, &mut t2, U).is_ok());
}

#[test]
fn v1_facility_difference_is_logged_per_facility() {
    let s = with_mdev(host("mig-v1", "  - { id: 0, type: CEX8, functions: 0x92800000 }\n"), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-v1", "  - { id: 0, type: CEX8, functions: 0x12800000 }\n"), &[0], &[5], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EFAULT));
    assert_eq!(r.kernel_log[1], format!("vfio_ap_mdev {U}: APSC facility installed in source queue 00.0005"));
    assert_eq!(r.kernel_log[2], format!("vfio_ap_mdev {U}: APSC facility not installed in target queue 00.0005"));
}

#[test]
fn latest_queue_not_bound_to_vfio_on_target_is_enodev_for_every_offender() {
    let s = with_mdev(host("mig-latest", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0, 1], "CEX8")), &[], &[], &[], false);
    t.apmask = Mask::full(); // every queue back to the host on the target
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::ENODEV));
    assert_eq!(
        r.kernel_log,
        vec![
            format!("vfio_ap_mdev {U}: Queue 00.0005 not available to vfio_ap driver on target host"),
            format!("vfio_ap_mdev {U}: Queue 01.0005 not available to vfio_ap driver on target host"),
        ]
    );
}

#[test]
fn latest_unconfigured_target_mdev_is_overwritten_by_the_source_config() {
    let s = with_mdev(host("mig-latest", &cca(&[0, 1], "CEX8")), &[0, 1], &[5], &[5], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0, 1], "CEX8")), &[], &[], &[], false);
    let r = migrate(&s, &mut t, U);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(t.mdevs[U].matrix, s.mdevs[U].matrix);
}

#[test]
fn latest_missing_control_domain_is_enodev() {
    let s = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[0], &[5], &[5, 9], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    t.cfg_control.set(9, false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::ENODEV));
    assert_eq!(
        r.kernel_log,
        vec![format!("vfio_ap_mdev: {U}: Control domain 0009 not available on the destination host")]
    );
}

#[test]
fn latest_full_to_stateless_is_einval_and_stateless_to_full_passes() {
    let full = "  - { id: 0, type: CEX8, functions: 0x92800000 }\n";
    let stateless = "  - { id: 0, type: CEX8, functions: 0x92400000 }\n";
    let s = with_mdev(host("mig-latest", full), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", stateless), &[], &[], &[], false);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EINVAL));
    assert_eq!(
        r.kernel_log,
        vec![
            format!("vfio_ap_mdev {U}: Migration failed: Source and target queue (00.0005) not compatible"),
            format!("vfio_ap_mdev {U}: Full native card function available on source queue 00.0005"),
            format!("vfio_ap_mdev {U}: Only stateless functions available on target queue 00.0005"),
        ]
    );
    let s = with_mdev(host("mig-latest", stateless), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", full), &[], &[], &[], false);
    assert!(migrate(&s, &mut t, U).is_ok());
}

#[test]
fn latest_se_bind_state_must_be_zero_on_both_queues() {
    let s = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    let q = "00.0005".parse().unwrap();
    t.queues.entry(q).or_default().functions = Some(cryptopass::ap::ApFunctions(0x9280_8000));
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EINVAL));
    assert!(r.kernel_log.contains(&format!(
        "vfio_ap_mdev {U}: Bind/associate state for source (0) and target (2) queue 00.0005 must be 0"
    )));
}

#[test]
fn latest_checkstopped_target_queue_is_a_tapq_failure() {
    let s = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    t.queues.entry("00.0005".parse().unwrap()).or_default().chkstop = Some(true);
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EIO));
    assert_eq!(r.kernel_log, vec![format!("vfio_ap_mdev {U}: Failed to get hwinfo for queue 00.0005: TAPQ rc=4")]);
}

#[test]
fn latest_queue_held_by_another_target_mdev_is_eaddrinuse() {
    let s = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    let other = "4b1d0000-0000-4000-8000-0000000000bb";
    t.store_create(other).unwrap();
    t.store_assign(other, cryptopass::sim::Assign::Adapter, "0").unwrap();
    t.store_assign(other, cryptopass::sim::Assign::Domain, "5").unwrap();
    // the queue is bound to vfio_ap (held by `other`), so rules 1-3 pass and rule 4 refuses
    let r = migrate(&s, &mut t, U);
    assert_eq!(r.errno, Some(libc::EADDRINUSE));
    assert_eq!(
        r.kernel_log,
        vec![format!("vfio_ap_mdev {U}: Userspace may not assign queue 00.0005 to mdev: already assigned to {other}")]
    );
}

#[test]
fn kernels_without_the_capability_or_with_other_rules_never_migrate() {
    let s = with_mdev(host("base", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    assert!(!migrate(&s, &mut t, U).is_ok());
    let s = with_mdev(host("mig-v1", &cca(&[0], "CEX8")), &[0], &[5], &[], true);
    let mut t = with_mdev(host("mig-latest", &cca(&[0], "CEX8")), &[], &[], &[], false);
    assert!(!migrate(&s, &mut t, U).is_ok());
}
