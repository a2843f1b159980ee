//! Kernel profiles and migration streams (architecture.md, "Kernel profile of a node" and "Tree
//! metadata"; kernel-ap.md §6, §9): which rules apply, and the refusals that happen before any
//! destination check runs. None of these findings is logged by a kernel.

use crate::ap::{Inventory, KernelInfo, KernelProfile};

use super::reason::{self, Reason, Side};
use super::{RuleChoice, RuleSet};

/// The rule sets to judge by, and the one to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RuleSets {
    pub v1: bool,
    pub latest: bool,
    /// `None` when both apply.
    pub reported: Option<RuleSet>,
}

impl RuleSets {
    fn one(r: RuleSet) -> Self {
        RuleSets { v1: r == RuleSet::V1, latest: r == RuleSet::Latest, reported: Some(r) }
    }
}

fn known(p: KernelProfile) -> Option<RuleSet> {
    match p {
        KernelProfile::V1 => Some(RuleSet::V1),
        KernelProfile::Latest => Some(RuleSet::Latest),
        KernelProfile::Unknown | KernelProfile::CannotMigrate => None,
    }
}

/// An explicit choice wins. `Auto`: the destination's known profile (its kernel runs the checks),
/// else the source's; when neither is known (unknown, or a kernel that cannot migrate at all),
/// both rule sets apply and the guest is compatible only if both pass.
pub(super) fn rule_sets(source: KernelProfile, target: KernelProfile, choice: RuleChoice) -> RuleSets {
    match choice {
        RuleChoice::V1 => RuleSets::one(RuleSet::V1),
        RuleChoice::Latest => RuleSets::one(RuleSet::Latest),
        RuleChoice::Auto => match known(target).or(known(source)) {
            Some(r) => RuleSets::one(r),
            None => RuleSets { v1: true, latest: true, reported: None },
        },
    }
}

/// `KernelCannotMigrate` for each side without the `migratable` capability, source first.
pub(super) fn cannot_migrate(source: &Inventory, target: &Inventory) -> Vec<Reason> {
    [(Side::Source, source), (Side::Target, target)]
        .into_iter()
        .filter(|(_, inv)| inv.profile() == KernelProfile::CannotMigrate)
        .map(|(side, inv)| reason::kernel_cannot_migrate(side, &inv.kernel))
        .collect()
}

/// A v1 kernel and a latest kernel never migrate to each other.
pub(super) fn rules_differ(source: KernelProfile, target: KernelProfile) -> Option<Reason> {
    match (known(source), known(target)) {
        (Some(s), Some(t)) if s != t => Some(reason::kernel_rules_differ(s.as_str(), t.as_str())),
        _ => None,
    }
}

/// `MigrationStreamDiffers` only when both streams are known and differ.
pub(super) fn stream_differs(source: &KernelInfo, target: &KernelInfo) -> Option<Reason> {
    match (&source.vfio_ap_stream, &target.vfio_ap_stream) {
        (Some(s), Some(t)) if s != t => Some(reason::stream_differs(s, t)),
        _ => None,
    }
}

/// The warning `KernelReleasesDiffer`: both releases known and different while a stream is unknown.
pub(super) fn releases_differ(source: &KernelInfo, target: &KernelInfo) -> Option<Reason> {
    let (Some(s), Some(t)) = (&source.release, &target.release) else { return None };
    if s == t {
        return None;
    }
    let unknown = match (source.vfio_ap_stream.is_some(), target.vfio_ap_stream.is_some()) {
        (true, true) => return None,
        (false, true) => "source",
        (true, false) => "target",
        (false, false) => "source and the target",
    };
    Some(reason::releases_differ(s, t, unknown))
}

/// Hook for the warning `MasterKeyMismatch` (kernel-ap.md §6.3): the kernel never compares CCA/EP11
/// master keys, yet secure-key workloads break after a migration between hosts whose keys differ.
/// zcrypt exposes master-key verification patterns (`mkvps`) only on cards and queues bound to the
/// host driver, and our `Inventory` does not record them yet, so this reports nothing rather than
/// guess. When `Card`/`Queue` gain the patterns, compare them here per APQN of the source matrix
/// (both sides known and different → a warning naming the APQN and the key register).
pub(super) fn master_key_warnings(_source: &Inventory, _target: &Inventory, _uuid: &str) -> Vec<Reason> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use KernelProfile::*;

    #[test]
    fn auto_follows_the_destination_then_the_source() {
        assert_eq!(rule_sets(V1, Latest, RuleChoice::Auto).reported, Some(RuleSet::Latest));
        assert_eq!(rule_sets(V1, Unknown, RuleChoice::Auto).reported, Some(RuleSet::V1));
        assert_eq!(rule_sets(Unknown, Latest, RuleChoice::Auto).reported, Some(RuleSet::Latest));
        let both = rule_sets(Unknown, Unknown, RuleChoice::Auto);
        assert_eq!((both.v1, both.latest, both.reported), (true, true, None));
        let both = rule_sets(CannotMigrate, Unknown, RuleChoice::Auto);
        assert_eq!(both.reported, None);
    }

    #[test]
    fn an_explicit_choice_overrides_the_profiles() {
        assert_eq!(rule_sets(Latest, Latest, RuleChoice::V1), RuleSets::one(RuleSet::V1));
        assert_eq!(rule_sets(CannotMigrate, V1, RuleChoice::Latest), RuleSets::one(RuleSet::Latest));
    }

    #[test]
    fn only_known_profiles_can_differ() {
        assert!(rules_differ(V1, Latest).is_some());
        assert!(rules_differ(Latest, V1).is_some());
        assert!(rules_differ(V1, V1).is_none());
        assert!(rules_differ(V1, Unknown).is_none());
        assert!(rules_differ(CannotMigrate, Latest).is_none());
    }

    fn kernel(release: Option<&str>, stream: Option<&str>) -> KernelInfo {
        KernelInfo { release: release.map(Into::into), vfio_ap_stream: stream.map(Into::into), ..Default::default() }
    }

    #[test]
    fn streams_differ_only_when_both_are_known() {
        let v4 = kernel(Some("6.20"), Some("v4"));
        let v5 = kernel(Some("6.21"), Some("v5"));
        let unknown = kernel(Some("6.21"), None);
        assert!(stream_differs(&v4, &v5).is_some());
        assert!(stream_differs(&v4, &v4).is_none());
        assert!(stream_differs(&v4, &unknown).is_none());
        assert!(releases_differ(&v4, &v5).is_none(), "known streams decide, releases do not");
        let w = releases_differ(&v4, &unknown).expect("warning");
        assert_eq!(w.code, reason::ReasonCode::KernelReleasesDiffer);
        assert!(w.message.contains("of the target is unknown"), "{}", w.message);
        assert!(releases_differ(&unknown, &unknown).is_none());
        assert!(releases_differ(&kernel(None, None), &unknown).is_none());
    }
}
