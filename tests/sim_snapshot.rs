//! A snapshot of a FUSE-mounted simulator equals the simulator's own dump, and a tree loads back
//! into the same simulated host (profile detected from the tree).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use cryptopass::sim::{self, Kernel, Profile};

/// Every entry of a tree: relative path → file content or `-> link target` or `<dir>`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                out.insert(rel, "<dir>".into());
                walk(root, &p, out);
            } else if rel == "snapshot.json" {
                let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                v.as_object_mut().unwrap().remove("takenAt");
                out.insert(rel, v.to_string());
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn machine() -> Kernel {
    let mut k = Kernel::from_yaml(
        &format!(
            r#"
hostname: z16-a
kernel: {{ profile: mig-v1, release: 6.19.0-cp, vfioApStream: v1 }}
maxDomainId: 84
usageDomains: ["0-7"]
controlDomains: ["0-9"]
apmask: "0x3fff"
cards:
  - {{ id: 0, type: CEX8, mode: CCA }}
  - {{ id: 1, type: CEX8, mode: EP11 }}
  - {{ id: 2, type: CEX7, mode: Accel }}
queues:
  - {{ apqn: "01.0003", chkstop: true }}
  - {{ apqn: "00.0002", seState: 2 }}
mdevs:
  - {{ uuid: {U1}, adapters: [0, 1], domains: [1, 2], controlDomains: [1, 9], migratable: true, inUse: true }}
"#
        ),
        None,
        "t",
    )
    .unwrap();
    k.store_create(U2).unwrap();
    k
}

#[test]
fn snapshot_of_a_mounted_simulator_equals_its_dump() {
    let k = machine();
    let work = tempfile::tempdir().unwrap();
    sim::dump::dump(&k, &work.path().join("dump")).unwrap();
    let m = Mounted::new(k);
    cryptopass::sysfs::snapshot::take(m.root(), &work.path().join("snap")).unwrap();
    let (d, s) = (tree(&work.path().join("dump")), tree(&work.path().join("snap")));
    assert!(d.len() > 300, "a real tree: {} entries", d.len());
    for (k, v) in &d {
        assert_eq!(s.get(k), Some(v), "{k}");
    }
    assert_eq!(
        d.len(),
        s.len(),
        "extra in snapshot: {:?}",
        s.keys().filter(|k| !d.contains_key(*k)).collect::<Vec<_>>()
    );
    assert!(d["snapshot.json"].contains("devices/ap/card01/01.0003/ap_functions"), "TAPQ failure listed as unreadable");
    assert_eq!(d[&format!("devices/vfio_ap/matrix/{U1}/assign_adapter")], "", "write-only attributes are empty files");
}

#[test]
fn a_dump_loads_back_into_the_same_host_with_its_profile_detected() {
    let k = machine();
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first");
    sim::dump::dump(&k, &first).unwrap();
    let inv = cryptopass::sysfs::read_inventory(&first).unwrap();
    let back = cryptopass::cmd::tree::kernel_from_inventory(&inv, None);
    assert_eq!(back.profile, Profile::MigV1);
    let second = work.path().join("second");
    sim::dump::dump(&back, &second).unwrap();
    assert_eq!(tree(&first), tree(&second));
    // and through the CLI: `sim dump --machine TREE`, with --profile overriding the detection
    let third = work.path().join("third");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cryptopass"))
        .args(["sim", "dump", "--profile", "mig-latest", "--machine"])
        .arg(&first)
        .arg(&third)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!third.join(format!("devices/vfio_ap/matrix/{U1}/migratable")).exists());
}
