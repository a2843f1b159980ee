//! The reader against the simulator's own `sim dump`: a dumped machine reads back as the host the
//! machine file describes, including a queue whose TAPQ fails (`EIO`, left out of the dump).

use std::path::Path;

use cryptopass::ap::{ApFunctions, Apqn, KernelProfile, Mask, QueueStatus};
use cryptopass::sim::{Kernel, dump::dump};
use cryptopass::sysfs::{SnapshotMeta, read_inventory, snapshot};

const U: &str = "4b1d0000-0000-4000-8000-0000000000cc";

fn machine(profile: &str, mdev: bool) -> String {
    // The override profile hands queues to vfio_ap by driver_override, the others by aqmask.
    let (aqmask, overrides) = if profile == "override" {
        ("", "\n  - { apqn: \"00.0005\", driverOverride: vfio_ap }\n  - { apqn: \"01.0005\", driverOverride: vfio_ap }")
    } else {
        ("aqmask: \"0xfbff\"", "")
    };
    let mut m = format!(
        r#"
hostname: z16-a
kernel: {{ profile: {profile}, release: 6.19.0-cp, vfioApStream: v5 }}
maxDomainId: 84
usageDomains: ["0-15"]
{aqmask}
cards:
  - {{ id: 0, type: CEX8, mode: CCA }}
  - {{ id: 1, type: CEX7, mode: EP11 }}
queues:
  - {{ apqn: "01.0003", chkstop: true }}{overrides}
"#
    );
    if mdev {
        let migratable = if profile == "mig-v1" { ", migratable: true" } else { "" };
        m.push_str(&format!(
            "mdevs:\n  - {{ uuid: {U}, adapters: [0, 1], domains: [5], controlDomains: [5]{migratable}, inUse: true }}\n"
        ));
    }
    m
}

fn dumped(profile: &str, mdev: bool) -> tempfile::TempDir {
    let k = Kernel::from_yaml(&machine(profile, mdev), None, "test").unwrap();
    let t = tempfile::tempdir().unwrap();
    dump(&k, &t.path().join("tree")).unwrap();
    t
}

fn root(t: &tempfile::TempDir) -> std::path::PathBuf {
    t.path().join("tree")
}

#[test]
fn a_dumped_machine_reads_back_as_described() {
    let t = dumped("mig-v1", true);
    let inv = read_inventory(&root(&t)).unwrap();
    assert_eq!(inv.profile(), KernelProfile::V1);
    assert_eq!(inv.kernel.release.as_deref(), Some("6.19.0-cp"));
    assert_eq!(inv.kernel.vfio_ap_stream.as_deref(), Some("v5"));
    assert_eq!(inv.kernel.hostname.as_deref(), Some("z16-a"));
    assert_eq!(inv.max_domain_id, 84);
    assert_eq!(inv.config.usage_domains, Some(Mask::from_ids(0..=15)));
    assert_eq!(inv.cards[&1].raw_hwtype, 13);
    assert_eq!(inv.cards[&1].mode(), "EP11-Coproc");
    assert_eq!(inv.queues.len(), 32);
    let q = &inv.queues[&Apqn::new(0, 5)];
    assert!(q.bound_to_vfio());
    assert_eq!(q.status, Some(QueueStatus::InUse));
    assert!(inv.queues[&Apqn::new(0, 4)].bound_to_host());
    let m = &inv.mdevs[U];
    assert!(m.in_use);
    assert_eq!(m.migratable, Some(true));
    assert_eq!(m.guest_matrix.adapters.ids(), vec![0, 1]);
    assert_eq!(m.guest_matrix.control, Mask::from_ids([5]));
}

#[test]
fn tapq_failure_in_a_dump_is_unreadable_and_reads_as_unknown() {
    let t = dumped("mig-latest", false);
    let meta = SnapshotMeta::read(&root(&t)).unwrap().unwrap();
    assert_eq!(meta.unreadable.get("devices/ap/card01/01.0003/ap_functions").map(String::as_str), Some("EIO"));
    let inv = read_inventory(&root(&t)).unwrap();
    let q = &inv.queues[&Apqn::new(1, 3)];
    assert_eq!((q.functions, q.chkstop), (None, true));
    assert_eq!(inv.queues[&Apqn::new(1, 4)].functions, Some(ApFunctions(inv.cards[&1].functions.0)));
}

#[test]
fn every_simulator_profile_is_detected() {
    for (profile, mdev, want) in [
        ("base", true, KernelProfile::CannotMigrate),
        ("mig-v1", true, KernelProfile::V1),
        ("mig-latest", true, KernelProfile::Latest),
        ("mig-latest", false, KernelProfile::Unknown),
        ("override", true, KernelProfile::Latest),
    ] {
        let inv = read_inventory(&root(&dumped(profile, mdev))).unwrap();
        assert_eq!(inv.profile(), want, "{profile}");
        assert_eq!(inv.kernel.driver_override_capable, profile == "override", "{profile}");
    }
}

#[test]
fn a_snapshot_of_a_dump_reads_back_the_same() {
    let t = dumped("mig-v1", true);
    let out = t.path().join("snap");
    let meta = snapshot::take(&root(&t), &out).unwrap();
    assert_eq!(meta.kernel_release.as_deref(), Some("6.19.0-cp"));
    assert!(Path::new(&out).join("snapshot.json").is_file());
    assert_eq!(read_inventory(&out).unwrap(), read_inventory(&root(&t)).unwrap());
}
