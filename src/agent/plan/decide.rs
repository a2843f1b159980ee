//! Which desired mdevs can be made, and how their queues reach vfio_ap: the claims of every
//! desired mdev against what the host holds, settled to a fixpoint (an mdev of ours that is
//! refused keeps its current queues, which may refuse others in turn).

use std::collections::{BTreeMap, BTreeSet};

use crate::ap::{Apqn, Inventory, KernelProfile, Mask, Matrix};

use super::super::desired::{Desired, DesiredMdev};
use super::super::ownership::Ownership;
use super::super::reason::{Code, Reason, list_apqns};
use super::masks::{self, Choice};
use super::{BusMask, MaskMode, any_override, host_owned};

/// A desired mdev that will be made as desired.
#[derive(Debug, Clone)]
pub(super) struct Accepted {
    pub index: usize,
    pub uuid: String,
    pub target: Matrix,
    pub migratable: bool,
    pub clear: Option<(BusMask, Mask)>,
    pub overrides: Vec<Apqn>,
    pub notes: Vec<Reason>,
}

#[derive(Debug, Clone)]
pub(super) struct Decisions {
    /// In the order they were granted their queues.
    pub accepted: Vec<Accepted>,
    /// Desired entries refused, by index.
    pub refused: BTreeMap<usize, Reason>,
    /// Our mdevs that are no longer desired: removable ones, and those a guest uses.
    pub remove: Vec<String>,
    pub waiting: BTreeMap<String, Reason>,
    /// Mdevs whose current matrix stays as it is (foreign, refused, waiting).
    pub frozen: BTreeSet<String>,
    /// Desired entries with a warning only.
    pub node: Vec<Reason>,
}

struct Pass {
    accepted: Vec<Accepted>,
    refused: BTreeMap<usize, Reason>,
}

pub(super) fn decide(desired: &Desired, inv: &Inventory, own: &Ownership, mode: MaskMode) -> Decisions {
    let desired_uuids: BTreeSet<&str> = desired.mdevs.iter().map(|d| d.uuid.as_str()).collect();
    let mut frozen: BTreeSet<String> = BTreeSet::new();
    let mut remove = Vec::new();
    let mut waiting = BTreeMap::new();
    for (uuid, m) in &inv.mdevs {
        if !own.owns_mdev(uuid) {
            frozen.insert(uuid.clone());
        } else if !desired_uuids.contains(uuid.as_str()) {
            if m.in_use {
                frozen.insert(uuid.clone());
                let r = Reason::new(
                    Code::MdevInUse,
                    "no longer desired, but a guest uses it: the removal waits until it is released",
                );
                waiting.insert(uuid.clone(), r);
            } else {
                remove.push(uuid.clone());
            }
        }
    }

    // Refusals that do not depend on queues.
    let mut sticky: BTreeMap<usize, Reason> = BTreeMap::new();
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in desired.mdevs.iter().enumerate() {
        if let Some(r) = static_refusal(d, inv, own, &mut first, i) {
            if own.owns_mdev(&d.uuid) && inv.mdevs.contains_key(&d.uuid) && first.get(d.uuid.as_str()) == Some(&i) {
                frozen.insert(d.uuid.clone());
            }
            sticky.insert(i, r);
        }
    }

    // Our existing mdevs first (they hold their queues), then new ones, in list order.
    let mut order: Vec<usize> = (0..desired.mdevs.len()).collect();
    order.sort_by_key(|i| !inv.mdevs.contains_key(&desired.mdevs[*i].uuid));

    loop {
        let pass = one_pass(desired, inv, own, mode, &order, &frozen, &sticky);
        // A refused mdev of ours keeps what it holds: others that counted on it must be re-judged.
        let newly: Vec<usize> = pass
            .refused
            .keys()
            .copied()
            .filter(|i| {
                let u = &desired.mdevs[*i].uuid;
                inv.mdevs.contains_key(u) && !frozen.contains(u) && !sticky.contains_key(i)
            })
            .collect();
        if newly.is_empty() {
            let mut node = Vec::new();
            if inv.profile() == KernelProfile::CannotMigrate && pass.accepted.iter().any(|a| a.migratable) {
                node.push(cannot_migrate(inv));
            }
            return Decisions { accepted: pass.accepted, refused: pass.refused, remove, waiting, frozen, node };
        }
        for i in newly {
            frozen.insert(desired.mdevs[i].uuid.clone());
            if let Some(r) = pass.refused.get(&i) {
                sticky.insert(i, r.clone());
            }
        }
    }
}

fn cannot_migrate(inv: &Inventory) -> Reason {
    let why = if inv.kernel.se_guest == Some(true) {
        "this host is a Secure Execution guest"
    } else {
        "the kernel has no vfio-ap migration support"
    };
    Reason::new(
        Code::KernelCannotMigrate,
        format!(
            "migratable is wanted, but `migratable` is not in the matrix features ({why}): the mdev is made, it cannot migrate"
        ),
    )
}

fn static_refusal<'a>(
    d: &'a DesiredMdev,
    inv: &Inventory,
    own: &Ownership,
    first: &mut BTreeMap<&'a str, usize>,
    i: usize,
) -> Option<Reason> {
    if let Some(f) = first.get(d.uuid.as_str()) {
        return Some(Reason::new(Code::UuidInUse, format!("the UUID is already used by desired entry {f}")));
    }
    first.insert(&d.uuid, i);
    if inv.mdevs.contains_key(&d.uuid) && !own.owns_mdev(&d.uuid) {
        return Some(
            Reason::new(Code::UuidInUse, "an mdev with this UUID exists and the agent did not create it")
                .errno(libc::EEXIST),
        );
    }
    let m = d.matrix();
    let above = |mask: &Mask, max: u8| -> Vec<u8> { mask.iter().filter(|x| *x > max).collect() };
    let (a, dd, c) = (
        above(&m.adapters, inv.max_adapter_id),
        above(&m.domains, inv.max_domain_id),
        above(&m.control, inv.max_domain_id),
    );
    if !a.is_empty() || !dd.is_empty() || !c.is_empty() {
        let mut parts = Vec::new();
        if !a.is_empty() {
            parts.push(format!("adapters {a:?} above ap_max_adapter_id {}", inv.max_adapter_id));
        }
        if !dd.is_empty() || !c.is_empty() {
            parts.push(format!("domains {:?} above ap_max_domain_id {}", [dd, c].concat(), inv.max_domain_id));
        }
        return Some(Reason::new(Code::IdAboveMaximum, parts.join("; ")).errno(libc::ENODEV));
    }
    None
}

fn one_pass(
    desired: &Desired,
    inv: &Inventory,
    own: &Ownership,
    mode: MaskMode,
    order: &[usize],
    frozen: &BTreeSet<String>,
    sticky: &BTreeMap<usize, Reason>,
) -> Pass {
    let held: BTreeMap<Apqn, &str> = inv
        .mdevs
        .iter()
        .filter(|(u, _)| frozen.contains(*u))
        .flat_map(|(u, m)| m.matrix.apqns().into_iter().map(move |q| (q, u.as_str())))
        .collect();
    let (mut ap, mut aq) = (inv.apmask, inv.aqmask);
    let mut claimed: BTreeMap<Apqn, &str> = BTreeMap::new();
    let mut pass = Pass { accepted: Vec::new(), refused: sticky.clone() };
    for &i in order {
        if sticky.contains_key(&i) {
            continue;
        }
        let d = &desired.mdevs[i];
        let target = d.matrix();
        let apqns: Vec<Apqn> = target.apqns().into_iter().collect();
        if let Some(r) = holder_conflict(d, &apqns, &held, &claimed, inv, own) {
            pass.refused.insert(i, r);
            continue;
        }
        let needed: Vec<Apqn> = apqns.iter().copied().filter(|q| host_owned(inv, &ap, &aq, *q)).collect();
        let mut acc = Accepted {
            index: i,
            uuid: d.uuid.clone(),
            target,
            migratable: d.migratable,
            clear: None,
            overrides: Vec::new(),
            notes: config_notes(inv, &target, &apqns),
        };
        if !needed.is_empty() {
            match hand_over(inv, mode, &ap, &aq, &target, &needed) {
                Err(r) => {
                    pass.refused.insert(i, r);
                    continue;
                }
                Ok(HandOver::Mask(c)) => {
                    match c.mask {
                        BusMask::Apmask => ap = ap.and_not(&c.bits),
                        BusMask::Aqmask => aq = aq.and_not(&c.bits),
                    }
                    if !c.collateral.is_empty() {
                        acc.notes.push(
                            Reason::new(
                                Code::CollateralQueuesMoved,
                                format!(
                                    "clearing {} bits {:?} also moved host queues (none online) to vfio_ap: {}",
                                    c.mask.file(),
                                    c.bits.ids(),
                                    list_apqns(&c.collateral)
                                ),
                            )
                            .apqns(c.collateral.iter().copied()),
                        );
                    }
                    acc.clear = Some((c.mask, c.bits));
                }
                Ok(HandOver::Overrides(qs)) => acc.overrides = qs,
            }
        }
        if d.migratable && inv.profile() == KernelProfile::CannotMigrate {
            acc.notes.push(cannot_migrate(inv));
        }
        for q in &apqns {
            claimed.insert(*q, &d.uuid);
        }
        pass.accepted.push(acc);
    }
    pass
}

fn holder_conflict(
    d: &DesiredMdev,
    apqns: &[Apqn],
    held: &BTreeMap<Apqn, &str>,
    claimed: &BTreeMap<Apqn, &str>,
    inv: &Inventory,
    own: &Ownership,
) -> Option<Reason> {
    let mut by: BTreeMap<&str, Vec<Apqn>> = BTreeMap::new();
    for q in apqns {
        if let Some(h) = held.get(q).filter(|h| **h != d.uuid) {
            by.entry(h).or_default().push(*q);
        }
    }
    if let Some((h, qs)) = by.into_iter().next() {
        let r = if !own.owns_mdev(h) {
            Reason::new(
                Code::ForeignMdevHoldsQueue,
                format!("{} already assigned to {h}, an mdev the agent did not create", list_apqns(&qs)),
            )
        } else if inv.mdevs.get(h).is_some_and(|m| m.in_use) {
            Reason::new(
                Code::ApqnConflict,
                format!("{} held by {h}, no longer desired but in use by a guest (its removal waits)", list_apqns(&qs)),
            )
        } else {
            Reason::new(Code::ApqnConflict, format!("{} held by {h}, which keeps its configuration", list_apqns(&qs)))
        };
        return Some(r.errno(libc::EADDRINUSE).apqns(qs));
    }
    let mut by: BTreeMap<&str, Vec<Apqn>> = BTreeMap::new();
    for q in apqns {
        if let Some(h) = claimed.get(q) {
            by.entry(h).or_default().push(*q);
        }
    }
    by.into_iter().next().map(|(h, qs)| {
        Reason::new(
            Code::ApqnConflict,
            format!("{} also wanted by desired mdev {h}, which holds them already or is listed first", list_apqns(&qs)),
        )
        .errno(libc::EADDRINUSE)
        .apqns(qs)
    })
}

/// APQNs and control domains absent from the host configuration: allowed, reported.
fn config_notes(inv: &Inventory, target: &Matrix, apqns: &[Apqn]) -> Vec<Reason> {
    let mut notes = Vec::new();
    let cfg = &inv.config;
    let absent: Vec<Apqn> = apqns
        .iter()
        .copied()
        .filter(|q| cfg.adapters.is_some_and(|m| !m.get(q.apid)) || cfg.usage_domains.is_some_and(|m| !m.get(q.apqi)))
        .collect();
    if !absent.is_empty() {
        notes.push(
            Reason::new(
                Code::NotInHostConfig,
                format!(
                    "{} not in the host configuration: assigned, not given to the guest until configured",
                    list_apqns(&absent)
                ),
            )
            .apqns(absent),
        );
    }
    let ctl: Vec<u8> = cfg.control_domains.map(|m| target.control.and_not(&m).ids()).unwrap_or_default();
    if !ctl.is_empty() {
        notes
            .push(Reason::new(Code::NotInHostConfig, format!("control domains {ctl:?} not in the host configuration")));
    }
    notes
}

enum HandOver {
    Mask(Choice),
    Overrides(Vec<Apqn>),
}

fn hand_over(
    inv: &Inventory,
    mode: MaskMode,
    ap: &Mask,
    aq: &Mask,
    target: &Matrix,
    needed: &[Apqn],
) -> Result<HandOver, Reason> {
    let owned = |what: &str| {
        Reason::new(Code::QueueOwnedByHost, format!("{} owned by the host's drivers: {what}", list_apqns(needed)))
            .errno(libc::EADDRNOTAVAIL)
            .apqns(needed.iter().copied())
    };
    match mode {
        MaskMode::Observe => Err(owned("masks are observed, not managed (--ap-masks observe)")),
        MaskMode::Manage => {
            if any_override(inv) {
                return Err(Reason::new(
                    Code::HostProfileMismatch,
                    "queues of this host carry driver_override: masks cannot be managed (use --ap-masks override)",
                )
                .apqns(needed.iter().copied()));
            }
            masks::choose(inv, ap, aq, target, needed).map(HandOver::Mask)
        }
        MaskMode::Override => {
            if !inv.kernel.driver_override_capable {
                return Err(Reason::new(Code::HostProfileMismatch, "this kernel has no per-queue driver_override"));
            }
            if !inv.apmask.is_full() || !inv.aqmask.is_full() {
                return Err(Reason::new(
                    Code::HostProfileMismatch,
                    "apmask/aqmask are not all ones: this host uses masks (use --ap-masks manage)",
                )
                .errno(libc::EINVAL));
            }
            let mut qs = Vec::new();
            for q in needed {
                match inv.queues.get(q).and_then(|x| x.driver_override.as_deref()) {
                    Some("") => qs.push(*q),
                    Some(o) => {
                        return Err(owned(&format!("{q} has driver_override {o:?}, which the agent did not set")));
                    }
                    None => return Err(owned(&format!("{q} has no queue device whose driver_override could be set"))),
                }
            }
            Ok(HandOver::Overrides(qs))
        }
    }
}
