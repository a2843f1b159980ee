//! `cryptopass check` as a process, on trees written by `cryptopass sim dump`: exit codes 0/1/2,
//! every reason, the destination kernel's lines and the source console.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_cryptopass");
const UUID: &str = "4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

/// A host with two CCA cards of type `card` and the mdev `UUID` on adapters 0, 1 × domain 5,
/// every queue given to vfio_ap.
fn machine(profile: &str, card: &str, extra_mdev: &str) -> String {
    format!(
        "hostname: host-{card}\n\
         kernel: {{ profile: {profile}, release: 6.20.0 }}\n\
         usageDomains: [\"0-15\"]\n\
         apmask: \"0x00\"\n\
         cards:\n  - {{ id: 0x00, type: {card}, mode: CCA }}\n  - {{ id: 0x01, type: {card}, mode: CCA }}\n\
         mdevs:\n  - {{ uuid: {UUID}, adapters: [0, 1], domains: [5], controlDomains: [5]{extra_mdev} }}\n"
    )
}

/// Dumps the machine into `dir/name` with the real binary.
fn tree(dir: &TempDir, name: &str, yaml: &str) -> PathBuf {
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write machine file");
    let out = dir.path().join(name);
    let o = Command::new(BIN).args(["sim", "dump", "--machine"]).arg(&file).arg(&out).output().expect("run sim dump");
    assert_eq!(o.status.code(), Some(0), "sim dump: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn check(source: &Path, target: &Path, uuid: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let o: Output = Command::new(BIN)
        .arg("check")
        .arg("--source")
        .arg(source)
        .arg("--target")
        .arg(target)
        .args(["--uuid", uuid])
        .args(extra)
        .output()
        .expect("run check");
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn line(text: &str) -> String {
    format!("vfio_ap_mdev {UUID}: {text}")
}

#[test]
fn newer_target_is_compatible_exit_0_and_the_way_back_exit_1_with_the_kernel_lines() {
    let dir = TempDir::new().expect("tempdir");
    let old = tree(&dir, "old", &machine("mig-latest", "CEX7", ""));
    let new = tree(&dir, "new", &machine("mig-latest", "CEX8", ""));

    let (code, out, err) = check(&old, &new, &UUID.to_uppercase(), &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": compatible (latest rules)"), "{out}");

    let (code, out, err) = check(&old, &new, UUID, &["--both-ways"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("incompatible (latest rules, destination fails with EINVAL)"), "{out}");
    assert!(out.contains("  ApTypeNotCompatible 01.0005: AP type of source (0e) not compatible with target (0d)\n"));
    assert!(out.contains("destination kernel log:\n"), "{out}");
    assert!(out.contains(&line("Migration failed: Source and target queue (00.0005) not compatible")), "{out}");
    assert!(out.contains(&line("AP type of source (0e) not compatible with target (0d)")), "{out}");
    assert!(
        out.contains("source console:\n  error: operation failed: job 'migration in' failed: load of migration failed: Invalid argument\n"),
        "{out}"
    );
}

#[test]
fn json_output_is_the_verdict_with_errno_names() {
    let dir = TempDir::new().expect("tempdir");
    let old = tree(&dir, "old", &machine("mig-latest", "CEX7", ""));
    let new = tree(&dir, "new", &machine("mig-latest", "CEX8", ""));

    let (code, out, _) = check(&new, &old, UUID, &["-o", "json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON verdict");
    assert_eq!(v["compatible"], false);
    assert_eq!(v["rules"], "latest");
    assert_eq!(v["errno"], libc::EINVAL);
    assert_eq!(v["errnoName"], "EINVAL");
    assert_eq!(v["reasons"][0]["code"], "ApTypeNotCompatible");
    assert_eq!(v["kernelLog"].as_array().map(Vec::len), Some(4));

    let (code, out, _) = check(&old, &new, UUID, &["-o", "json", "--both-ways"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).expect("both directions");
    assert_eq!((&v["compatible"], &v["sourceToTarget"]["compatible"]), (&false.into(), &true.into()));
    assert_eq!(v["targetToSource"]["errnoName"], "EINVAL");
}

#[test]
fn v1_source_without_migratable_is_refused_on_the_source_console() {
    let dir = TempDir::new().expect("tempdir");
    let off = tree(&dir, "off", &machine("mig-v1", "CEX8", ", migratable: false"));
    let on = tree(&dir, "on", &machine("mig-v1", "CEX8", ", migratable: true"));
    let (code, out, err) = check(&on, &off, UUID, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = check(&off, &on, UUID, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("(v1 rules)") && out.contains("  MigrationDisabled: "), "{out}");
    assert!(!out.contains("destination kernel log:"), "nothing reached the destination: {out}");
    assert!(out.contains(&format!("cannot migrate domain: {UUID}: Migration is disabled for VFIO device")), "{out}");
}

#[test]
fn kernel_without_migration_and_mixed_rule_sets_are_reported() {
    let dir = TempDir::new().expect("tempdir");
    let base = tree(&dir, "base", &machine("base", "CEX8", ""));
    let v1 = tree(&dir, "v1", &machine("mig-v1", "CEX8", ", migratable: true"));
    let latest = tree(&dir, "latest", &machine("mig-latest", "CEX8", ""));
    let (code, out, _) = check(&latest, &base, UUID, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("  KernelCannotMigrate: target host host-CEX8 cannot migrate vfio-ap guests"), "{out}");
    let (code, out, _) = check(&v1, &latest, UUID, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("  KernelRulesDiffer: "), "{out}");
    let (code, out, err) = check(&v1, &latest, UUID, &["--rules", "latest"]);
    assert_eq!(code, Some(0), "explicit rules judge the queues only: {out}{err}");
}

#[test]
fn missing_target_mdev_names_the_device() {
    let dir = TempDir::new().expect("tempdir");
    let with = tree(&dir, "with", &machine("mig-latest", "CEX8", ""));
    let other = "00000000-0000-4000-8000-0000000000aa";
    let without = tree(&dir, "without", &machine("mig-latest", "CEX8", "").replace(UUID, other));
    let (code, out, _) = check(&with, &without, UUID, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("  MdevMissing: "), "{out}");
    assert!(out.contains(&format!("error: device not found: mediated device '{UUID}' not found")), "{out}");
}

#[test]
fn usage_and_read_errors_exit_2() {
    let dir = TempDir::new().expect("tempdir");
    let good = tree(&dir, "good", &machine("mig-latest", "CEX8", ""));

    let (code, out, err) = check(&good, &good, "not-a-uuid", &[]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty() && err.contains("invalid --uuid \"not-a-uuid\""), "{err}");
    let (code, _, _) = check(&good, &good, &UUID.replace('-', ""), &[]);
    assert_eq!(code, Some(2), "the kernel takes only the 36-character form");

    let missing = dir.path().join("nowhere");
    let (code, out, err) = check(&good, &missing, UUID, &[]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty() && err.contains(&missing.display().to_string()), "{err}");

    let broken = tree(&dir, "broken", &machine("mig-latest", "CEX8", ""));
    let file = broken.join("devices/ap/card01/raw_hwtype");
    std::fs::write(&file, "CEX8\n").expect("corrupt the tree");
    let (code, _, err) = check(&good, &broken, UUID, &["--both-ways"]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&file.display().to_string()), "the error names the file: {err}");
}
