//! Verdicts between two planned nodes, in the four words of the status: `Equivalent` (compatible
//! both ways), `Compatible` (source → target only), `Unknown` (a node whose kernel profile is not
//! known yet passed both rule sets), `Incompatible` (with every reason, in the kernel's words).

use std::collections::HashSet;

use crate::ap::KernelProfile;
use crate::compat::{self, Reason, RuleChoice};

use super::planned::{PlannedNode, flavored};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Equivalent,
    Compatible,
    Unknown,
    Incompatible,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Equivalent, Class::Compatible, Class::Unknown, Class::Incompatible];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Equivalent => "Equivalent",
            Class::Compatible => "Compatible",
            Class::Unknown => "Unknown",
            Class::Incompatible => "Incompatible",
        }
    }

    /// Counts toward `MigrationReady` and earns the node label.
    pub fn is_compatible(self) -> bool {
        matches!(self, Class::Equivalent | Class::Compatible)
    }

    /// May be prepared as a target.
    pub fn preparable(self) -> bool {
        self != Class::Incompatible
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub class: Class,
    /// Source → target reasons (empty unless incompatible).
    pub reasons: Vec<Reason>,
    /// Whether the way back (target → source) passed too: `Equivalent`, or an `Unknown` that
    /// passed both ways.
    pub both_ways: bool,
}

fn dedup(reasons: &mut Vec<Reason>) {
    let mut seen = HashSet::new();
    reasons.retain(|r| seen.insert(r.clone()));
}

/// Would a guest with mdev `uuid` migrate from `src` to `tgt`, both as planned?
pub fn judge(src: &PlannedNode, tgt: &PlannedNode, uuid: &str) -> Judgement {
    let unknown = src.profile == KernelProfile::Unknown || tgt.profile == KernelProfile::Unknown;
    if unknown {
        return judge_both_rule_sets(src, tgt, uuid);
    }
    let forward = compat::verdict(&src.inventory, &tgt.inventory, uuid, RuleChoice::Auto);
    if !forward.compatible {
        return Judgement { class: Class::Incompatible, reasons: forward.reasons, both_ways: false };
    }
    let back = compat::verdict(&tgt.inventory, &src.inventory, uuid, RuleChoice::Auto).compatible;
    Judgement { class: if back { Class::Equivalent } else { Class::Compatible }, reasons: Vec::new(), both_ways: back }
}

/// The profile comparison left out: the queues are judged by the v1 rules (both mdevs
/// `migratable`) and by the latest rules (neither has the attribute); both must pass.
fn judge_both_rule_sets(src: &PlannedNode, tgt: &PlannedNode, uuid: &str) -> Judgement {
    let mut reasons = Vec::new();
    let mut back = true;
    for (choice, migratable) in [(RuleChoice::V1, Some(true)), (RuleChoice::Latest, None)] {
        let (s, t) = (flavored(&src.inventory, uuid, migratable), flavored(&tgt.inventory, uuid, migratable));
        let v = compat::verdict(&s, &t, uuid, choice);
        reasons.extend(v.reasons);
        back &= compat::verdict(&t, &s, uuid, choice).compatible;
    }
    dedup(&mut reasons);
    if reasons.is_empty() {
        Judgement { class: Class::Unknown, reasons, both_ways: back }
    } else {
        Judgement { class: Class::Incompatible, reasons, both_ways: false }
    }
}
