//! Golden tests of the simulated kernel's errno and message table (kernel-ap.md §3, §5), through
//! real file I/O on a FUSE mount.

mod common;

use common::*;

fn give_to_vfio(m: &Mounted) {
    // every queue of adapters 0-1 to vfio_ap (a queue is the host's only while both bits are set)
    m.write("bus/ap/apmask", "-0-1").unwrap();
}

#[test]
fn masks_print_64_hex_digits_and_accept_absolute_and_relative_writes() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    assert_eq!(m.read("bus/ap/apmask").unwrap(), format!("0x{}\n", "f".repeat(64)));
    m.write("bus/ap/apmask", "0x41").unwrap();
    assert_eq!(m.read("bus/ap/apmask").unwrap(), format!("0x41{}\n", "0".repeat(62)));
    m.write("bus/ap/apmask", "+0,-1,+2-3").unwrap();
    assert_eq!(m.read("bus/ap/apmask").unwrap(), format!("0xb1{}\n", "0".repeat(62)));
    m.write("bus/ap/aqmask", "-0x03,+010\n").unwrap();
    assert!(m.read("bus/ap/aqmask").unwrap().starts_with("0xefff"));
}

#[test]
fn malformed_mask_writes_are_einval_and_change_nothing() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    let before = m.read("bus/ap/apmask").unwrap();
    for bad in ["0xzz", &format!("0x{}", "f".repeat(65)), "+256", "+3-1", "+1;", "- 1", "0x41 junk"] {
        assert_eq!(m.write("bus/ap/apmask", bad), Err(libc::EINVAL), "{bad:?}");
    }
    assert_eq!(m.read("bus/ap/apmask").unwrap(), before);
}

#[test]
fn returning_a_queue_held_by_an_mdev_to_the_host_is_ebusy_with_the_kernel_message() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    m.write(&format!("{}/assign_adapter", mdev_dir(U1)), "1").unwrap();
    m.write(&format!("{}/assign_domain", mdev_dir(U1)), "5").unwrap();
    let before = m.read("bus/ap/apmask").unwrap();
    assert_eq!(m.write("bus/ap/apmask", "+1"), Err(libc::EBUSY));
    assert_eq!(m.read("bus/ap/apmask").unwrap(), before);
    assert!(
        m.log().contains(&format!("vfio_ap_mdev {U1}: Can not reserve queue 01.0005 for host driver: in use by mdev"))
    );
    // bits of queues nobody holds go back fine; clearing never fails
    m.write("bus/ap/apmask", "+0").unwrap();
    m.write("bus/ap/apmask", "-0-1").unwrap();
}

#[test]
fn mdev_create_checks_uuid_duplicates_and_instances() {
    let mut k = cryptopass::sim::Kernel::from_yaml(&small_machine("mig-latest"), None, "t").unwrap();
    k.available_instances = 1;
    let m = Mounted::new(k);
    assert_eq!(m.write(CREATE, "not-a-uuid"), Err(libc::EINVAL));
    assert_eq!(m.write(CREATE, &U1[..35]), Err(libc::EINVAL));
    m.write(CREATE, &format!("{}\n", U1.to_uppercase())).unwrap();
    assert!(m.path(mdev_dir(U1).as_str()).is_dir(), "device name is the lowercase UUID");
    assert_eq!(m.write(CREATE, U1), Err(libc::EEXIST));
    assert_eq!(m.write(CREATE, U2), Err(libc::EUSERS));
    let avail = "devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/available_instances";
    assert_eq!(m.read(avail).unwrap(), "0\n");
    m.write(&format!("{}/remove", mdev_dir(U1)), "1").unwrap();
    assert_eq!(m.read(avail).unwrap(), "1\n");
}

#[test]
fn assign_parses_c_base_zero_and_returns_einval_erange_enodev() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    let a = format!("{}/assign_adapter", mdev_dir(U1));
    assert_eq!(m.write(&a, "abc"), Err(libc::EINVAL));
    assert_eq!(m.write(&a, "99999999999999999999999"), Err(libc::ERANGE));
    assert_eq!(m.write(&a, "64"), Err(libc::ENODEV), "above ap_max_adapter_id 63");
    m.write(&a, "0x1").unwrap();
    m.write(&a, "01").unwrap(); // already set: success
    m.write(&format!("{}/assign_domain", mdev_dir(U1)), "05").unwrap(); // octal 5
    assert_eq!(m.write(&format!("{}/assign_domain", mdev_dir(U1)), "85"), Err(libc::ENODEV));
    assert_eq!(m.read(&format!("{}/matrix", mdev_dir(U1))).unwrap(), "01.0005\n");
}

#[test]
fn assigning_a_host_owned_queue_is_eaddrnotavail_and_rolled_back() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    let d = mdev_dir(U1);
    m.write(&format!("{d}/assign_domain"), "7").unwrap();
    assert_eq!(m.write(&format!("{d}/assign_adapter"), "2"), Err(libc::EADDRNOTAVAIL));
    assert_eq!(m.read(&format!("{d}/matrix")).unwrap(), ".0007\n");
    // APQNs absent from the host configuration may be assigned (over-provisioning)
    m.write(&format!("{d}/assign_adapter"), "0x30").unwrap_err();
    m.write("bus/ap/apmask", "-0x30").unwrap();
    m.write(&format!("{d}/assign_adapter"), "0x30").unwrap();
    assert_eq!(m.read(&format!("{d}/matrix")).unwrap(), "30.0007\n");
}

#[test]
fn sharing_a_queue_is_eaddrinuse_with_the_kernel_message_and_rolled_back() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    m.write(CREATE, U2).unwrap();
    m.write(
        &format!("{}/ap_config", mdev_dir(U1)),
        &cryptopass::ap::Matrix::new(
            cryptopass::ap::Mask::from_ids([0]),
            cryptopass::ap::Mask::from_ids([5]),
            cryptopass::ap::Mask::empty(),
        )
        .ap_config_string(),
    )
    .unwrap();
    m.write(&format!("{}/assign_domain", mdev_dir(U2)), "5").unwrap();
    assert_eq!(m.write(&format!("{}/assign_adapter", mdev_dir(U2)), "0"), Err(libc::EADDRINUSE));
    assert!(m.log().contains(&format!(
        "vfio_ap_mdev {U2}: Userspace may not assign queue 00.0005 to mdev: already assigned to {U1}"
    )));
    assert_eq!(m.read(&format!("{}/matrix", mdev_dir(U2))).unwrap(), ".0005\n");
    // control domains are not checked: they may be shared
    m.write(&format!("{}/assign_control_domain", mdev_dir(U1)), "5").unwrap();
    m.write(&format!("{}/assign_control_domain", mdev_dir(U2)), "5").unwrap();
    assert_eq!(m.read(&format!("{}/control_domains", mdev_dir(U2))).unwrap(), "0005\n");
    // unassigning what is not set is success
    m.write(&format!("{}/unassign_adapter", mdev_dir(U2)), "9").unwrap();
}

#[test]
fn ap_config_is_all_or_nothing() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    m.write(CREATE, U2).unwrap();
    let cfg = |a: &[u8], d: &[u8], c: &[u8]| {
        use cryptopass::ap::{Mask, Matrix};
        Matrix::new(
            Mask::from_ids(a.iter().copied()),
            Mask::from_ids(d.iter().copied()),
            Mask::from_ids(c.iter().copied()),
        )
        .ap_config_string()
    };
    let p1 = format!("{}/ap_config", mdev_dir(U1));
    let p2 = format!("{}/ap_config", mdev_dir(U2));
    m.write(&p1, &cfg(&[0, 1], &[5], &[5])).unwrap();
    assert_eq!(m.read(&p1).unwrap(), cfg(&[0, 1], &[5], &[5]));
    assert_eq!(m.write(&p2, "0x80,0x80"), Err(libc::EINVAL));
    assert_eq!(m.write(&p2, &cfg(&[2], &[7], &[])), Err(libc::EADDRNOTAVAIL));
    assert_eq!(m.write(&p2, &cfg(&[1], &[5, 6], &[])), Err(libc::EADDRINUSE));
    assert_eq!(m.write(&p2, &cfg(&[64], &[6], &[])), Err(libc::ENODEV));
    assert_eq!(m.write(&p2, &cfg(&[1], &[6], &[90])), Err(libc::ENODEV));
    assert_eq!(m.read(&p2).unwrap(), cfg(&[], &[], &[]), "nothing applied");
    m.write(&p2, &cfg(&[0, 1], &[6], &[5])).unwrap();
    assert_eq!(m.read(&format!("{}/matrix", mdev_dir(U2))).unwrap(), "00.0006\n01.0006\n");
}

#[test]
fn migratable_exists_only_on_v1_kernels_and_takes_0_or_1() {
    let m = Mounted::yaml(&small_machine("mig-v1"));
    m.write(CREATE, U1).unwrap();
    let p = format!("{}/migratable", mdev_dir(U1));
    assert_eq!(m.read(&p).unwrap(), "0\n");
    m.write(&p, "1\n").unwrap();
    assert_eq!(m.read(&p).unwrap(), "1\n");
    assert_eq!(m.write(&p, "2"), Err(libc::EINVAL));
    assert_eq!(m.write(&p, "yes"), Err(libc::EINVAL));
    cryptopass::sim::lock(&m.sim).kernel.mdevs.get_mut(U1).unwrap().migrating = true;
    assert_eq!(m.write(&p, "0"), Err(libc::EBUSY));
    assert_eq!(m.read("devices/vfio_ap/matrix/features").unwrap(), "guest_matrix hotplug ap_config migratable\n");

    let l = Mounted::yaml(&small_machine("mig-latest"));
    l.write(CREATE, U1).unwrap();
    assert_eq!(l.read(&format!("{}/migratable", mdev_dir(U1))), Err(libc::ENOENT));
    assert_eq!(l.read("devices/vfio_ap/matrix/features").unwrap(), "guest_matrix hotplug ap_config migratable\n");
    let b = Mounted::yaml(&small_machine("base"));
    assert_eq!(b.read("devices/vfio_ap/matrix/features").unwrap(), "guest_matrix hotplug ap_config\n");
}

#[test]
fn read_only_and_write_only_attributes_refuse_the_other_direction_with_eacces() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    assert_eq!(m.write("bus/ap/ap_max_domain_id", "1"), Err(libc::EACCES));
    assert_eq!(m.read(CREATE), Err(libc::EACCES));
    assert_eq!(std::fs::metadata(m.path("bus/ap/apmask")).unwrap().len(), 4096, "sysfs reports 4096");
}

#[test]
fn removing_an_mdev_a_guest_holds_is_refused() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    m.write(CREATE, U1).unwrap();
    assert_eq!(m.write(&format!("{}/remove", mdev_dir(U1)), "x"), Err(libc::EINVAL));
    cryptopass::sim::lock(&m.sim).kernel.mdevs.get_mut(U1).unwrap().in_use = true;
    assert_eq!(m.write(&format!("{}/remove", mdev_dir(U1)), "1"), Err(libc::EBUSY));
    assert!(m.path(&mdev_dir(U1)).exists());
}

#[test]
fn queues_report_driver_status_and_tapq_failure() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    let q = "devices/ap/card01/01.0005";
    assert!(std::fs::read_link(m.path(&format!("{q}/driver"))).unwrap().ends_with("vfio_ap"));
    assert_eq!(m.read(&format!("{q}/status")).unwrap(), "unassigned\n");
    assert_eq!(m.read(&format!("{q}/online")), Err(libc::ENOENT), "online only while host-bound");
    assert_eq!(m.read("devices/ap/card02/02.0007/online").unwrap(), "1\n");
    m.write(CREATE, U1).unwrap();
    m.write(&format!("{}/assign_adapter", mdev_dir(U1)), "1").unwrap();
    m.write(&format!("{}/assign_domain", mdev_dir(U1)), "5").unwrap();
    assert_eq!(m.read(&format!("{q}/status")).unwrap(), "assigned\n");
    cryptopass::sim::lock(&m.sim).kernel.mdevs.get_mut(U1).unwrap().in_use = true;
    assert_eq!(m.read(&format!("{q}/status")).unwrap(), "in use\n");
    assert_eq!(m.read(&format!("{q}/ap_functions")).unwrap(), "0x92800000\n");
    cryptopass::sim::lock(&m.sim).kernel.queues.entry("01.0005".parse().unwrap()).or_default().chkstop = Some(true);
    assert_eq!(m.read(&format!("{q}/ap_functions")), Err(libc::EIO));
    assert_eq!(m.read("devices/ap/card02/type").unwrap(), "CEX7P\n");
    assert_eq!(m.read("devices/ap/card02/raw_hwtype").unwrap(), "13\n");
}

#[test]
fn guest_matrix_drops_the_whole_adapter_when_one_queue_is_not_bound_to_vfio_ap() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    give_to_vfio(&m);
    m.write(CREATE, U1).unwrap();
    let d = mdev_dir(U1);
    m.write(&format!("{d}/assign_adapter"), "0").unwrap();
    m.write(&format!("{d}/assign_adapter"), "1").unwrap();
    m.write(&format!("{d}/assign_domain"), "5").unwrap();
    m.write(&format!("{d}/assign_domain"), "6").unwrap();
    m.write(&format!("{d}/assign_control_domain"), "0x50").unwrap();
    assert_eq!(m.read(&format!("{d}/guest_matrix")).unwrap(), "00.0005\n00.0006\n01.0005\n01.0006\n");
    // control domain 0x50 is not in the host's control domain mask
    assert_eq!(m.read(&format!("{d}/control_domains")).unwrap(), "0050\n");
    // card 1 leaves the configuration: its adapter is filtered out of the guest
    cryptopass::sim::lock(&m.sim).kernel.cfg_adapters.set(1, false);
    assert_eq!(m.read(&format!("{d}/guest_matrix")).unwrap(), "00.0005\n00.0006\n");
    // a domain outside the usage configuration is filtered too, an unbound queue drops its adapter
    cryptopass::sim::lock(&m.sim).kernel.cards.get_mut(&0).unwrap().hwtype = 9;
    assert_eq!(m.read(&format!("{d}/guest_matrix")).unwrap(), ".0005\n.0006\n", "no adapter left: domains only");
}

#[test]
fn mdevs_have_type_and_iommu_group_links_and_bus_links() {
    let m = Mounted::yaml(&small_machine("mig-latest"));
    m.write(CREATE, U1).unwrap();
    let d = m.path(&mdev_dir(U1));
    assert_eq!(
        std::fs::read_link(d.join("mdev_type")).unwrap().to_str().unwrap(),
        "../mdev_supported_types/vfio_ap-passthrough"
    );
    assert!(
        std::fs::read_link(d.join("iommu_group"))
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("../../../../kernel/iommu_groups/")
    );
    assert!(d.join("iommu_group").is_dir(), "the link resolves inside the tree");
    assert_eq!(std::fs::read_to_string(d.join("mdev_type/name")).unwrap(), "VFIO AP Passthrough Device\n");
    assert_eq!(std::fs::read_to_string(m.path(&format!("bus/mdev/devices/{U1}/matrix"))).unwrap(), "");
    assert!(m.path("class/mdev_bus/matrix/mdev_supported_types/vfio_ap-passthrough/device_api").exists());
    assert!(std::fs::read_link(m.path("bus/ap/devices/card00")).is_ok());
    assert_eq!(m.read("bus/ap/bindings").unwrap(), "51/51 (complete)\n");
    assert_eq!(m.read("bus/ap/features").unwrap(), "APSC APXA QACT RC8A APSB\n");
}

#[test]
fn driver_override_needs_full_masks_and_excludes_mask_edits() {
    let m = Mounted::yaml(&small_machine("override"));
    let q = "devices/ap/card00/00.0005";
    assert_eq!(m.read(&format!("{q}/driver_override")).unwrap(), "\n");
    m.write(&format!("{q}/driver_override"), "vfio_ap\n").unwrap();
    assert_eq!(m.read(&format!("{q}/driver_override")).unwrap(), "vfio_ap\n");
    assert!(std::fs::read_link(m.path(&format!("{q}/driver"))).unwrap().ends_with("vfio_ap"));
    assert_eq!(m.write("bus/ap/apmask", "-0"), Err(libc::EINVAL), "no mask edits while an override is set");
    m.write(&format!("{q}/driver_override"), "\n").unwrap();
    m.write("bus/ap/apmask", "-0").unwrap();
    assert_eq!(m.write(&format!("{q}/driver_override"), "vfio_ap"), Err(libc::EINVAL), "masks not all ones");
}
