//! `cryptopass snapshot --sysfs-root DIR OUT`.

use std::path::Path;

use super::Outcome;
use crate::sysfs::snapshot;

pub fn run(root: &Path, out: &Path) -> Outcome {
    let meta = snapshot::take(root, out)?;
    for (path, why) in &meta.unreadable {
        eprintln!("cryptopass: {}: {why}, left out of the snapshot", root.join(path).display());
    }
    println!("snapshot of {} written to {}", root.display(), out.display());
    Ok(0)
}
