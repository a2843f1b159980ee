//! `cryptopass agent apply`: one pass of the node agent against a sysfs root, no Kubernetes.
//! Exit 0 when every mdev is as desired, 1 when some were refused or failed, 2 on usage or read
//! errors.

use std::path::PathBuf;

use crate::agent::{ApplyOptions, Desired, MaskMode, OwnershipStore, RootDir, apply};

use super::{Error, Outcome, OutputFormat};

pub struct ApplyArgs {
    pub sysfs_root: PathBuf,
    pub desired: PathBuf,
    pub state_dir: PathBuf,
    pub mode: MaskMode,
    pub mdevctl_dir: Option<PathBuf>,
    pub dry_run: bool,
    pub output: OutputFormat,
}

pub fn run(a: &ApplyArgs) -> Outcome {
    let desired = Desired::load(&a.desired).map_err(|e| Error::Usage(e.to_string()))?;
    let host = RootDir::new(&a.sysfs_root);
    let store = OwnershipStore::new(&a.state_dir);
    let opts = ApplyOptions { mode: a.mode, dry_run: a.dry_run, mdevctl_dir: a.mdevctl_dir.clone() };
    let report = apply(&host, &store, &desired, &opts).map_err(|e| Error::Usage(e.to_string()))?;
    match a.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Io { context: "JSON output".into(), source: e.into() })?;
            println!("{text}");
        }
        OutputFormat::Text | OutputFormat::Table => print!("{}", report.text()),
    }
    Ok(report.exit_code())
}
