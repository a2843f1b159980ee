use super::convert::{inventory_from_status, status_from_inventory};
use super::passthrough::{AllNodes, Standby};

#[test]
fn node_status_round_trips_the_inventory() {
    let k = crate::sim::Kernel::from_yaml(
        "kernel: { profile: mig-v1, release: 6.19.0 }\nusageDomains: [\"0-3\"]\napmask: \"0x3f\"\ncards:\n  - { id: 0, type: CEX8 }\n  - { id: 1, type: CEX7, mode: EP11 }\nqueues:\n  - { apqn: \"01.0002\", chkstop: true }\n  - { apqn: \"00.0001\", seState: 1 }\nmdevs:\n  - { uuid: 4b1d0000-0000-4000-8000-000000000001, adapters: [0, 1], domains: [1], controlDomains: [1], migratable: true }\n",
        None,
        "t",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    crate::sim::dump::dump(&k, &dir.path().join("t")).unwrap();
    let mut inv = crate::sysfs::read_inventory(&dir.path().join("t")).unwrap();
    let back = inventory_from_status(&status_from_inventory(&inv));
    inv.kernel.hostname = None; // not reported in the status
    assert_eq!(back, inv);
}

#[test]
fn standby_is_a_count_or_all() {
    let s: Standby = serde_json::from_str("2").unwrap();
    assert_eq!(s.wanted(5), 2);
    assert_eq!(s.wanted(1), 1);
    let all: Standby = serde_json::from_str("\"All\"").unwrap();
    assert_eq!(all, Standby::All(AllNodes::All));
    assert_eq!(all.wanted(7), 7);
    assert!(serde_json::from_str::<Standby>("\"some\"").is_err());
}
