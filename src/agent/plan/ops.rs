//! From decisions to the ordered writes, the per-mdev summary and the record entries to forget.

use std::collections::{BTreeMap, BTreeSet};

use crate::ap::{Apqn, Inventory, KernelProfile, Mask, Matrix};

use super::super::desired::Desired;
use super::super::ownership::Ownership;
use super::decide::Decisions;
use super::masks::{self, restore_steps};
use super::{Action, BusMask, Forget, MaskMode, MdevPlan, Op, Part, Phase, Plan, Step, current};

/// The writes that turn `from` into `to` for one mdev: one `ap_config` write when the kernel has
/// it, else unassignments first (every intermediate matrix is a subset of `from` or `to`, so no
/// step can need a queue the final one does not), then assignments.
pub(super) fn config_ops(inv: &Inventory, uuid: &str, from: &Matrix, to: &Matrix) -> Vec<Op> {
    if from == to {
        return Vec::new();
    }
    if inv.has_ap_config() {
        return vec![Op::ApConfig { uuid: uuid.to_string(), config: *to, from: *from }];
    }
    let parts = |m: &Matrix| [(Part::Adapter, m.adapters), (Part::Domain, m.domains), (Part::Control, m.control)];
    let mut ops = Vec::new();
    for on in [false, true] {
        for ((part, f), (_, t)) in parts(from).into_iter().zip(parts(to)) {
            let ids = if on { t.and_not(&f) } else { f.and_not(&t) };
            ops.extend(ids.iter().map(|id| Op::Assign { uuid: uuid.to_string(), part, id, on }));
        }
    }
    ops
}

fn intersect(a: &Matrix, b: &Matrix) -> Matrix {
    Matrix::new(a.adapters.and(&b.adapters), a.domains.and(&b.domains), a.control.and(&b.control))
}

pub(super) fn build(desired: &Desired, inv: &Inventory, own: &Ownership, mode: MaskMode, d: Decisions) -> Plan {
    let mut steps: Vec<Step> = Vec::new();
    let push = |steps: &mut Vec<Step>, phase, op, serves: Vec<String>| steps.push(Step { phase, op, serves });

    // Everything that stays: accepted mdevs as desired, frozen ones as they are.
    let mut finals: Vec<Matrix> = d.accepted.iter().map(|a| a.target).collect();
    finals.extend(inv.mdevs.iter().filter(|(u, _)| d.frozen.contains(*u)).map(|(_, m)| m.matrix));

    // 1. Mask edits: one relative write per mask for all mdevs, then overrides. A bit chosen for
    // an earlier mdev may be made redundant by a later choice: it is not cleared (else the next
    // pass would give it back, and a second pass must write nothing).
    let cleared = |which| {
        d.accepted
            .iter()
            .filter_map(|a| a.clear.filter(|(m, _)| *m == which).map(|(_, b)| b))
            .fold(Mask::empty(), |x, b| x.or(&b))
    };
    let (mut clear_ap, mut clear_aq) = (cleared(BusMask::Apmask), cleared(BusMask::Aqmask));
    let (ap0, aq0) = (inv.apmask.and_not(&clear_ap), inv.aqmask.and_not(&clear_aq));
    let (spare_ap, spare_aq) = masks::give_back(&finals, &clear_ap, &clear_aq, &ap0, &aq0);
    clear_ap = clear_ap.and_not(&spare_ap);
    clear_aq = clear_aq.and_not(&spare_aq);
    for (which, bits) in [(BusMask::Apmask, clear_ap), (BusMask::Aqmask, clear_aq)] {
        let now = if which == BusMask::Apmask { inv.apmask } else { inv.aqmask };
        let serves: Vec<String> = d
            .accepted
            .iter()
            .filter(|a| a.clear.is_some_and(|(m, b)| m == which && !b.and(&bits).is_empty()))
            .map(|a| a.uuid.clone())
            .collect();
        if let Some(edit) = now.relative_edits_to(&now.and_not(&bits)) {
            let op = Op::Mask { mask: which, edit, clear: bits, set: Mask::empty() };
            push(&mut steps, Phase::MaskEdit, op, serves);
        }
    }
    for a in &d.accepted {
        for q in &a.overrides {
            push(&mut steps, Phase::MaskEdit, Op::Override { apqn: *q, set: true }, vec![a.uuid.clone()]);
        }
    }

    // 2. Create.
    for a in d.accepted.iter().filter(|a| !inv.mdevs.contains_key(&a.uuid)) {
        push(&mut steps, Phase::Create, Op::Create { uuid: a.uuid.clone() }, vec![a.uuid.clone()]);
    }

    // 3. Release: our mdevs holding an APQN that another accepted mdev now wants.
    let wanted: BTreeMap<Apqn, &str> =
        d.accepted.iter().flat_map(|a| a.target.apqns().into_iter().map(move |q| (q, a.uuid.as_str()))).collect();
    let mut from: BTreeMap<&str, Matrix> =
        d.accepted.iter().map(|a| (a.uuid.as_str(), current(inv, &a.uuid))).collect();
    let mut removed_early: BTreeSet<String> = BTreeSet::new();
    for (uuid, m) in &inv.mdevs {
        let takers: BTreeSet<String> = m
            .matrix
            .apqns()
            .into_iter()
            .filter_map(|q| wanted.get(&q).filter(|w| **w != uuid.as_str()).map(|w| w.to_string()))
            .collect();
        if takers.is_empty() || d.frozen.contains(uuid) {
            continue;
        }
        if let Some(a) = d.accepted.iter().find(|a| &a.uuid == uuid) {
            let shrunk = intersect(&m.matrix, &a.target);
            for op in config_ops(inv, uuid, &m.matrix, &shrunk) {
                push(&mut steps, Phase::Release, op, takers.iter().cloned().collect());
            }
            from.insert(a.uuid.as_str(), shrunk);
        } else if d.remove.contains(uuid) {
            push(&mut steps, Phase::Release, Op::Remove { uuid: uuid.clone() }, takers.into_iter().collect());
            removed_early.insert(uuid.clone());
        }
    }

    // 4. Configure.
    for a in &d.accepted {
        let f = from.get(a.uuid.as_str()).copied().unwrap_or_default();
        for op in config_ops(inv, &a.uuid, &f, &a.target) {
            push(&mut steps, Phase::Configure, op, vec![a.uuid.clone()]);
        }
    }

    // 5. migratable: only where the per-mdev attribute exists (v1 kernels).
    let profile = inv.profile();
    for a in &d.accepted {
        let op = match inv.mdevs.get(&a.uuid) {
            Some(m) => m.migratable.filter(|v| *v != a.migratable).map(|_| (a.migratable, false)),
            None if a.migratable && profile == KernelProfile::V1 => Some((true, false)),
            None if a.migratable && profile == KernelProfile::Unknown => Some((true, true)),
            None => None,
        };
        if let Some((value, if_present)) = op {
            let op = Op::Migratable { uuid: a.uuid.clone(), value, if_present };
            push(&mut steps, Phase::Migratable, op, vec![a.uuid.clone()]);
        }
    }

    // 6. Remove obsolete mdevs of ours.
    for uuid in d.remove.iter().filter(|u| !removed_early.contains(*u)) {
        push(&mut steps, Phase::Remove, Op::Remove { uuid: uuid.clone() }, Vec::new());
    }

    // 7. Restore, against the state the plan leaves behind (bits cleared now count as recorded).
    let (ap, aq) = (inv.apmask.and_not(&clear_ap), inv.aqmask.and_not(&clear_aq));
    let mut recorded = own.clone();
    recorded.apmask_cleared = recorded.apmask_cleared.or(&clear_ap);
    recorded.aqmask_cleared = recorded.aqmask_cleared.or(&clear_aq);
    steps.extend(restore_steps(inv, &recorded, mode, &finals, &ap, &aq));

    // Record entries that describe nothing.
    let created: BTreeSet<&str> = d.accepted.iter().map(|a| a.uuid.as_str()).collect();
    let overridden: BTreeSet<Apqn> = d.accepted.iter().flat_map(|a| a.overrides.iter().copied()).collect();
    let forget = Forget {
        mdevs: own
            .mdevs
            .iter()
            .filter(|u| !inv.mdevs.contains_key(*u) && !created.contains(u.as_str()))
            .cloned()
            .collect(),
        apmask: own.apmask_cleared.and(&inv.apmask).and_not(&clear_ap),
        aqmask: own.aqmask_cleared.and(&inv.aqmask).and_not(&clear_aq),
        overrides: own
            .overrides
            .iter()
            .copied()
            .filter(|q| {
                inv.queues.get(q).and_then(|x| x.driver_override.as_deref()) != Some("vfio_ap")
                    && !overridden.contains(q)
            })
            .collect(),
    };

    let mdevs = summary(desired, inv, own, &d, &steps);
    Plan { mode, profile, steps, mdevs, node: d.node, forget }
}

fn summary(desired: &Desired, inv: &Inventory, own: &Ownership, d: &Decisions, steps: &[Step]) -> Vec<MdevPlan> {
    let mut out = Vec::new();
    for (i, dm) in desired.mdevs.iter().enumerate() {
        let accepted = d.accepted.iter().find(|a| a.index == i).filter(|_| !d.refused.contains_key(&i));
        let mp = match accepted {
            None => MdevPlan {
                uuid: dm.uuid.clone(),
                desired: true,
                action: Action::Refused,
                reason: d.refused.get(&i).cloned(),
                notes: Vec::new(),
                matrix: dm.matrix(),
            },
            Some(a) => {
                let touched = steps.iter().any(|s| s.op.mdev() == Some(a.uuid.as_str()));
                let action = match (inv.mdevs.contains_key(&a.uuid), touched) {
                    (false, _) => Action::Create,
                    (true, true) => Action::Reconfigure,
                    (true, false) => Action::Unchanged,
                };
                MdevPlan {
                    uuid: a.uuid.clone(),
                    desired: true,
                    action,
                    reason: None,
                    notes: a.notes.clone(),
                    matrix: a.target,
                }
            }
        };
        out.push(mp);
    }
    let desired_uuids: BTreeSet<&str> = desired.mdevs.iter().map(|m| m.uuid.as_str()).collect();
    for (uuid, m) in inv.mdevs.iter().filter(|(u, _)| !desired_uuids.contains(u.as_str())) {
        let (action, reason) = if !own.owns_mdev(uuid) {
            (Action::Foreign, None)
        } else if let Some(r) = d.waiting.get(uuid) {
            (Action::Refused, Some(r.clone()))
        } else {
            (Action::Remove, None)
        };
        out.push(MdevPlan { uuid: uuid.clone(), desired: false, action, reason, notes: Vec::new(), matrix: m.matrix });
    }
    out
}
