//! `cryptopass sim dump|mount|ctl`.

use std::path::Path;

use super::{Error, Outcome};
use crate::sim::{self, Kernel, Profile, Sim};

/// Loads a simulated host from a machine file, or from a sysfs tree (a snapshot or dump).
pub fn load(machine: &Path, profile: Option<Profile>) -> Result<Kernel, Error> {
    if machine.is_dir() {
        let inv = crate::sysfs::read_inventory(machine)?;
        return Ok(super::tree::kernel_from_inventory(&inv, profile));
    }
    let text = std::fs::read_to_string(machine)
        .map_err(|source| Error::Io { context: machine.display().to_string(), source })?;
    Ok(Kernel::from_yaml(&text, profile, &machine.display().to_string())?)
}

pub fn dump(machine: &Path, profile: Option<Profile>, dir: &Path) -> Outcome {
    let k = load(machine, profile)?;
    sim::dump::dump(&k, dir)?;
    Ok(0)
}

pub fn mount(machine: &Path, profile: Option<Profile>, control: Option<&Path>, dir: &Path) -> Outcome {
    let k = load(machine, profile)?;
    let shared = Sim::new(k).shared();
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(c) = control {
        sim::control::serve(shared.clone(), c).map_err(io(format!("control socket {}", c.display())))?;
    }
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(io("signal handlers".into()))?;
    let session = sim::fuse::mount(shared, dir).map_err(io(format!("mount {}", dir.display())))?;
    eprintln!("cryptopass: simulated s390x AP kernel mounted at {} (SIGINT/SIGTERM unmounts)", dir.display());
    let _ = signals.forever().next();
    session.umount_and_join().map_err(io(format!("unmount {}", dir.display())))?;
    if let Some(c) = control {
        let _ = std::fs::remove_file(c);
    }
    Ok(0)
}

pub fn ctl(control: &Path, request: &str) -> Outcome {
    let reply = sim::control::request(control, request)
        .map_err(|source| Error::Io { context: format!("control socket {}", control.display()), source })?;
    println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
    Ok(if reply.ok { 0 } else { 1 })
}
