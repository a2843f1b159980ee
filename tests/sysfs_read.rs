//! `sysfs::read_inventory` on hand-built trees: every fact of kernel-ap.md §2–§5 lands in the
//! typed inventory, and the kernel profile is detected as architecture.md decides.

mod sysfs_support;

use cryptopass::ap::{ApFunctions, Apqn, KernelProfile, Mask, QueueStatus};
use cryptopass::sysfs::read_inventory;
use sysfs_support::*;

#[test]
fn bus_cards_and_queues_are_read_as_the_kernel_prints_them() {
    let t = tree(&Fixture::default());
    let inv = read_inventory(t.path()).unwrap();
    assert_eq!((inv.max_adapter_id, inv.max_domain_id), (255, 84));
    assert!(inv.apmask.is_full());
    assert_eq!(inv.aqmask, Mask::full().and_not(&Mask::from_ids([6])));
    assert_eq!(inv.config.adapters, Some(Mask::from_ids([0, 1])));
    assert_eq!(inv.kernel.bus_features, vec!["APSC", "APXA", "QACT", "RC8A", "APSB"]);
    assert_eq!(inv.cards.len(), 2);
    let c = &inv.cards[&1];
    assert_eq!((c.type_name.as_str(), c.hwtype, c.raw_hwtype), ("CEX8C", 14, 14));
    assert_eq!(c.functions, ApFunctions(0x9280_0000));
    assert_eq!(c.mode(), "CCA-Coproc");
    assert!(c.online && c.config && !c.chkstop);
    assert_eq!(c.depth, Some(7));
    assert_eq!(c.driver.as_deref(), Some("cex4card"));
    assert_eq!(
        inv.queues.keys().map(|q| q.to_string()).collect::<Vec<_>>(),
        ["00.0005", "00.0006", "01.0005", "01.0006"]
    );
    let host = &inv.queues[&Apqn::new(0, 5)];
    assert_eq!(host.driver.as_deref(), Some("cex4queue"));
    assert_eq!((host.online, host.status), (Some(true), None));
    let vfio = &inv.queues[&Apqn::new(0, 6)];
    assert!(vfio.bound_to_vfio());
    assert_eq!((vfio.online, vfio.status), (None, Some(QueueStatus::Unassigned)));
    assert_eq!(vfio.driver_override, None);
    assert!(inv.kernel.vfio_ap_loaded && !inv.kernel.driver_override_capable);
    assert_eq!(inv.kernel.se_guest, None);
}

#[test]
fn queue_functions_show_the_se_bits_the_card_hides() {
    let mut f = Fixture::default();
    f.cards[0].functions = 0x9280_8000;
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!(inv.cards[&0].functions, ApFunctions(0x9280_0000));
    assert_eq!(inv.queues[&Apqn::new(0, 5)].functions.map(|f| f.se_state()), Some(2));
}

#[test]
fn profile_v1_when_an_mdev_carries_migratable() {
    let f = Fixture::default().with_mdev(Fixture::mdev_a(Some(true), false));
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!(inv.profile(), KernelProfile::V1);
    assert_eq!(inv.mdevs[UUID_A].migratable, Some(true));
}

#[test]
fn profile_latest_when_an_mdev_lacks_migratable() {
    let f = Fixture::default().with_mdev(Fixture::mdev_a(None, false));
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!(inv.profile(), KernelProfile::Latest);
    assert_eq!(inv.mdevs[UUID_A].migratable, None);
}

#[test]
fn profile_unknown_without_any_mdev() {
    let inv = read_inventory(tree(&Fixture::default()).path()).unwrap();
    assert_eq!(inv.profile(), KernelProfile::Unknown);
}

#[test]
fn profile_cannot_migrate_without_the_capability() {
    let f = Fixture { matrix_features: Some("guest_matrix hotplug ap_config"), ..Default::default() }
        .with_mdev(Fixture::mdev_a(None, false));
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!(inv.profile(), KernelProfile::CannotMigrate);
    assert!(inv.has_ap_config());
}

#[test]
fn a_missing_matrix_features_file_is_an_old_kernel_not_an_error() {
    let f = Fixture { matrix_features: None, ..Default::default() };
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!(inv.kernel.matrix_features, None);
    assert_eq!(inv.profile(), KernelProfile::CannotMigrate);
}

#[test]
fn without_vfio_ap_there_is_no_matrix_and_no_mdev() {
    let f = Fixture { vfio_ap: false, ..Default::default() };
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert!(!inv.kernel.vfio_ap_loaded);
    assert!(inv.mdevs.is_empty());
}

#[test]
fn config_masks_may_be_not_supported() {
    let f = Fixture { adapters: None, usage: None, control: None, ..Default::default() }
        .with_mdev(Fixture::mdev_a(None, false));
    let inv = read_inventory(tree(&f).path()).unwrap();
    assert_eq!((inv.config.adapters, inv.config.usage_domains, inv.config.control_domains), (None, None, None));
    // Without a control-domain mask every assigned control domain reaches the guest.
    assert_eq!(inv.mdevs[UUID_A].guest_matrix.control, Mask::from_ids([6]));
}

#[test]
fn tapq_failure_reads_as_unknown_functions() {
    let t = tree(&Fixture::default());
    remove(t.path(), "devices/ap/card01/01.0005/ap_functions");
    let inv = read_inventory(t.path()).unwrap();
    assert_eq!(inv.queues[&Apqn::new(1, 5)].functions, None);
    assert!(inv.queues[&Apqn::new(1, 6)].functions.is_some());
}

#[test]
fn a_queue_without_driver_link_is_unbound() {
    let t = tree(&Fixture::default());
    remove(t.path(), "devices/ap/card00/00.0005/driver");
    remove(t.path(), "devices/ap/card00/00.0005/online");
    let q = &read_inventory(t.path()).unwrap().queues[&Apqn::new(0, 5)];
    assert_eq!((q.driver.as_deref(), q.online), (None, None));
    assert!(!q.bound_to_host() && !q.bound_to_vfio());
}

#[test]
fn an_mdev_in_use_is_seen_through_its_queues() {
    let f = Fixture::default().with_mdev(Fixture::mdev_a(None, true));
    let inv = read_inventory(tree(&f).path()).unwrap();
    let m = &inv.mdevs[UUID_A];
    assert!(m.in_use);
    assert_eq!(inv.queues[&Apqn::new(0, 6)].status, Some(QueueStatus::InUse));
    let idle = Fixture::default().with_mdev(Fixture::mdev_a(None, false));
    assert!(!read_inventory(tree(&idle).path()).unwrap().mdevs[UUID_A].in_use);
}

#[test]
fn a_foreign_mdev_is_read_like_any_other() {
    // Somebody else's mdev (an administrator's, mdevctl's, IBM's DRA driver's) over-provisions
    // adapter 2, which this host does not have: the guest matrix leaves it out.
    let foreign = FMdev {
        uuid: UUID_B,
        adapters: vec![1, 2],
        domains: vec![6],
        control: vec![6, 0x20],
        migratable: None,
        in_use: false,
        iommu_group: 7,
    };
    let f = Fixture::default().with_mdev(foreign);
    let inv = read_inventory(tree(&f).path()).unwrap();
    let m = &inv.mdevs[UUID_B];
    assert_eq!(m.matrix.adapters.ids(), vec![1, 2]);
    assert_eq!(m.matrix.control.ids(), vec![6, 0x20]);
    assert_eq!(m.guest_matrix.adapters.ids(), vec![1]);
    assert_eq!(m.guest_matrix.domains.ids(), vec![6]);
    assert_eq!(m.guest_matrix.control.ids(), vec![6], "control domain 0x20 is not in the host's configuration");
    assert_eq!(m.iommu_group, Some(7));
    assert_eq!(inv.mdev_holding(Apqn::new(1, 6)).map(|m| m.uuid.as_str()), Some(UUID_B));
}

#[test]
fn mdevs_are_only_uuid_named_directories() {
    let f = Fixture::default().with_mdev(Fixture::mdev_a(None, false));
    let t = tree(&f);
    file(t.path(), "devices/vfio_ap/matrix/not-a-uuid/matrix", "zz\n");
    let inv = read_inventory(t.path()).unwrap();
    assert_eq!(inv.mdevs.keys().collect::<Vec<_>>(), [UUID_A]);
}

#[test]
fn without_guest_matrix_on_an_old_kernel_the_filter_is_applied() {
    let f = Fixture { matrix_features: None, ..Default::default() }.with_mdev(FMdev {
        adapters: vec![0, 1],
        domains: vec![5, 6],
        ..Fixture::mdev_a(None, false)
    });
    let t = tree(&f);
    remove(t.path(), &format!("devices/vfio_ap/matrix/{UUID_A}/guest_matrix"));
    let m = &read_inventory(t.path()).unwrap().mdevs[UUID_A];
    assert!(m.guest_matrix.adapters.is_empty(), "domain 5 is host-owned on both adapters");
}

#[test]
fn driver_override_marks_the_kernel_capable() {
    let f = Fixture { aqmask: Mask::full(), driver_override: true, ..Default::default() };
    let t = tree(&f);
    file(t.path(), "devices/ap/card00/00.0006/driver_override", "vfio_ap\n");
    let inv = read_inventory(t.path()).unwrap();
    assert!(inv.kernel.driver_override_capable);
    assert_eq!(inv.queues[&Apqn::new(0, 6)].driver_override.as_deref(), Some("vfio_ap"));
    assert_eq!(inv.queues[&Apqn::new(0, 5)].driver_override.as_deref(), Some(""));
}

#[test]
fn secure_execution_state_comes_from_the_ultravisor() {
    for se in [true, false] {
        let f = Fixture { se_guest: Some(se), ..Default::default() };
        assert_eq!(read_inventory(tree(&f).path()).unwrap().kernel.se_guest, Some(se));
    }
}

#[test]
fn kernel_identity_comes_from_snapshot_json() {
    let f = Fixture {
        meta: Some(
            r#"{"kernelRelease":"6.19.0-cp","vfioApStream":"v5","hostname":"z16-a","takenAt":"2026-11-02T09:15:00Z","cryptopassVersion":"0.1.0","unreadable":{}}"#,
        ),
        ..Default::default()
    };
    let k = read_inventory(tree(&f).path()).unwrap().kernel;
    assert_eq!(k.release.as_deref(), Some("6.19.0-cp"));
    assert_eq!(k.vfio_ap_stream.as_deref(), Some("v5"));
    assert_eq!(k.hostname.as_deref(), Some("z16-a"));
}

#[test]
fn a_plain_tree_without_snapshot_json_has_no_identity() {
    let k = read_inventory(tree(&Fixture::default()).path()).unwrap().kernel;
    assert_eq!((k.release, k.vfio_ap_stream, k.hostname), (None, None, None));
}

#[test]
fn a_card_without_driver_may_lack_type_and_online() {
    let t = tree(&Fixture::default());
    for f in ["driver", "type", "online"] {
        remove(t.path(), &format!("devices/ap/card01/{f}"));
    }
    let c = &read_inventory(t.path()).unwrap().cards[&1];
    assert_eq!((c.driver.as_deref(), c.type_name.as_str(), c.online), (None, "", false));
}

#[test]
fn noise_in_device_directories_is_ignored() {
    let t = tree(&Fixture::default());
    file(t.path(), "devices/ap/card00/00.0005.bak", "x");
    file(t.path(), "devices/ap/cardzz/hwtype", "x");
    file(t.path(), "devices/ap/card0A/hwtype", "x");
    assert_eq!(read_inventory(t.path()).unwrap().cards.len(), 2);
}

#[test]
fn a_root_without_the_ap_bus_says_so() {
    let t = tempfile::tempdir().unwrap();
    let e = read_inventory(t.path()).unwrap_err();
    assert_eq!(e.path(), t.path().join("bus/ap"));
    assert!(e.to_string().contains("expected the AP bus directory"), "{e}");
}
