//! One pass of the long-running agent, blocking (sysfs I/O): the spec's mdevs → the agent-core
//! engine (`apply`) → the host read again → the status to report. Every write is counted for
//! `cryptopass_agent_sysfs_writes_total{result}` by a [`Host`] wrapper.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::ap::Inventory;
use crate::api::node::{CryptoNodeStatus, DesiredMdev as SpecMdev};
use crate::sysfs;

use super::apply::{ApplyError, ApplyOptions, apply_read};
use super::desired::{Desired, DesiredMdev};
use super::host::{Errno, Host, RootDir};
use super::metrics::Metrics;
use super::ownership::OwnershipStore;
use super::plan::MaskMode;
use super::report::Report;
use super::status::{self, PassResult};

/// A [`Host`] that counts the outcome of every write.
pub struct Counting<H> {
    inner: H,
    metrics: Metrics,
    /// Writes attempted so far (failed ones too: the kernel may have acted before failing).
    writes: AtomicU64,
}

impl<H: Host> Host for Counting<H> {
    fn write(&self, rel: &str, data: &str) -> Result<(), Errno> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.write(rel, data);
        self.metrics.write(r.is_ok());
        r
    }
    fn read(&self, rel: &str) -> Result<String, Errno> {
        self.inner.read(rel)
    }
    fn exists(&self, rel: &str) -> bool {
        self.inner.exists(rel)
    }
    fn inventory(&self) -> Result<Inventory, sysfs::Error> {
        self.inner.inventory()
    }
}

/// The spec's entries as the engine's desired state; entries with an invalid UUID are left out
/// and described (the CRD does not constrain a CryptoNode's UUIDs: the controller writes them).
pub fn desired_from_spec(spec: &[SpecMdev]) -> (Desired, Vec<String>) {
    let mut invalid = Vec::new();
    let mut mdevs = Vec::new();
    for (i, m) in spec.iter().enumerate() {
        match uuid::Uuid::try_parse(&m.uuid).ok().filter(|_| m.uuid.len() == 36) {
            Some(u) => mdevs.push(DesiredMdev {
                uuid: u.hyphenated().to_string(),
                adapters: m.adapters.clone(),
                domains: m.domains.clone(),
                control_domains: m.control_domains.clone(),
                migratable: m.migratable,
            }),
            None => invalid.push(format!("spec.mdevs[{i}].uuid: {:?} is not a hyphenated RFC 4122 UUID", m.uuid)),
        }
    }
    (Desired::new(mdevs), invalid)
}

/// What the agent applies with: the host (below its sysfs root), the ownership record, the mode.
pub struct Engine {
    host: Counting<RootDir>,
    store: OwnershipStore,
    opts: ApplyOptions,
    metrics: Metrics,
}

/// The outcome of a pass that could read the host.
pub struct Passed {
    pub status: CryptoNodeStatus,
    pub report: Report,
}

impl Engine {
    pub fn new(
        sysfs_root: PathBuf,
        state_dir: PathBuf,
        mode: MaskMode,
        mdevctl_dir: Option<PathBuf>,
        metrics: Metrics,
    ) -> Engine {
        Engine {
            host: Counting { inner: RootDir::new(&sysfs_root), metrics: metrics.clone(), writes: AtomicU64::new(0) },
            store: OwnershipStore::new(&state_dir),
            opts: ApplyOptions { mode, dry_run: false, mdevctl_dir },
            metrics,
        }
    }

    /// Applies `spec` and returns the status to report; `previous` keeps condition times.
    pub fn pass(
        &self,
        spec: &[SpecMdev],
        generation: Option<i64>,
        previous: Option<&CryptoNodeStatus>,
    ) -> Result<Passed, ApplyError> {
        let started = Instant::now();
        let (desired, invalid) = desired_from_spec(spec);
        let before = self.host.writes.load(Ordering::Relaxed);
        let (report, read) = apply_read(&self.host, &self.store, &desired, &self.opts)?;
        // A pass that wrote nothing reports the host as it planned on it: reading it again (the
        // whole AP tree) would cost as much as the pass itself.
        let inventory =
            if self.host.writes.load(Ordering::Relaxed) == before { read } else { self.host.inventory()? };
        let ownership = self.store.load()?;
        let pass = PassResult { inventory: &inventory, report: &report, ownership: &ownership, invalid: &invalid };
        let prev = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let status = status::build(&pass, generation, prev, &crate::ap::meta::now_rfc3339());
        self.metrics.pass(started.elapsed(), status::mdev_counts(&status), &inventory);
        Ok(Passed { status, report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_entries_become_desired_mdevs_with_lowercase_uuids_and_bad_ones_are_named() {
        let m = |u: &str| SpecMdev {
            uuid: u.into(),
            passthrough: None,
            adapters: vec![1],
            domains: vec![2],
            control_domains: vec![2],
            migratable: true,
            role: Some("Active".into()),
            verdict: None,
        };
        let (d, bad) = desired_from_spec(&[m("4B1D0000-0000-4000-8000-000000000001"), m("nope")]);
        assert_eq!(d.mdevs, vec![DesiredMdev::new("4b1d0000-0000-4000-8000-000000000001", &[1], &[2], &[2], true)]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("spec.mdevs[1].uuid"), "{bad:?}");
    }
}
