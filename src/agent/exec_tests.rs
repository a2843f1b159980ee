//! The executor against the simulated kernel in process (no FUSE): the record is written before
//! the write that creates state, failures are put back, verification catches a lying host.

use std::cell::RefCell;
use std::sync::Mutex;

use super::*;
use crate::agent::desired::{Desired, DesiredMdev};
use crate::agent::plan::{MaskMode, plan};
use crate::ap::Inventory;
use crate::sim::{FaultAction, Kernel, Sim};

const U1: &str = "4b1d0000-0000-4000-8000-000000000001";

/// The simulated kernel as a [`Host`]; `inventory` goes through a dump and the real reader.
struct SimHost {
    sim: Mutex<Sim>,
    store: OwnershipStore,
    /// The record as it was on disk at each write.
    seen: RefCell<Vec<(String, Ownership)>>,
    /// Reads of paths ending so return this instead.
    lie: Option<(&'static str, &'static str)>,
}

impl SimHost {
    fn new(profile: &str, store: &OwnershipStore) -> SimHost {
        let y = format!(
            "kernel: {{ profile: {profile} }}\nusageDomains: [\"0-7\"]\ncards:\n  - {{ id: 0, type: CEX8, online: false }}\n  - {{ id: 1, type: CEX8, online: false }}\n"
        );
        let k = Kernel::from_yaml(&y, None, "t").unwrap();
        SimHost { sim: Mutex::new(Sim::new(k)), store: store.clone(), seen: RefCell::new(Vec::new()), lie: None }
    }
    fn kernel(&self) -> Kernel {
        self.sim.lock().unwrap().kernel.clone()
    }
}

impl Host for SimHost {
    fn write(&self, rel: &str, data: &str) -> Result<(), Errno> {
        self.seen.borrow_mut().push((rel.to_string(), self.store.load().unwrap()));
        self.sim.lock().unwrap().write(rel, data, None)
    }
    fn read(&self, rel: &str) -> Result<String, Errno> {
        match self.lie {
            Some((suffix, v)) if rel.ends_with(suffix) => Ok(v.to_string()),
            _ => self.sim.lock().unwrap().read(rel),
        }
    }
    fn exists(&self, rel: &str) -> bool {
        self.sim.lock().unwrap().kernel.node(rel).is_some()
    }
    fn inventory(&self) -> Result<Inventory, crate::sysfs::Error> {
        let dir = tempfile::tempdir().unwrap();
        crate::sim::dump::dump(&self.kernel(), &dir.path().join("t")).unwrap();
        crate::sysfs::read_inventory(&dir.path().join("t"))
    }
}

fn run(h: &SimHost, d: &[DesiredMdev]) -> (Plan, Execution, Ownership) {
    let mut own = h.store.load().unwrap();
    let p = plan(&Desired::new(d.to_vec()), &h.inventory().unwrap(), &own, MaskMode::Manage);
    let e = execute(h, &h.store, &mut own, &p);
    (p, e, own)
}

fn want(a: &[u8], d: &[u8], mig: bool) -> DesiredMdev {
    DesiredMdev::new(U1, a, d, &[], mig)
}

#[test]
fn the_record_holds_an_mdev_and_a_cleared_bit_before_the_write_that_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let h = SimHost::new("mig-latest", &OwnershipStore::new(dir.path()));
    let (_, e, _) = run(&h, &[want(&[0, 1], &[5], false)]);
    assert!(e.ok(), "{e:?}");
    let seen = h.seen.borrow().clone();
    let at = |suffix: &str| seen.iter().find(|(p, _)| p.ends_with(suffix)).map(|(_, o)| o.clone()).unwrap();
    let (mask, at_mask) = seen.iter().find(|(p, _)| p.starts_with("bus/ap/")).cloned().unwrap();
    assert!(at_mask.apmask_cleared.count() + at_mask.aqmask_cleared.count() > 0, "recorded before writing {mask}");
    assert!(at("/create").owns_mdev(U1), "recorded before the create");
    // and forgotten only after the remove
    h.seen.borrow_mut().clear();
    let (_, e, own) = run(&h, &[]);
    assert!(e.ok());
    let seen = h.seen.borrow().clone();
    assert!(seen.iter().find(|(p, _)| p.ends_with("/remove")).is_some_and(|(_, o)| o.owns_mdev(U1)));
    assert_eq!(own, Ownership::default());
}

#[test]
fn an_mdev_created_in_this_run_that_cannot_be_configured_is_removed() {
    let h = SimHost::new("mig-latest", &OwnershipStore::in_memory());
    h.sim.lock().unwrap().faults.push((3, FaultAction::Fail(libc::EADDRINUSE))); // mask, create, ap_config
    let (_, e, own) = run(&h, &[want(&[0, 1], &[5], false)]);
    let Some(Outcome::Failed { error, compensated }) = e.mdevs.get(U1) else { panic!("{e:?}") };
    assert_eq!((error.metric_label(), error.errno()), ("queue_in_use", Some(libc::EADDRINUSE)));
    assert_eq!(compensated, &Ok(()));
    let k = h.kernel();
    assert!(k.mdevs.is_empty(), "removed again");
    assert!(!own.owns_mdev(U1));
    assert!(k.apmask.is_full() && k.aqmask.is_full(), "and the cleared bit given back");
}

#[test]
fn an_existing_mdev_gets_its_old_configuration_back_when_a_later_write_of_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let h = SimHost::new("mig-v1", &OwnershipStore::new(dir.path()));
    let (_, e, _) = run(&h, &[want(&[0], &[5], false)]);
    assert!(e.ok());
    let before = h.kernel().mdevs[U1].matrix;
    // a migration of the device is in progress: the kernel refuses `migratable` with EBUSY
    h.sim.lock().unwrap().kernel.mdevs.get_mut(U1).unwrap().migrating = true;
    let (p, e, _) = run(&h, &[want(&[0, 1], &[5], true)]);
    assert!(p.steps.iter().any(|s| matches!(s.op, Op::Migratable { .. })), "{p:#?}");
    let Some(Outcome::Failed { error, .. }) = e.mdevs.get(U1) else { panic!("{e:?}") };
    assert_eq!(error.metric_label(), "busy");
    assert_eq!(h.kernel().mdevs[U1].matrix, before, "put back");
}

#[test]
fn a_read_back_that_differs_is_a_failure_and_the_mdev_is_put_back() {
    let mut h = SimHost::new("mig-latest", &OwnershipStore::in_memory());
    h.lie = Some(("/ap_config", "0x00,0x00,0x00\n"));
    let (_, e, _) = run(&h, &[want(&[0], &[5], false)]);
    let Some(Outcome::Failed { error, .. }) = e.mdevs.get(U1) else { panic!("{e:?}") };
    assert_eq!(error.metric_label(), "verify");
    assert!(h.kernel().mdevs.is_empty());
}

#[test]
fn errno_values_map_to_stable_labels() {
    let cases = [
        (libc::EADDRNOTAVAIL, "host_owned"),
        (libc::EADDRINUSE, "queue_in_use"),
        (libc::EBUSY, "busy"),
        (libc::ENODEV, "no_device"),
        (libc::EEXIST, "exists"),
        (libc::EUSERS, "no_instances"),
        (libc::EINVAL, "invalid"),
        (libc::ENOENT, "no_attribute"),
        (libc::EIO, "other"),
    ];
    for (errno, label) in cases {
        let e = ExecError::Kernel { path: "p".into(), data: "d".into(), errno, refusal: Refusal::of(errno) };
        assert_eq!(e.metric_label(), label);
    }
}
