//! `sysfs::snapshot::take`: a plain copy of the AP-relevant sysfs that reads back as the same
//! inventory, with links verbatim, write-only attributes empty and the noise left out.

mod sysfs_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cryptopass::sysfs::snapshot::{SKIPPED, take};
use cryptopass::sysfs::{SnapshotMeta, read_inventory};
use sysfs_support::*;

/// Every file (bytes) and link (target) below `root`, by relative path; directories as `None`.
fn listing(root: &Path) -> BTreeMap<PathBuf, Option<Result<Vec<u8>, PathBuf>>> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Option<Result<Vec<u8>, PathBuf>>>) {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.insert(rel.to_path_buf(), Some(Err(fs::read_link(&p).unwrap())));
        } else if m.is_dir() {
            out.insert(rel.to_path_buf(), None);
            for e in fs::read_dir(&p).unwrap() {
                walk(root, &rel.join(e.unwrap().file_name()), out);
            }
        } else {
            out.insert(rel.to_path_buf(), Some(Ok(fs::read(&p).unwrap())));
        }
    }
    let mut out = BTreeMap::new();
    for e in fs::read_dir(root).unwrap() {
        walk(root, Path::new(&e.unwrap().file_name()), &mut out);
    }
    out
}

fn host() -> Fixture {
    Fixture { se_guest: Some(false), ..Default::default() }.with_mdev(Fixture::mdev_a(Some(true), true))
}

fn snap(src: &Path) -> (tempfile::TempDir, PathBuf, SnapshotMeta) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("snap");
    let meta = take(src, &out).unwrap();
    (t, out, meta)
}

#[test]
fn a_snapshot_reads_back_as_the_same_inventory() {
    for f in [host(), Fixture::default(), Fixture { vfio_ap: false, ..Default::default() }] {
        let src = tree(&f);
        let (_t, out, _) = snap(src.path());
        assert_eq!(read_inventory(&out).unwrap(), read_inventory(src.path()).unwrap());
    }
}

#[test]
fn files_and_links_are_copied_exactly_and_noise_is_left_out() {
    let src = tree(&host());
    let (_t, out, _) = snap(src.path());
    let (orig, copy) = (listing(src.path()), listing(&out));
    let noise = |p: &Path| p.components().any(|c| SKIPPED.iter().any(|s| c.as_os_str() == *s));
    let outside = |p: &Path| p.starts_with("kernel") || p == Path::new("snapshot.json");
    for (p, v) in &orig {
        if noise(p) || outside(p) {
            assert!(!copy.contains_key(p) || outside(p), "{} should be left out", p.display());
        } else {
            assert_eq!(copy.get(p), Some(v), "{}", p.display());
        }
    }
    for p in copy.keys() {
        assert!(orig.contains_key(p) || outside(p), "{} is not in the source", p.display());
    }
}

#[test]
fn links_are_recreated_verbatim_not_followed() {
    let src = tree(&host());
    let (_t, out, _) = snap(src.path());
    for (rel, target) in [
        ("bus/ap/devices/card00", "../../../devices/ap/card00"),
        ("devices/ap/card00/00.0005/driver", "../../../../bus/ap/drivers/cex4queue"),
        ("devices/ap/card00/00.0006/driver", "../../../../bus/ap/drivers/vfio_ap"),
        (&format!("bus/mdev/devices/{UUID_A}"), &format!("../../../devices/vfio_ap/matrix/{UUID_A}")),
        (&format!("devices/vfio_ap/matrix/{UUID_A}/iommu_group"), "../../../../kernel/iommu_groups/3"),
        (&format!("devices/vfio_ap/matrix/{UUID_A}/mdev_type"), "../mdev_supported_types/vfio_ap-passthrough"),
        ("class/mdev_bus/matrix", "../../devices/vfio_ap/matrix"),
        ("bus/matrix/devices/matrix", "../../../devices/vfio_ap/matrix"),
    ] {
        assert_eq!(fs::read_link(out.join(rel)).unwrap(), Path::new(target), "{rel}");
    }
    let group = out.join("kernel/iommu_groups/3");
    assert!(group.is_dir() && fs::read_dir(&group).unwrap().next().is_none(), "an empty group directory");
    assert!(out.join(format!("devices/vfio_ap/matrix/{UUID_A}/iommu_group")).is_dir(), "the link resolves");
    assert_eq!(fs::read(out.join("firmware/uv/prot_virt_guest")).unwrap(), b"0\n");
}

#[test]
fn write_only_attributes_are_empty_files() {
    let src = tree(&host());
    let (_t, out, meta) = snap(src.path());
    for rel in [
        "devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create",
        &format!("devices/vfio_ap/matrix/{UUID_A}/assign_adapter"),
        &format!("devices/vfio_ap/matrix/{UUID_A}/remove"),
        "bus/ap/drivers/vfio_ap/bind",
    ] {
        assert_eq!(fs::read(out.join(rel)).unwrap(), b"", "{rel}");
    }
    assert!(meta.unreadable.is_empty());
}

#[test]
fn snapshot_json_says_when_and_by_what() {
    let src = tree(&host());
    let (_t, out, meta) = snap(src.path());
    let text = fs::read_to_string(out.join("snapshot.json")).unwrap();
    let back: SnapshotMeta = serde_json::from_str(&text).unwrap();
    assert_eq!(back, meta);
    let at = meta.taken_at.unwrap();
    assert!(at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
    assert_eq!(meta.cryptopass_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(meta.kernel_release, None, "a plain tree without snapshot.json has no known release");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["unreadable"].as_object().unwrap().is_empty());
}

#[test]
fn the_source_identity_is_carried_over() {
    let f = Fixture {
        meta: Some(
            r#"{"kernelRelease":"6.19.0-cp","vfioApStream":"v5","hostname":"z16-b","takenAt":"2020-01-01T00:00:00Z"}"#,
        ),
        ..host()
    };
    let src = tree(&f);
    let (_t, out, meta) = snap(src.path());
    assert_eq!(meta.kernel_release.as_deref(), Some("6.19.0-cp"));
    assert_eq!(meta.vfio_ap_stream.as_deref(), Some("v5"));
    assert_eq!(meta.hostname.as_deref(), Some("z16-b"));
    assert_ne!(meta.taken_at.as_deref(), Some("2020-01-01T00:00:00Z"));
    assert_eq!(read_inventory(&out).unwrap(), read_inventory(src.path()).unwrap());
}

#[test]
fn a_snapshot_of_a_snapshot_is_the_same_tree() {
    let src = tree(&host());
    let (_t1, a, _) = snap(src.path());
    let (_t2, b, _) = snap(&a);
    let strip = |mut l: BTreeMap<PathBuf, Option<Result<Vec<u8>, PathBuf>>>| {
        l.remove(Path::new("snapshot.json"));
        l
    };
    assert_eq!(strip(listing(&a)), strip(listing(&b)));
}

#[test]
fn the_output_must_be_new_or_empty() {
    let src = tree(&host());
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("snap");
    file(&out, "keep.txt", "mine");
    let e = take(src.path(), &out).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: output directory is not empty", out.display()));
    assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"mine");
    let e = take(src.path(), &out.join("keep.txt")).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    take(src.path(), &empty).unwrap();
}

#[test]
fn a_root_without_the_ap_bus_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let e = take(t.path(), &t.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("bus/ap"), "{e}");
    assert!(!t.path().join("out").exists());
}
