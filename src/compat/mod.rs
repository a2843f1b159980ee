//! Migration verdicts, pure: the destination kernel's checks (kernel-ap.md §6) for the seed (v1)
//! and latest rules, as structured reasons with stable codes and the kernel's own messages.
//!
//! A [`Verdict`] answers two questions at once:
//! - `reasons`: **every** incompatibility found (all APQNs, all rules), for status and humans;
//! - `kernel_log`, `errno`, `console`: exactly what the attempt would show — the destination
//!   kernel stops at its first failing check, so these describe that check only.
//!
//! The order in which an attempt is refused (the first hit decides the console, errno and log):
//! 1. a kernel without vfio-ap migration on either side (`KernelCannotMigrate`: QEMU's device
//!    carries a migration blocker, libvirt refuses; no errno);
//! 2. v1 and latest kernels, or different migration streams (`KernelRulesDiffer`,
//!    `MigrationStreamDiffers`): the destination rejects the stream it cannot parse with EINVAL
//!    and logs nothing — none of its checks runs;
//! 3. no mdev with the UUID on the source (`MdevMissing`: nothing to migrate);
//! 4. v1 rules only: the source mdev's `migratable` is not 1 (`MigrationDisabled`, the seed's
//!    rule 1) — unless `Auto` found a latest source, whose kernel has no such switch;
//! 5. no mdev with the UUID on the target (`MdevMissing`, the seed's rule 2);
//! 6. the destination kernel's rules, [`v1`] or [`latest`].
//!
//! Rules are still evaluated after an earlier refusal so that `reasons` stays complete, with two
//! exceptions: without a source mdev there is nothing to compare, and without a target mdev the
//! v1 rules (which compare the two guest matrices) are skipped; the latest rules read only the
//! target's queues and other mdevs, so they still run. When neither profile is known both rule
//! sets apply (`rules: None`); the kernel lines are then the v1 ones, else the latest ones — in
//! practice never shown, since an unknown profile means a missing mdev or a kernel that cannot
//! migrate, which refuse earlier.

mod config;
mod latest;
mod profile;
pub mod reason;
mod v1;

#[cfg(test)]
mod prop;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ap::inventory::Mdev;
use crate::ap::kmsg;
use crate::ap::{Apqn, Inventory, KernelProfile, Mask, Queue};

use reason::Side;
pub use reason::{Reason, ReasonCode};

/// A rule set the destination kernel implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleSet {
    /// The seed (v1) rules, kernel-ap.md §6.1.
    #[serde(rename = "v1")]
    V1,
    /// The latest (v3/v4 and newer) rules, kernel-ap.md §6.2 and §9.
    #[serde(rename = "latest")]
    Latest,
}

impl RuleSet {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleSet::V1 => "v1",
            RuleSet::Latest => "latest",
        }
    }
}

/// Which rules to judge by: `Auto` follows the kernel profiles of the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuleChoice {
    #[default]
    Auto,
    V1,
    Latest,
}

/// The answer to "would a guest with this mdev UUID migrate from source to target?".
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// No reason was found.
    pub compatible: bool,
    /// The rule set applied; `None` when it is unknown and both were applied.
    pub rules: Option<RuleSet>,
    /// Every incompatibility found.
    pub reasons: Vec<Reason>,
    /// Findings that never block (`KernelReleasesDiffer`, `MasterKeyMismatch`).
    pub warnings: Vec<Reason>,
    /// What the destination kernel returns to QEMU, when its check fails.
    pub errno: Option<i32>,
    /// The destination kernel's lines, exactly as it writes them.
    pub kernel_log: Vec<String>,
    /// The line the source's libvirt prints.
    pub console: Option<String>,
}

impl Verdict {
    pub fn errno_name(&self) -> Option<&'static str> {
        self.errno.map(kmsg::errno_name)
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            compatible: bool,
            rules: Option<RuleSet>,
            reasons: &'a [Reason],
            warnings: &'a [Reason],
            errno: Option<i32>,
            errno_name: Option<&'static str>,
            kernel_log: &'a [String],
            console: Option<&'a str>,
        }
        Out {
            compatible: self.compatible,
            rules: self.rules,
            reasons: &self.reasons,
            warnings: &self.warnings,
            errno: self.errno,
            errno_name: self.errno_name(),
            kernel_log: &self.kernel_log,
            console: self.console.as_deref(),
        }
        .serialize(s)
    }
}

/// A failed destination-kernel check: its errno and the lines it logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub errno: i32,
    pub log: Vec<String>,
}

impl Failure {
    pub fn new(errno: i32, log: Vec<String>) -> Self {
        Failure { errno, log }
    }
}

/// Keeps the first failure of a sequence of kernel checks.
pub(crate) fn keep_first(first: &mut Option<Failure>, f: Option<Failure>) {
    if first.is_none() {
        *first = f;
    }
}

/// Where the attempt stops first.
enum Stop {
    /// Refused before the destination kernel checks anything; the source console's line, if any.
    Refused(Option<String>),
    /// The destination kernel's check failed.
    Kernel(Failure),
}

/// What both rule sets read.
pub(crate) struct Ctx<'a> {
    /// Lowercase: the device name the kernel prints.
    pub uuid: &'a str,
    pub src: &'a Inventory,
    pub tgt: &'a Inventory,
    pub src_mdev: &'a Mdev,
}

/// Adapters × domains in ascending order (adapter-major, the order of `Apqn` and of the kernel).
pub(crate) fn apqns(adapters: &Mask, domains: &Mask) -> Vec<Apqn> {
    let domains = domains.ids();
    adapters.iter().flat_map(|a| domains.iter().map(move |d| Apqn::new(a, *d))).collect()
}

/// The queue of each of the ascending `apqns`, by one ordered walk of the queue map instead of a
/// tree lookup per APQN: a verdict over 1,024 APQNs reads the map several times.
pub(crate) fn queues_for<'a>(inv: &'a Inventory, apqns: &[Apqn]) -> Vec<Option<&'a Queue>> {
    let mut out = vec![None; apqns.len()];
    let (Some(first), Some(last)) = (apqns.first(), apqns.last()) else { return out };
    let mut i = 0;
    for (k, v) in inv.queues.range(*first..=*last) {
        while i < apqns.len() && apqns[i] < *k {
            i += 1;
        }
        if i == apqns.len() {
            break;
        }
        if apqns[i] == *k {
            out[i] = Some(v);
            i += 1;
        }
    }
    out
}

#[derive(Default)]
struct Judge {
    reasons: Vec<Reason>,
    warnings: Vec<Reason>,
    stop: Option<Stop>,
}

impl Judge {
    /// A finding that stops the attempt, unless an earlier one already did.
    fn block(&mut self, r: Reason, stop: Stop) {
        self.reasons.push(r);
        if self.stop.is_none() {
            self.stop = Some(stop);
        }
    }
    fn refuse(&mut self, r: Reason, console: Option<String>) {
        self.block(r, Stop::Refused(console));
    }
}

/// Judges a migration of the guest holding mdev `uuid` (any case) from `source` to `target`.
pub fn verdict(source: &Inventory, target: &Inventory, uuid: &str, rules: RuleChoice) -> Verdict {
    let uuid = uuid.to_ascii_lowercase();
    let uuid = uuid.as_str();
    let (sp, tp) = (source.profile(), target.profile());
    let sets = profile::rule_sets(sp, tp, rules);
    let mut j = Judge::default();

    for r in profile::cannot_migrate(source, target) {
        j.refuse(r, Some(kmsg::console_migration_disabled(uuid)));
    }
    // The destination cannot parse the other kind of stream: EINVAL, nothing logged.
    let differ = (rules == RuleChoice::Auto).then(|| profile::rules_differ(sp, tp)).flatten();
    for r in differ.into_iter().chain(profile::stream_differs(&source.kernel, &target.kernel)) {
        j.block(r, Stop::Kernel(Failure::new(libc::EINVAL, Vec::new())));
    }
    let src_mdev = source.mdevs.get(uuid);
    if src_mdev.is_none() {
        j.refuse(reason::mdev_missing(Side::Source, uuid), Some(kmsg::console_device_not_found(uuid)));
    }
    // The per-mdev switch is the source kernel's: a latest source has none and never refuses.
    let source_switch = rules != RuleChoice::Auto || sp != KernelProfile::Latest;
    if sets.v1
        && source_switch
        && let Some(r) = src_mdev.and_then(v1::migration_enabled)
    {
        j.refuse(r, Some(kmsg::console_migration_disabled(uuid)));
    }
    let tgt_mdev = target.mdevs.get(uuid);
    if tgt_mdev.is_none() {
        j.refuse(reason::mdev_missing(Side::Target, uuid), Some(kmsg::console_device_not_found(uuid)));
    }
    j.warnings.extend(profile::releases_differ(&source.kernel, &target.kernel));
    j.warnings.extend(profile::master_key_warnings(source, target, uuid));

    if let Some(src_mdev) = src_mdev {
        let ctx = Ctx { uuid, src: source, tgt: target, src_mdev };
        let mut found = Vec::new();
        let mut first = None;
        if sets.v1
            && let Some(t) = tgt_mdev
        {
            keep_first(&mut first, v1::check(&ctx, t, &mut found));
        }
        if sets.latest {
            keep_first(&mut first, latest::check(&ctx, &mut found));
        }
        if sets.v1 && sets.latest {
            // Both rule sets often say the same thing (a facility that differs on card and queue).
            let mut seen = HashSet::new();
            found.retain(|r| seen.insert(r.clone()));
        }
        j.reasons.append(&mut found);
        if j.stop.is_none()
            && let Some(f) = first
        {
            j.stop = Some(Stop::Kernel(f));
        }
    }
    finish(j, sets.reported)
}

fn finish(j: Judge, rules: Option<RuleSet>) -> Verdict {
    let (errno, kernel_log, console) = match j.stop {
        None => (None, Vec::new(), None),
        Some(Stop::Refused(console)) => (None, Vec::new(), console),
        Some(Stop::Kernel(f)) => (Some(f.errno), f.log, Some(kmsg::console_load_failed(f.errno))),
    };
    Verdict {
        compatible: j.reasons.is_empty(),
        rules,
        reasons: j.reasons,
        warnings: j.warnings,
        errno,
        kernel_log,
        console,
    }
}

/// Whether the guest could migrate both ways: `a` → `b` and `b` → `a` (automatic rules).
pub fn equivalent(a: &Inventory, b: &Inventory, uuid: &str) -> bool {
    verdict(a, b, uuid, RuleChoice::Auto).compatible && verdict(b, a, uuid, RuleChoice::Auto).compatible
}
