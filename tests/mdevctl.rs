//! The real mdevctl works unchanged against the simulator: it lists types and devices, starts a
//! vfio_ap definition by writing `create` and each attribute, stops it, and the simulator's errno
//! surfaces as mdevctl's error (kernel-ap.md §7).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const U3: &str = "4b1d0000-0000-4000-8000-000000000003";

fn mdevctl() -> PathBuf {
    let p = std::env::var_os("CRYPTOPASS_MDEVCTL")
        .map(PathBuf::from)
        .expect("CRYPTOPASS_MDEVCTL must name the real mdevctl binary (make test installs it with hack/tools.sh)");
    assert!(p.is_file(), "{} does not exist: run hack/tools.sh", p.display());
    p
}

/// An mdevctl environment root whose `sys` is the simulator mount.
fn env_root(mount: &Path) -> tempfile::TempDir {
    let r = tempfile::tempdir().unwrap();
    for d in [
        "etc/mdevctl.d/scripts.d/callouts",
        "etc/mdevctl.d/scripts.d/notifiers",
        "usr/lib/mdevctl/scripts.d/callouts",
        "usr/lib/mdevctl/scripts.d/notifiers",
        "etc/mdevctl.d/matrix",
    ] {
        std::fs::create_dir_all(r.path().join(d)).unwrap();
    }
    std::os::unix::fs::symlink(mount, r.path().join("sys")).unwrap();
    r
}

fn run(root: &Path, args: &[&str]) -> Output {
    Command::new(mdevctl()).env("MDEVCTL_ENV_ROOT", root).env("RUST_BACKTRACE", "0").args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn machine() -> Mounted {
    Mounted::yaml(&format!(
        r#"
kernel: {{ profile: mig-latest }}
usageDomains: ["0-15"]
apmask: "0x3fff"
cards:
  - {{ id: 0, type: CEX8, mode: CCA }}
  - {{ id: 1, type: CEX8, mode: CCA }}
mdevs:
  - {{ uuid: {U1}, adapters: [0], domains: [1] }}
"#
    ))
}

fn define(root: &Path, uuid: &str, attrs: &str) {
    std::fs::write(
        root.join(format!("etc/mdevctl.d/matrix/{uuid}")),
        format!(r#"{{"mdev_type":"vfio_ap-passthrough","start":"manual","attrs":[{attrs}]}}"#),
    )
    .unwrap();
}

#[test]
fn mdevctl_lists_the_type_and_the_running_mdevs() {
    let m = machine();
    let r = env_root(m.root());
    let o = run(r.path(), &["types"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = stdout(&o);
    assert!(t.contains("matrix") && t.contains("vfio_ap-passthrough"), "{t}");
    assert!(t.contains("Available instances: 65535") && t.contains("Device API: vfio-ap"), "{t}");
    assert!(t.contains("Name: VFIO AP Passthrough Device"), "{t}");
    let o = run(r.path(), &["list"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), format!("{U1} matrix vfio_ap-passthrough manual"));
}

#[test]
fn mdevctl_starts_and_stops_a_vfio_ap_definition() {
    let m = machine();
    let r = env_root(m.root());
    define(r.path(), U2, r#"{"assign_adapter":"1"},{"assign_domain":"0x2"},{"assign_control_domain":"2"}"#);
    let o = run(r.path(), &["list", "--defined"]);
    assert!(stdout(&o).contains(U2), "{}", stdout(&o));
    let o = run(r.path(), &["start", "-u", U2]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(m.read(&format!("{}/matrix", mdev_dir(U2))).unwrap(), "01.0002\n");
    assert_eq!(m.read(&format!("{}/control_domains", mdev_dir(U2))).unwrap(), "0002\n");
    assert!(stdout(&run(r.path(), &["list"])).contains(&format!("{U2} matrix vfio_ap-passthrough manual (defined)")));
    let o = run(r.path(), &["stop", "-u", U2]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!m.path(&mdev_dir(U2)).exists());
}

#[test]
fn the_simulators_errno_surfaces_as_mdevctls_error_and_nothing_is_left_behind() {
    let m = machine();
    let r = env_root(m.root());
    define(r.path(), U3, r#"{"assign_adapter":"0"},{"assign_domain":"1"}"#);
    let o = run(r.path(), &["start", "-u", U3]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("assign_domain") && err.contains("Address already in use"), "{err}");
    assert!(!m.path(&mdev_dir(U3)).exists(), "mdevctl removed the half-configured device");
    assert!(m.log().contains(&format!(
        "vfio_ap_mdev {U3}: Userspace may not assign queue 00.0001 to mdev: already assigned to {U1}"
    )));
}
