//! `cryptopass inventory` and `cryptopass snapshot` as processes: output, exit codes, messages.

mod sysfs_support;

use std::path::Path;
use std::process::{Command, Output};

use sysfs_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");

fn run(args: &[&str], root: &Path) -> Output {
    Command::new(BIN).args(args).arg("--sysfs-root").arg(root).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn host() -> Fixture {
    Fixture::default().with_mdev(Fixture::mdev_a(Some(true), true))
}

#[test]
fn inventory_json_is_the_inventory_plus_its_profile() {
    let t = tree(&host());
    let o = run(&["inventory", "-o", "json"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["profile"], "v1");
    assert_eq!(v["queues"]["00.0006"]["driver"], "vfio_ap");
    assert_eq!(v["mdevs"][UUID_A]["inUse"], true);
    assert_eq!(v["kernel"]["busFeatures"][0], "APSC");
}

#[test]
fn inventory_table_is_lszcrypt_like() {
    let t = tree(&host());
    let o = run(&["inventory"], t.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("profile          v1\n"), "{out}");
    assert!(
        out.contains("CARD.DOM TYPE  MODE        STATUS     REQUESTS  PENDING HWTYPE QDEPTH FUNCTIONS  DRIVER\n"),
        "{out}"
    );
    assert!(
        out.contains("00.0005  CEX8C CCA-Coproc  online            0        0     14     08 S--D--N-F- cex4queue\n"),
        "{out}"
    );
    assert!(
        out.contains("00.0006  CEX8C CCA-Coproc  in use            0        -     14     08 S--D--N-F- vfio_ap\n"),
        "{out}"
    );
    assert!(out.contains(UUID_A), "{out}");
}

#[test]
fn inventory_of_a_broken_tree_exits_2_naming_the_file() {
    let t = tree(&host());
    file(t.path(), "devices/ap/card01/raw_hwtype", "CEX8\n");
    let o = run(&["inventory"], t.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    let want = format!(
        "{}: expected a decimal AP type 0..255, got \"CEX8\"",
        t.path().join("devices/ap/card01/raw_hwtype").display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn snapshot_writes_a_tree_and_refuses_a_full_directory() {
    let t = tree(&host());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let o = Command::new(BIN).arg("snapshot").arg("--sysfs-root").arg(t.path()).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.join("snapshot.json").is_file() && out.join("bus/ap/apmask").is_file());
    let again = run(&["inventory", "-o", "json"], &out);
    assert_eq!(again.status.code(), Some(0));
    let o = Command::new(BIN).arg("snapshot").arg("--sysfs-root").arg(t.path()).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("output directory is not empty"), "{}", text(&o.stderr));
}
