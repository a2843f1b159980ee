//! Malformed trees: every attribute the reader parses, given garbage or taken away, gives an
//! `Error` whose message names that file, and never a panic.

mod sysfs_support;

use std::path::Path;

use cryptopass::sysfs::read_inventory;
use proptest::prelude::*;
use sysfs_support::*;

fn host() -> tempfile::TempDir {
    let mut f = Fixture {
        se_guest: Some(false),
        driver_override: true,
        aqmask: cryptopass::ap::Mask::full(),
        ..Default::default()
    };
    f.mdevs.push(Fixture::mdev_a(Some(true), false));
    tree(&f)
}

fn assert_names(root: &Path, rel: &str, what: &str) {
    match read_inventory(root) {
        Ok(_) => panic!("{what} of {rel}: read_inventory succeeded"),
        Err(e) => {
            let full = root.join(rel);
            assert!(e.to_string().contains(&full.display().to_string()), "{what} of {rel}: {e}");
            assert_eq!(e.path(), full, "{what} of {rel}");
        }
    }
}

const M: &str = "devices/vfio_ap/matrix";

/// (attribute, garbage) for every parsed attribute.
fn garbage() -> Vec<(String, &'static str)> {
    let mdev = format!("{M}/{UUID_A}");
    let mut v: Vec<(String, &str)> = vec![
        ("bus/ap/apmask".into(), "zz\n"),
        ("bus/ap/aqmask".into(), "0x41\n"),
        ("bus/ap/ap_adapter_mask".into(), "not configured\n"),
        ("bus/ap/ap_usage_domain_mask".into(), "0xffff\n"),
        ("bus/ap/ap_control_domain_mask".into(), "\n"),
        ("bus/ap/ap_max_adapter_id".into(), "256\n"),
        ("bus/ap/ap_max_domain_id".into(), "0x54\n"),
        ("bus/ap/features".into(), "APSC;APXA\n"),
        ("devices/ap/card00/hwtype".into(), "fourteen\n"),
        ("devices/ap/card00/raw_hwtype".into(), "-1\n"),
        ("devices/ap/card00/ap_functions".into(), "0x9280\n"),
        ("devices/ap/card00/online".into(), "yes\n"),
        ("devices/ap/card00/config".into(), "2\n"),
        ("devices/ap/card00/chkstop".into(), "\n"),
        ("devices/ap/card00/depth".into(), "deep\n"),
        ("devices/ap/card01/01.0005/config".into(), "true\n"),
        ("devices/ap/card01/01.0005/chkstop".into(), "0 0\n"),
        ("devices/ap/card01/01.0005/ap_functions".into(), "0xZZ\n"),
        ("devices/ap/card01/01.0006/status".into(), "busy\n"),
        ("firmware/uv/prot_virt_guest".into(), "yes\n"),
        (format!("{M}/features"), "guest matrix!\n"),
        (format!("{mdev}/matrix"), "00.05\n"),
        (format!("{mdev}/guest_matrix"), "zz\n"),
        (format!("{mdev}/control_domains"), "6\n"),
        (format!("{mdev}/migratable"), "2\n"),
        ("snapshot.json".into(), "{\"kernelRelease\": 6.19"),
    ];
    v.sort();
    v
}

#[test]
fn garbage_in_any_parsed_attribute_names_the_file() {
    for (rel, junk) in garbage() {
        let t = host();
        file(t.path(), &rel, junk);
        assert_names(t.path(), &rel, "garbage");
    }
}

#[test]
fn online_of_a_host_queue_is_parsed_too() {
    let t = tree(&Fixture::default());
    file(t.path(), "devices/ap/card00/00.0005/online", "on\n");
    assert_names(t.path(), "devices/ap/card00/00.0005/online", "garbage");
}

#[test]
fn bytes_that_are_not_text_name_the_file() {
    let t = host();
    std::fs::write(t.path().join("devices/ap/card00/type"), [0xff, 0xfe, b'\n']).unwrap();
    assert_names(t.path(), "devices/ap/card00/type", "non-UTF-8");
}

#[test]
fn a_missing_required_attribute_names_the_file() {
    let mdev = format!("{M}/{UUID_A}");
    let required = [
        "bus/ap/apmask",
        "bus/ap/aqmask",
        "bus/ap/ap_adapter_mask",
        "bus/ap/ap_usage_domain_mask",
        "bus/ap/ap_control_domain_mask",
        "bus/ap/ap_max_adapter_id",
        "bus/ap/ap_max_domain_id",
        "bus/ap/features",
        "devices/ap",
        "devices/ap/card00/hwtype",
        "devices/ap/card00/raw_hwtype",
        "devices/ap/card00/ap_functions",
        "devices/ap/card00/type",
        "devices/ap/card00/online",
        "devices/ap/card00/config",
        "devices/ap/card00/chkstop",
        "devices/ap/card01/01.0005/config",
        "devices/ap/card01/01.0005/chkstop",
        &format!("{mdev}/matrix"),
        &format!("{mdev}/guest_matrix"),
        &format!("{mdev}/control_domains"),
    ];
    for rel in required {
        let t = host();
        remove(t.path(), rel);
        assert_names(t.path(), rel, "absence");
    }
}

#[test]
fn optional_attributes_may_be_missing() {
    let mdev = format!("{M}/{UUID_A}");
    let optional = [
        "devices/ap/card00/depth",
        "devices/ap/card01/01.0005/ap_functions",
        "devices/ap/card01/01.0005/driver_override",
        "devices/ap/card01/01.0006/status",
        "firmware/uv/prot_virt_guest",
        &format!("{mdev}/migratable"),
        &format!("{mdev}/iommu_group"),
        "snapshot.json",
    ];
    for rel in optional {
        let t = host();
        if t.path().join(rel).exists() || std::fs::symlink_metadata(t.path().join(rel)).is_ok() {
            remove(t.path(), rel);
        }
        if let Err(e) = read_inventory(t.path()) {
            panic!("without {rel}: {e}");
        }
    }
}

#[test]
fn a_driver_that_is_not_a_link_names_the_file() {
    let t = host();
    remove(t.path(), "devices/ap/card00/00.0005/driver");
    file(t.path(), "devices/ap/card00/00.0005/driver", "cex4queue\n");
    assert_names(t.path(), "devices/ap/card00/00.0005/driver", "a plain file");
}

#[test]
fn an_iommu_group_link_must_end_in_a_number() {
    let t = host();
    let rel = format!("{M}/{UUID_A}/iommu_group");
    remove(t.path(), &rel);
    link(t.path(), &rel, "../../../../kernel/iommu_groups/abc");
    assert_names(t.path(), &rel, "a bad link");
}

#[test]
fn a_queue_directory_beyond_domain_255_names_it() {
    let t = host();
    file(t.path(), "devices/ap/card00/00.0100/config", "1\n");
    assert_names(t.path(), "devices/ap/card00/00.0100", "domain 256");
}

#[test]
fn a_queue_under_the_wrong_card_names_it() {
    let t = host();
    file(t.path(), "devices/ap/card00/01.0007/config", "1\n");
    assert_names(t.path(), "devices/ap/card00/01.0007", "a stray queue");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_content_never_panics_and_errors_name_the_file(
        which in 0usize..6,
        junk in proptest::collection::vec(any::<u8>(), 0..90),
    ) {
        let mdev = format!("{M}/{UUID_A}");
        let rels = [
            "bus/ap/apmask".to_string(),
            "bus/ap/ap_max_domain_id".to_string(),
            "devices/ap/card00/ap_functions".to_string(),
            "devices/ap/card01/01.0006/status".to_string(),
            format!("{mdev}/matrix"),
            format!("{mdev}/control_domains"),
        ];
        let t = host();
        let rel = &rels[which];
        std::fs::write(t.path().join(rel), &junk).unwrap();
        if let Err(e) = read_inventory(t.path()) {
            let want = t.path().join(rel);
            prop_assert_eq!(e.path(), want.as_path(), "{}", e);
        }
    }

    #[test]
    fn random_text_in_masks_and_features_never_panics(s in "\\PC{0,80}", which in 0usize..3) {
        let rels = ["bus/ap/aqmask", "bus/ap/ap_control_domain_mask", "bus/ap/features"];
        let t = host();
        file(t.path(), rels[which], &s);
        if let Err(e) = read_inventory(t.path()) {
            let want = t.path().join(rels[which]);
            prop_assert_eq!(e.path(), want.as_path(), "{}", e);
        }
    }
}
