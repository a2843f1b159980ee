//! Kernel profiles, migration streams, mdevs, names (architecture.md, Decisions).

use crate::ap::functions::APSC;
use crate::ap::{KernelProfile, kmsg};
use crate::compat::testkit::*;
use crate::compat::*;

use super::*;

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
