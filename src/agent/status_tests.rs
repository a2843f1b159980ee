use super::*;
use crate::agent::desired::{Desired, DesiredMdev};
use crate::agent::plan::{MaskMode, plan};
use crate::agent::report::Report;
use crate::api::condition::find;
use crate::sim::Kernel;

const U1: &str = "4b1d0000-0000-4000-8000-000000000001";
const U2: &str = "4b1d0000-0000-4000-8000-000000000002";
const U3: &str = "4b1d0000-0000-4000-8000-000000000003";
const U4: &str = "4b1d0000-0000-4000-8000-000000000004";

/// Domains 8-15 left to vfio_ap (aqmask 0xff00: 0-7 stay with the host); mdevs: U1 ours
/// (desired), U3 foreign, U4 ours in use (no longer desired).
fn host() -> Inventory {
    let y = format!(
        "kernel: {{ profile: mig-latest, release: 6.19.0 }}\nmaxDomainId: 84\nusageDomains: [\"0-15\"]\naqmask: \"0xff00\"\n\
         cards:\n  - {{ id: 0, type: CEX8 }}\n  - {{ id: 1, type: CEX8 }}\n  - {{ id: 2, type: CEX8 }}\n\
         mdevs:\n  - {{ uuid: {U1}, adapters: [0], domains: [8] }}\n  - {{ uuid: {U3}, adapters: [1], domains: [9] }}\n  \
         - {{ uuid: {U4}, adapters: [2], domains: [10], inUse: true }}\n"
    );
    let k = Kernel::from_yaml(&y, None, "t").unwrap();
    let dir = tempfile::tempdir().unwrap();
    crate::sim::dump::dump(&k, &dir.path().join("t")).unwrap();
    crate::sysfs::read_inventory(&dir.path().join("t")).unwrap()
}

fn own() -> Ownership {
    let mut o = Ownership::default();
    o.mdevs.insert(U1.into());
    o.mdevs.insert(U4.into());
    o
}

fn desired() -> Desired {
    Desired::new(vec![DesiredMdev::new(U1, &[0], &[8], &[], false), DesiredMdev::new(U2, &[0], &[90], &[], false)])
}

fn status(invalid: &[String]) -> CryptoNodeStatus {
    let inv = host();
    let o = own();
    let p = plan(&desired(), &inv, &o, MaskMode::Manage);
    let report = Report::new(&p, None, &[]);
    let pass = PassResult { inventory: &inv, report: &report, ownership: &o, invalid };
    build(&pass, Some(3), &[], "2026-01-01T00:00:00Z")
}

fn mdev<'a>(s: &'a CryptoNodeStatus, u: &str) -> &'a ObservedMdev {
    s.mdevs.iter().find(|m| m.uuid == u).unwrap()
}

#[test]
fn a_desired_mdev_as_desired_is_managed_and_synced() {
    let s = status(&[]);
    let m = mdev(&s, U1);
    assert!(m.managed && m.synced && m.last_error.is_none(), "{m:?}");
    assert_eq!((m.adapters.as_slice(), m.domains.as_slice()), (&[0u8][..], &[8u8][..]));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.kernel.release.as_deref(), Some("6.19.0"));
}

#[test]
fn a_refused_desired_mdev_is_listed_with_its_reason_and_errno_though_absent() {
    let s = status(&[]);
    let m = mdev(&s, U2);
    assert!(m.managed && !m.synced && m.adapters.is_empty());
    let e = m.last_error.as_ref().unwrap();
    assert_eq!((e.reason.as_str(), e.errno.as_deref()), ("IdAboveMaximum", Some("ENODEV")), "{e:?}");
    assert_eq!(s.mdev_count, 3, "the count is what the host holds");
}

#[test]
fn foreign_mdevs_are_reported_untouched_and_removals_in_use_wait() {
    let s = status(&[]);
    let f = mdev(&s, U3);
    assert!(!f.managed && !f.synced && f.last_error.is_none());
    let w = mdev(&s, U4);
    assert!(w.managed && w.in_use && !w.synced);
    assert_eq!(w.last_error.as_ref().unwrap().reason, "MdevInUse");
    let c = mdev_counts(&s);
    assert_eq!(c, MdevCounts { synced: 1, pending: 1, failed: 1, foreign: 1 });
}

#[test]
fn synced_is_false_naming_the_first_problem_and_keeps_its_transition_time() {
    let s = status(&[]);
    let c = find(&s.conditions, SYNCED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "IdAboveMaximum"));
    assert!(c.message.contains(U2) && c.message.contains(U4), "{}", c.message);
    assert_eq!(c.observed_generation, Some(3));
    let inv = host();
    let o = own();
    let p = plan(&desired(), &inv, &o, MaskMode::Manage);
    let report = Report::new(&p, None, &[]);
    let pass = PassResult { inventory: &inv, report: &report, ownership: &o, invalid: &[] };
    let again = build(&pass, Some(4), &s.conditions, "2026-01-01T00:01:00Z");
    let c2 = find(&again.conditions, SYNCED).unwrap();
    assert_eq!(c2.last_transition_time.as_deref(), Some("2026-01-01T00:00:00Z"));
}

#[test]
fn all_as_desired_is_synced_true_and_invalid_entries_make_it_false() {
    let inv = host();
    let o = own();
    let mut d = desired();
    d.mdevs.truncate(1);
    d.mdevs.push(DesiredMdev::new(U4, &[2], &[10], &[], false));
    let p = plan(&d, &inv, &o, MaskMode::Manage);
    let report = Report::new(&p, None, &[]);
    let pass = PassResult { inventory: &inv, report: &report, ownership: &o, invalid: &[] };
    let s = build(&pass, None, &[], "t");
    assert!(find(&s.conditions, SYNCED).unwrap().is_true(), "{:?}", s.conditions);
    let bad = vec!["spec.mdevs[2].uuid: \"x\" is not a UUID".to_string()];
    let pass = PassResult { invalid: &bad, ..pass };
    let s = build(&pass, None, &[], "t");
    let c = find(&s.conditions, SYNCED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", INVALID_SPEC));
}

#[test]
fn an_unreadable_host_keeps_the_last_status_and_says_why() {
    let s = status(&[]);
    let u = unreadable(Some(&s), "no AP bus", Some(5), "t2");
    assert_eq!(u.mdevs, s.mdevs);
    let c = find(&u.conditions, SYNCED).unwrap();
    assert_eq!((c.reason.as_str(), c.message.as_str()), (INVENTORY_UNREADABLE, "no AP bus"));
}

#[test]
fn collateral_queues_are_those_our_cleared_bits_moved_that_no_mdev_holds() {
    let inv = host();
    let mut o = own();
    o.aqmask_cleared = crate::ap::Mask::from_ids([11]);
    let c = collateral(&inv, &o);
    assert_eq!(c, vec!["00.000b", "01.000b", "02.000b"]);
}
