//! The latest rules (v3/v4 and newer code), kernel-ap.md §6.2 and §9: the source configuration
//! overwrites the destination mdev, so the destination checks its own queues (live TAPQ, the
//! queue-level `ap_functions` with the SE bits) against what the source sent. Within a rule every
//! offender is logged; the kernel then fails with that rule's errno.

use crate::ap::functions::{COMPARED_LATEST, FACILITIES, FULL, STATELESS};
use crate::ap::{ApFunctions, Apid, Apqn, Inventory, Queue, kmsg};

use super::reason::{Reason, ReasonCode};
use super::{Ctx, Failure, apqns, config, keep_first, queues_for};

pub(super) fn check(ctx: &Ctx, reasons: &mut Vec<Reason>) -> Option<Failure> {
    let uuid = ctx.uuid;
    let sg = &ctx.src_mdev.guest_matrix;
    let guest = apqns(&sg.adapters, &sg.domains);
    let (src_queues, tgt_queues) = (queues_for(ctx.src, &guest), queues_for(ctx.tgt, &guest));
    let mut first = None;

    // 1: a queue device bound to vfio_ap on the target for every source guest queue.
    let mut log = Vec::new();
    for (&q, t) in guest.iter().zip(&tgt_queues) {
        if !t.is_some_and(Queue::bound_to_vfio) {
            let line = kmsg::queue_not_available(uuid, q);
            reasons.push(Reason::logged(ReasonCode::QueueNotAvailable, Some(q), std::slice::from_ref(&line)));
            log.push(line);
        }
    }
    keep_first(&mut first, (!log.is_empty()).then(|| Failure::new(libc::ENODEV, log)));

    // 2: the source matrix's control domains in the target's host configuration.
    let mut log = Vec::new();
    if let Some(host) = ctx.tgt.config.control_domains {
        for c in ctx.src_mdev.matrix.control.iter().filter(|c| !host.get(*c)) {
            let line = kmsg::control_domain_not_available(uuid, c);
            reasons.push(Reason::logged(ReasonCode::ControlDomainNotAvailable, None, std::slice::from_ref(&line)));
            log.push(line);
        }
    }
    keep_first(&mut first, (!log.is_empty()).then(|| Failure::new(libc::ENODEV, log)));

    // 3
    keep_first(&mut first, hardware(ctx, &guest, &src_queues, &tgt_queues, reasons));
    // 4
    keep_first(&mut first, config::check(ctx, (&guest, &tgt_queues), reasons));

    // 5
    if ctx.src.kernel.se_guest == Some(true) || ctx.tgt.kernel.se_guest == Some(true) {
        let line = kmsg::se_not_allowed(uuid);
        reasons.push(Reason::logged(ReasonCode::SecureExecution, None, std::slice::from_ref(&line)));
        keep_first(&mut first, Some(Failure::new(libc::EPERM, vec![line])));
    }
    first
}

/// TAPQ's response code for a queue whose `ap_functions` could not be read (§9): checkstopped 4,
/// deconfigured 3, otherwise (offline, gone) 1.
fn tapq_rc(q: Option<&Queue>) -> u8 {
    match q {
        Some(q) if q.chkstop => 4,
        Some(q) if !q.config => 3,
        _ => 1,
    }
}

const COMPARED_MASK: u32 = {
    let mut m = 0;
    let mut i = 0;
    while i < COMPARED_LATEST.len() {
        m |= COMPARED_LATEST[i].mask;
        i += 1;
    }
    m
};

/// The function class: full native function, only stateless functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Fine,
    Downgrade,
    Differs { full: bool, stateless: bool },
}

fn class(s: ApFunctions, t: ApFunctions) -> Class {
    let (sf, sr) = (s.has(FULL), s.has(STATELESS));
    let (tf, tr) = (t.has(FULL), t.has(STATELESS));
    if (sf, sr) == (tf, tr) || (!sf && sr && tf) {
        Class::Fine
    } else if sf && !tf {
        Class::Downgrade
    } else {
        Class::Differs { full: sf != tf, stateless: sr != tr }
    }
}

/// The raw type of each queue's card, looked up once per adapter.
struct RawTypes<'a> {
    inv: &'a Inventory,
    cached: Option<(Apid, u8)>,
}

impl RawTypes<'_> {
    fn of(&mut self, a: Apid) -> u8 {
        match self.cached {
            Some((id, raw)) if id == a => raw,
            _ => {
                let raw = self.inv.cards.get(&a).map_or(0, |c| c.raw_hwtype);
                self.cached = Some((a, raw));
                raw
            }
        }
    }
}

/// Rule 3: hardware info per source guest queue. Target queues that do not exist were reported by
/// rule 1 and are skipped here.
fn hardware(
    ctx: &Ctx,
    guest: &[Apqn],
    src_queues: &[Option<&Queue>],
    tgt_queues: &[Option<&Queue>],
    reasons: &mut Vec<Reason>,
) -> Option<Failure> {
    let uuid = ctx.uuid;
    let mut log = Vec::new();
    let mut tapq_errno = None;
    let (mut src_raw, mut tgt_raw) = (RawTypes { inv: ctx.src, cached: None }, RawTypes { inv: ctx.tgt, cached: None });
    for ((&q, &sq), &tq) in guest.iter().zip(src_queues).zip(tgt_queues) {
        let Some(tq) = tq else { continue };
        let (s, t) = match (sq.and_then(|x| x.functions), tq.functions) {
            (Some(s), Some(t)) => (s, t),
            (_, tf) => {
                // The destination's own TAPQ first, then what the source could not read.
                let rc = if tf.is_none() { tapq_rc(Some(tq)) } else { tapq_rc(sq) };
                let line = kmsg::tapq_failed(uuid, q, rc);
                reasons.push(Reason::logged(ReasonCode::TapqFailed, Some(q), std::slice::from_ref(&line)));
                log.push(line);
                tapq_errno.get_or_insert(if rc == 1 { libc::ENODEV } else { libc::EIO });
                continue;
            }
        };
        let (sraw, traw) = (src_raw.of(q.apid), tgt_raw.of(q.apid));
        let cls = class(s, t);
        let fine = (s.0 ^ t.0) & COMPARED_MASK == 0
            && sraw <= traw
            && cls == Class::Fine
            && s.se_state() == 0
            && t.se_state() == 0;
        if !fine {
            log.extend(incompatible(uuid, q, (s, sraw), (t, traw), cls, reasons));
        }
    }
    (!log.is_empty()).then(|| Failure::new(tapq_errno.unwrap_or(libc::EINVAL), log))
}

/// Header, then facilities, type, function class, bind state.
fn incompatible(
    uuid: &str,
    q: Apqn,
    (s, sraw): (ApFunctions, u8),
    (t, traw): (ApFunctions, u8),
    cls: Class,
    reasons: &mut Vec<Reason>,
) -> Vec<String> {
    let mut lines = vec![kmsg::queues_not_compatible(uuid, q)];
    let mut add = |code, new: &[String]| {
        reasons.push(Reason::logged(code, Some(q), new));
        lines.extend_from_slice(new);
    };
    for f in COMPARED_LATEST.iter().filter(|f| (s.0 ^ t.0) & f.mask != 0) {
        add(ReasonCode::FacilityDiffers, &kmsg::facility_differs(uuid, f, q, s.has(f.mask)));
    }
    if sraw > traw {
        add(ReasonCode::ApTypeNotCompatible, &[kmsg::ap_type_not_compatible(uuid, sraw, traw)]);
    }
    match cls {
        Class::Fine => {}
        Class::Downgrade => add(ReasonCode::FunctionClassDowngrade, &kmsg::function_downgrade(uuid, q)),
        Class::Differs { full, stateless } => {
            let [.., f, r] = &FACILITIES;
            if full {
                add(ReasonCode::FacilityDiffers, &kmsg::facility_differs(uuid, f, q, s.has(FULL)));
            }
            if stateless {
                add(ReasonCode::FacilityDiffers, &kmsg::facility_differs(uuid, r, q, s.has(STATELESS)));
            }
        }
    }
    if s.se_state() != 0 || t.se_state() != 0 {
        add(ReasonCode::BindStateNotZero, &[kmsg::bind_state_not_zero(uuid, s.se_state(), t.se_state(), q)]);
    }
    lines
}
