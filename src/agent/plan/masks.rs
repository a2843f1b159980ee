//! Handing queues to vfio_ap with the bus masks, and giving them back (architecture.md, "Masks").

use crate::ap::{Apqn, Inventory, Mask, Matrix};

use super::super::ownership::Ownership;
use super::super::reason::{Code, Reason, list_apqns};
use super::{BusMask, MaskMode, Op, Phase, Step, any_override, host_owned};

/// The mask edit chosen for one mdev.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    pub mask: BusMask,
    /// Bits to clear.
    pub bits: Mask,
    /// Host-bound queues outside the mdev that the edit moves (none of them online).
    pub collateral: Vec<Apqn>,
}

/// Picks the edit that hands `needed` (host-owned APQNs of `target`) to vfio_ap: the option
/// whose collateral has no online host queue, then the one with fewer collateral queues, ties to
/// `aqmask`. Refuses when every option moves an online host queue: the administrator decides.
pub(super) fn choose(
    inv: &Inventory,
    ap: &Mask,
    aq: &Mask,
    target: &Matrix,
    needed: &[Apqn],
) -> Result<Choice, Reason> {
    let adapters = Mask::from_ids(needed.iter().map(|q| q.apid));
    let domains = Mask::from_ids(needed.iter().map(|q| q.apqi));
    let collateral = |moved: &dyn Fn(Apqn) -> bool| -> Vec<Apqn> {
        inv.queues
            .values()
            .filter(|q| {
                q.bound_to_host() && host_owned(inv, ap, aq, q.apqn) && !target.contains(q.apqn) && moved(q.apqn)
            })
            .map(|q| q.apqn)
            .collect()
    };
    let online = |qs: &[Apqn]| -> Vec<Apqn> {
        qs.iter().copied().filter(|q| inv.queues.get(q).is_some_and(|x| x.online == Some(true))).collect()
    };
    let options = [
        Choice { mask: BusMask::Aqmask, bits: domains, collateral: collateral(&|q| domains.get(q.apqi)) },
        Choice { mask: BusMask::Apmask, bits: adapters, collateral: collateral(&|q| adapters.get(q.apid)) },
    ];
    let best = options.iter().filter(|c| online(&c.collateral).is_empty()).min_by_key(|c| c.collateral.len()).cloned();
    best.ok_or_else(|| {
        let (by_aq, by_ap) = (online(&options[0].collateral), online(&options[1].collateral));
        let mut all = by_aq.clone();
        all.extend(by_ap.iter().copied());
        all.sort();
        all.dedup();
        Reason::new(
            Code::CollateralHostQueues,
            format!(
                "handing {} to vfio_ap would also move online host queues: by aqmask {}, by apmask {}",
                list_apqns(needed),
                list_apqns(&by_aq),
                list_apqns(&by_ap)
            ),
        )
        .apqns(all)
    })
}

/// The writes that give back what the agent cleared or overrode, once no mdev holds the queues.
/// `finals`: the matrices every mdev will have (foreign ones included); `ap`/`aq`: the masks
/// as they will be before the restore.
pub fn restore_steps(
    inv: &Inventory,
    own: &Ownership,
    mode: MaskMode,
    finals: &[Matrix],
    ap: &Mask,
    aq: &Mask,
) -> Vec<Step> {
    let mut steps = Vec::new();
    match mode {
        MaskMode::Manage if !any_override(inv) => {
            let (give_ap, give_aq) = give_back(finals, &own.apmask_cleared, &own.aqmask_cleared, ap, aq);
            for (mask, from, give) in [(BusMask::Apmask, *ap, give_ap), (BusMask::Aqmask, *aq, give_aq)] {
                if let Some(edit) = from.relative_edits_to(&from.or(&give)) {
                    let op = Op::Mask { mask, edit, clear: Mask::empty(), set: give };
                    steps.push(Step { phase: Phase::Restore, op, serves: Vec::new() });
                }
            }
        }
        // The kernel takes override writes only while both masks are all ones.
        MaskMode::Override if inv.apmask.is_full() && inv.aqmask.is_full() => {
            for q in &own.overrides {
                let ours = inv.queues.get(q).and_then(|x| x.driver_override.as_deref()) == Some("vfio_ap");
                if ours && !finals.iter().any(|m| m.contains(*q)) {
                    steps.push(Step {
                        phase: Phase::Restore,
                        op: Op::Override { apqn: *q, set: false },
                        serves: Vec::new(),
                    });
                }
            }
        }
        _ => {}
    }
    steps
}

/// Which of the cleared bits (`cleared_ap`, `cleared_aq`) can go back to 1 with masks `ap`/`aq`
/// without making an APQN of `finals` host-owned. apmask first: the kernel checks each write
/// against the other mask as it is then.
pub(super) fn give_back(finals: &[Matrix], cleared_ap: &Mask, cleared_aq: &Mask, ap: &Mask, aq: &Mask) -> (Mask, Mask) {
    let held_ap = |a: u8| finals.iter().any(|m| m.adapters.get(a) && !m.domains.and(aq).is_empty());
    let give_ap = Mask::from_ids(cleared_ap.and_not(ap).iter().filter(|a| !held_ap(*a)));
    let ap2 = ap.or(&give_ap);
    let held_aq = |d: u8| finals.iter().any(|m| m.domains.get(d) && !m.adapters.and(&ap2).is_empty());
    let give_aq = Mask::from_ids(cleared_aq.and_not(aq).iter().filter(|d| !held_aq(*d)));
    (give_ap, give_aq)
}
