//! The seed (v1) rules, kernel-ap.md §6.1: the destination compares the two guest matrices and the
//! hardware info each side took from its **cards** at probe time (card `ap_functions`, which hide
//! bits 16..31, and `raw_hwtype`). The v1 code logs only the first offending APQN of a rule.

use crate::ap::functions::FACILITIES;
use crate::ap::inventory::Mdev;
use crate::ap::{ApFunctions, Apid, Apqn, Inventory, Matrix, kmsg};

use super::reason::{self, Reason, ReasonCode};
use super::{Ctx, Failure, keep_first};

/// Rule 0 (the seed's rule 1): the source refuses before anything is sent.
pub(super) fn migration_enabled(m: &Mdev) -> Option<Reason> {
    (m.migratable != Some(true)).then(|| reason::migration_disabled(m.migratable))
}

fn apqn_count(m: &Matrix) -> usize {
    m.adapters.count() * m.domains.count()
}

/// What v1 sends and compares for every queue of an adapter: the card's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CardInfo {
    functions: ApFunctions,
    raw: u8,
}

/// A queue in a guest matrix always has a card; should one be missing from the inventory there is
/// no hardware info to compare (the simulator skips such a queue the same way).
fn card_info(inv: &Inventory, a: Apid) -> Option<CardInfo> {
    inv.cards.get(&a).map(|c| CardInfo { functions: c.functions.card_visible(), raw: c.raw_hwtype })
}

/// Equal under the data mask, or equal facilities and a target at least as new: with the card's
/// view both reduce to this.
fn compatible(s: CardInfo, t: CardInfo) -> bool {
    s.functions == t.functions && s.raw <= t.raw
}

/// Rules 1..5 (rule 0 is [`migration_enabled`]); every offender goes to `reasons`, the first
/// failing rule is returned with what the kernel logs.
pub(super) fn check(ctx: &Ctx, tgt_mdev: &Mdev, reasons: &mut Vec<Reason>) -> Option<Failure> {
    let uuid = ctx.uuid;
    let (sg, tg) = (&ctx.src_mdev.guest_matrix, &tgt_mdev.guest_matrix);
    let mut first = None;

    // 1, 2: the stream carries one record per guest queue. (E2BIG for a smaller target is
    // unreachable: rule 1 fails first.)
    let (sc, tc) = (apqn_count(sg), apqn_count(tg));
    if sc > tc {
        let line = kmsg::config_size_larger(uuid, sc, tc);
        reasons.push(Reason::logged(ReasonCode::ConfigSizeLarger, None, std::slice::from_ref(&line)));
        keep_first(&mut first, Some(Failure::new(libc::EIO, vec![line])));
    } else if sc < tc {
        let line = kmsg::queue_count_differs(uuid, sc, tc);
        reasons.push(Reason::logged(ReasonCode::QueueCountDiffers, None, std::slice::from_ref(&line)));
        keep_first(&mut first, Some(Failure::new(libc::ENODEV, vec![line])));
    }

    let adapters = sg.adapters.ids();
    let domains = sg.domains.ids();

    // 3: every source queue in the target's guest matrix.
    let mut missing = None;
    for &a in &adapters {
        for &d in &domains {
            let q = Apqn::new(a, d);
            if !tg.contains(q) {
                let line = kmsg::queue_not_assigned(uuid, q);
                reasons.push(Reason::logged(ReasonCode::QueueNotAssigned, Some(q), std::slice::from_ref(&line)));
                missing.get_or_insert(line);
            }
        }
    }
    keep_first(&mut first, missing.map(|l| Failure::new(libc::ENODEV, vec![l])));

    // 4: hardware info, per adapter since it comes from the card; queues missing from the
    // target's guest matrix were reported by rule 3.
    let mut hw = None;
    for &a in adapters.iter().filter(|a| tg.adapters.get(**a)) {
        let (Some(s), Some(t)) = (card_info(ctx.src, a), card_info(ctx.tgt, a)) else { continue };
        if compatible(s, t) {
            continue;
        }
        for &d in domains.iter().filter(|d| tg.domains.get(**d)) {
            let lines = incompatible(uuid, Apqn::new(a, d), s, t, reasons);
            hw.get_or_insert(lines);
        }
    }
    keep_first(&mut first, hw.map(|l| Failure::new(libc::EFAULT, l)));

    // 5
    if ctx.tgt.kernel.se_guest == Some(true) {
        let line = kmsg::target_is_se_guest(uuid);
        reasons.push(Reason::logged(ReasonCode::SecureExecution, None, std::slice::from_ref(&line)));
        keep_first(&mut first, Some(Failure::new(libc::EOPNOTSUPP, vec![line])));
    }
    first
}

/// The lines for one incompatible queue: header, named facilities in table order, other bits of
/// the 32 (numbered from the MSB), then the type.
fn incompatible(uuid: &str, q: Apqn, s: CardInfo, t: CardInfo, reasons: &mut Vec<Reason>) -> Vec<String> {
    let mut lines = vec![kmsg::queues_not_compatible(uuid, q)];
    let diff = s.functions.0 ^ t.functions.0;
    let mut named = 0u32;
    for f in &FACILITIES {
        named |= f.mask;
        if diff & f.mask != 0 {
            let pair = kmsg::facility_differs(uuid, f, q, s.functions.has(f.mask));
            reasons.push(Reason::logged(ReasonCode::FacilityDiffers, Some(q), &pair));
            lines.extend(pair);
        }
    }
    for bit in 0..32u32 {
        let mask = 0x8000_0000u32 >> bit;
        if named & mask == 0 && diff & mask != 0 {
            let pair = kmsg::facility_bit_differs(uuid, bit, q, s.functions.has(mask));
            reasons.push(Reason::logged(ReasonCode::FacilityDiffers, Some(q), &pair));
            lines.extend(pair);
        }
    }
    if s.raw > t.raw {
        let line = kmsg::ap_type_not_compatible(uuid, s.raw, t.raw);
        reasons.push(Reason::logged(ReasonCode::ApTypeNotCompatible, Some(q), std::slice::from_ref(&line)));
        lines.push(line);
    }
    lines
}
