//! Latest rule 4: the source matrix becomes the destination mdev's configuration and must pass the
//! checks of an `ap_config` write (kernel-ap.md §5): ids above the maximum → ENODEV, else a queue
//! reserved for the host's drivers → EADDRNOTAVAIL, else a queue in another mdev's matrix →
//! EADDRINUSE, logged for each shared queue of the first such mdev (mdevs in UUID order).

use crate::ap::inventory::VFIO_AP_DRIVER;
use crate::ap::{Apqn, Inventory, Mask, Queue, kmsg};

use super::reason::{self, Reason, Rejected};
use super::{Ctx, Failure, apqns, queues_for};

/// Host-owned for `ap_config`: an override naming another driver wins; without an override the
/// masks decide (both bits set). APQNs without a queue device follow the masks too.
fn host_owned(inv: &Inventory, q: Apqn, queue: Option<&Queue>) -> bool {
    let over = queue.and_then(|x| x.driver_override.as_deref()).map(|d| d.trim_end_matches('\n'));
    match over.filter(|d| !d.is_empty()) {
        Some(driver) => driver != VFIO_AP_DRIVER,
        None => inv.host_owned_by_masks(q),
    }
}

/// `guest` holds the target's queues of the source guest matrix, already looked up by rule 1: the
/// matrix is usually the same set.
pub(super) fn check(ctx: &Ctx, guest: (&[Apqn], &[Option<&Queue>]), reasons: &mut Vec<Reason>) -> Option<Failure> {
    let (m, t) = (&ctx.src_mdev.matrix, ctx.tgt);
    let mut enodev = false;
    let mut above = |ids: &Mask, max: u8, r: fn(u8, u8) -> Rejected| {
        for id in ids.iter().filter(|id| *id > max) {
            reasons.push(reason::config_rejected(r(id, max)));
            enodev = true;
        }
    };
    above(&m.adapters, t.max_adapter_id, Rejected::AdapterAboveMax);
    above(&m.domains, t.max_domain_id, Rejected::DomainAboveMax);
    above(&m.control, t.max_domain_id, Rejected::ControlDomainAboveMax);

    // Ids above the maximum were reported above; the queue checks look at the rest.
    let adapters = m.adapters.and(&Mask::up_to(t.max_adapter_id));
    let domains = m.domains.and(&Mask::up_to(t.max_domain_id));
    let all = apqns(&adapters, &domains);

    let mut reserved = false;
    let looked_up;
    let queues = if all == guest.0 {
        guest.1
    } else {
        looked_up = queues_for(t, &all);
        &looked_up
    };
    for (&q, &queue) in all.iter().zip(queues) {
        if host_owned(t, q, queue) {
            reasons.push(reason::config_rejected(Rejected::HostOwned(q)));
            reserved = true;
        }
    }

    let mut shared = None;
    for (other, om) in t.mdevs.iter().filter(|(u, _)| u.as_str() != ctx.uuid) {
        let (sa, sd) = (adapters.and(&om.matrix.adapters), domains.and(&om.matrix.domains));
        if sa.is_empty() || sd.is_empty() {
            continue;
        }
        let mut lines = Vec::new();
        for a in sa.iter() {
            for d in sd.iter() {
                let q = Apqn::new(a, d);
                let line = kmsg::already_assigned(ctx.uuid, q, other);
                reasons.push(reason::config_in_use(q, &line));
                lines.push(line);
            }
        }
        shared.get_or_insert(lines);
    }

    if enodev {
        Some(Failure::new(libc::ENODEV, Vec::new()))
    } else if reserved {
        Some(Failure::new(libc::EADDRNOTAVAIL, Vec::new()))
    } else {
        shared.map(|lines| Failure::new(libc::EADDRINUSE, lines))
    }
}
