//! The real mdevctl reads the definitions the agent writes (kernel-ap.md §7): `mdevctl list
//! --defined` over a root whose `sys` is the FUSE-mounted simulator. The binary comes from
//! `$CRYPTOPASS_MDEVCTL` (installed by hack/tools.sh); without it this test fails, never skips.

mod agent_common;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use agent_common::*;
use common::*;
use cryptopass::agent::{ApplyOptions, Desired, DesiredMdev, MaskMode, OwnershipStore, RootDir, apply};
use cryptopass::sim::Kernel;

fn mdevctl() -> PathBuf {
    let p = std::env::var_os("CRYPTOPASS_MDEVCTL").unwrap_or_else(|| {
        panic!("CRYPTOPASS_MDEVCTL is not set: this test needs the real mdevctl (hack/tools.sh installs it, `make test` sets it)")
    });
    let p = PathBuf::from(p);
    assert!(p.exists(), "CRYPTOPASS_MDEVCTL={} does not exist", p.display());
    p
}

/// `R` with `R/sys` → the mount and the script directories mdevctl insists on.
fn env_root(dir: &Path, sys: &Path) -> PathBuf {
    let r = dir.join("root");
    for d in ["etc/mdevctl.d/scripts.d/callouts", "etc/mdevctl.d/scripts.d/notifiers"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for d in ["usr/lib/mdevctl/scripts.d/callouts", "usr/lib/mdevctl/scripts.d/notifiers"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(sys, r.join("sys")).unwrap();
    r
}

fn list(root: &Path, args: &[&str]) -> String {
    let out =
        Command::new(mdevctl()).arg("list").args(args).env("MDEVCTL_ENV_ROOT", root).output().expect("run mdevctl");
    assert!(out.status.success(), "mdevctl list {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mdevctl_lists_the_definitions_of_the_agents_mdevs_and_forgets_removed_ones() {
    let bin = mdevctl();
    let mut k = Kernel::from_yaml(&small_machine("mig-v1"), None, "test").unwrap();
    k.cards.values_mut().for_each(|c| c.online = false);
    k.apmask.set(2, false);
    add_foreign(&mut k, "4b1d0000-0000-4000-8000-0000000000f0", mx(&[2], &[9], &[]), false);
    let m = Mounted::new(k);
    let dir = tempfile::tempdir().unwrap();
    let root = env_root(dir.path(), m.root());
    let conf = root.join("etc/mdevctl.d");
    let opts = ApplyOptions { mode: MaskMode::Manage, dry_run: false, mdevctl_dir: Some(conf.clone()) };
    let store = OwnershipStore::new(&dir.path().join("state"));
    let d = Desired::new(vec![
        DesiredMdev::new(U1, &[0, 1], &[5, 6], &[5], true),
        DesiredMdev::new(U2, &[1], &[0x20], &[], false),
    ]);
    let r = apply(&RootDir::new(m.root()), &store, &d, &opts).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.text());

    let defined = list(&root, &["--defined"]);
    assert!(defined.contains(&format!("{U1} matrix vfio_ap-passthrough auto")), "{bin:?}: {defined}");
    assert!(defined.contains(&format!("{U2} matrix vfio_ap-passthrough auto")), "{defined}");
    assert!(!defined.contains("0000000000f0"), "never a definition for a foreign mdev: {defined}");
    let json: serde_json::Value = serde_json::from_str(&list(&root, &["--defined", "--dumpjson"])).unwrap();
    let attrs = &json[0]["matrix"][0][U1]["attrs"];
    assert_eq!(
        attrs,
        &serde_json::json!([{"assign_adapter": "0"}, {"assign_adapter": "1"}, {"assign_domain": "5"},
            {"assign_domain": "6"}, {"assign_control_domain": "5"}, {"migratable": "1"}])
    );
    // mdevctl sees the live devices too, through the simulated sysfs
    let active = list(&root, &[]);
    assert!(active.contains(U1) && active.contains("0000000000f0"), "{active}");

    let r = apply(&RootDir::new(m.root()), &store, &Desired::new(vec![d.mdevs[1].clone()]), &opts).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.text());
    let defined = list(&root, &["--defined"]);
    assert!(!defined.contains(U1) && defined.contains(U2), "{defined}");
}
