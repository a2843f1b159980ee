//! `crds/` is generated from the Rust types: regenerate with `CRYPTOPASS_WRITE_CRDS=1 cargo test --test crd_drift`.

use std::path::Path;

#[test]
fn checked_in_crds_equal_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let files = cryptopass::api::crd_files();
    assert_eq!(files.len(), 2);
    if std::env::var_os("CRYPTOPASS_WRITE_CRDS").is_some() {
        for (name, yaml) in &files {
            std::fs::write(dir.join(name), yaml).unwrap();
        }
    }
    for (name, yaml) in files {
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| {
            panic!("crds/{name}: {e} (regenerate: CRYPTOPASS_WRITE_CRDS=1 cargo test --test crd_drift)")
        });
        assert!(
            on_disk == yaml,
            "crds/{name} drifted from the Rust types: run CRYPTOPASS_WRITE_CRDS=1 cargo test --test crd_drift"
        );
    }
}

#[test]
fn crd_subcommand_prints_every_checked_in_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cryptopass")).arg("crd").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (_, yaml) in cryptopass::api::crd_files() {
        assert!(text.contains(&yaml));
    }
    assert!(
        text.contains("name: cryptopassthroughs.crypto.s390x.dev")
            && text.contains("name: cryptonodes.crypto.s390x.dev")
    );
}
