//! The destination kernel's rules as specifications (kernel-ap.md §6, §9), one file per rule set.

mod host;
mod latest;
mod v1;

use crate::ap::{Apqn, kmsg};

use super::testkit::UUID;
use super::*;

pub(super) fn judge(s: &Inventory, t: &Inventory) -> Verdict {
    verdict(s, t, UUID, RuleChoice::Auto)
}

pub(super) fn codes(v: &Verdict) -> Vec<(ReasonCode, Option<Apqn>)> {
    v.reasons.iter().map(|r| (r.code, r.apqn)).collect()
}

/// An incompatible verdict whose destination kernel failed with `errno` and logged `log`.
pub(super) fn assert_kernel(v: &Verdict, errno: i32, log: &[String]) {
    assert!(!v.compatible, "{v:#?}");
    assert_eq!(v.errno, Some(errno), "{v:#?}");
    assert_eq!(v.kernel_log, log, "{v:#?}");
    assert_eq!(v.console, Some(kmsg::console_load_failed(errno)));
}

pub(super) fn assert_compatible(v: &Verdict) {
    assert!(v.compatible && v.reasons.is_empty(), "{v:#?}");
    assert_eq!((v.errno, v.kernel_log.len(), &v.console), (None, 0, &None));
}

pub(super) fn pair(f: usize, q: Apqn, in_source: bool) -> [String; 2] {
    kmsg::facility_differs(UUID, &crate::ap::functions::FACILITIES[f], q, in_source)
}
