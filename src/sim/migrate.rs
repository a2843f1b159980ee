//! A live migration's destination checks, run the way the destination kernel runs them: in
//! order, stopping at the first failing rule (kernel-ap.md §6.1 seed v1, §6.2 latest, §9).

use crate::ap::functions::{self, COMPARED_LATEST, FACILITIES};
use crate::ap::inventory::VFIO_AP_DRIVER;
use crate::ap::{ApFunctions, Apqn, Mask, kmsg};

use super::Profile;
use super::kernel::{Errno, Kernel};

/// What a migration attempt produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Migration {
    /// The errno the destination's vfio_ap returned to QEMU; `None` when it never ran the checks.
    pub errno: Option<Errno>,
    /// The lines the destination kernel logged.
    pub kernel_log: Vec<String>,
    /// The error the source's console (libvirt) shows; `None` on success.
    pub console: Option<String>,
}

impl Migration {
    pub fn is_ok(&self) -> bool {
        self.errno.is_none() && self.console.is_none()
    }
    fn refused(console: String) -> Migration {
        Migration { errno: None, kernel_log: Vec::new(), console: Some(console) }
    }
    fn failed(errno: Errno, kernel_log: Vec<String>) -> Migration {
        Migration { errno: Some(errno), kernel_log, console: Some(kmsg::console_load_failed(errno)) }
    }
}

fn can_migrate(k: &Kernel) -> bool {
    k.matrix_features().contains(&"migratable")
}

fn v1_family(p: Profile) -> bool {
    p == Profile::MigV1
}

/// Migrates the guest using mdev `uuid` from `source` to `target`. On success under the latest
/// rules the source configuration overwrites the destination mdev. Logged lines are appended to
/// the target's kernel log.
pub fn migrate(source: &Kernel, target: &mut Kernel, uuid: &str) -> Migration {
    let uuid = uuid.to_ascii_lowercase();
    let result = run(source, target, &uuid);
    target.log.extend(result.kernel_log.iter().cloned());
    if result.is_ok()
        && !v1_family(target.profile)
        && let (Some(src), Some(tgt)) = (source.mdevs.get(&uuid), target.mdevs.get_mut(&uuid))
    {
        tgt.matrix = src.matrix;
    }
    result
}

fn run(source: &Kernel, target: &Kernel, uuid: &str) -> Migration {
    if !can_migrate(source) || !can_migrate(target) {
        // QEMU's vfio-ap device carries a migration blocker on such kernels.
        return Migration::refused(kmsg::console_migration_disabled(uuid));
    }
    let streams_differ = matches!((&source.vfio_ap_stream, &target.vfio_ap_stream), (Some(a), Some(b)) if a != b);
    if v1_family(source.profile) != v1_family(target.profile) || streams_differ {
        // The two migration streams are not understood by each other.
        return Migration::failed(libc::EINVAL, Vec::new());
    }
    let Some(src) = source.mdevs.get(uuid) else {
        return Migration::refused(kmsg::console_device_not_found(uuid));
    };
    if !target.mdevs.contains_key(uuid) {
        return Migration::refused(kmsg::console_device_not_found(uuid));
    }
    if v1_family(target.profile) {
        if !src.migratable {
            return Migration::refused(kmsg::console_migration_disabled(uuid));
        }
        v1(source, target, uuid)
    } else {
        latest(source, target, uuid)
    }
}

fn guest_apqns(k: &Kernel, uuid: &str) -> Vec<Apqn> {
    k.mdevs.get(uuid).map(|m| k.guest_matrix(&m.matrix).apqns().into_iter().collect()).unwrap_or_default()
}

/// Lines for every facility bit that differs (all 32 bits, named ones first in lszcrypt order).
fn facility_lines(uuid: &str, q: Apqn, s: ApFunctions, t: ApFunctions, named: &[functions::Facility]) -> Vec<String> {
    let mut out = Vec::new();
    for f in named {
        if s.has(f.mask) != t.has(f.mask) {
            out.extend(kmsg::facility_differs(uuid, f, q, s.has(f.mask)));
        }
    }
    out
}

fn v1(source: &Kernel, target: &Kernel, uuid: &str) -> Migration {
    let src = guest_apqns(source, uuid);
    let tgt = guest_apqns(target, uuid);
    if src.len() > tgt.len() {
        return Migration::failed(libc::EIO, vec![kmsg::config_size_larger(uuid, src.len(), tgt.len())]);
    }
    if src.len() != tgt.len() {
        return Migration::failed(libc::ENODEV, vec![kmsg::queue_count_differs(uuid, src.len(), tgt.len())]);
    }
    if let Some(q) = src.iter().find(|q| !tgt.contains(q)) {
        return Migration::failed(libc::ENODEV, vec![kmsg::queue_not_assigned(uuid, *q)]);
    }
    for q in &src {
        // v1 takes the hardware info from the card: functions as printed and the raw type.
        let (Some(sc), Some(tc)) = (source.cards.get(&q.apid), target.cards.get(&q.apid)) else { continue };
        let (sf, tf) = (sc.functions.card_visible(), tc.functions.card_visible());
        if sf == tf && sc.raw_type <= tc.raw_type {
            continue;
        }
        let mut log = vec![kmsg::queues_not_compatible(uuid, *q)];
        log.extend(facility_lines(uuid, *q, sf, tf, &FACILITIES));
        let named: u32 = FACILITIES.iter().map(|f| f.mask).sum();
        for bit in 0..32u32 {
            let mask = 0x8000_0000u32 >> bit;
            if mask & named == 0 && sf.has(mask) != tf.has(mask) {
                log.extend(kmsg::facility_bit_differs(uuid, bit, *q, sf.has(mask)));
            }
        }
        if sc.raw_type > tc.raw_type {
            log.push(kmsg::ap_type_not_compatible(uuid, sc.raw_type, tc.raw_type));
        }
        return Migration::failed(libc::EFAULT, log);
    }
    if target.se_host {
        return Migration::failed(libc::EOPNOTSUPP, vec![kmsg::target_is_se_guest(uuid)]);
    }
    Migration::default()
}

fn latest(source: &Kernel, target: &Kernel, uuid: &str) -> Migration {
    let Some(src_mdev) = source.mdevs.get(uuid) else { return Migration::default() };
    let src = guest_apqns(source, uuid);
    // 1. every source APQN bound to vfio_ap on the target
    let log: Vec<String> = src
        .iter()
        .filter(|q| target.queue_driver(**q) != Some(VFIO_AP_DRIVER))
        .map(|q| kmsg::queue_not_available(uuid, *q))
        .collect();
    if !log.is_empty() {
        return Migration::failed(libc::ENODEV, log);
    }
    // 2. control domains in the target's configuration
    let log: Vec<String> = src_mdev
        .matrix
        .control
        .iter()
        .filter(|d| !target.cfg_control.get(*d))
        .map(|d| kmsg::control_domain_not_available(uuid, d))
        .collect();
    if !log.is_empty() {
        return Migration::failed(libc::ENODEV, log);
    }
    // 3. live TAPQ hardware info per queue
    let mut log = Vec::new();
    let mut tapq_errno = None;
    let mut incompatible = false;
    for q in &src {
        let rc = |k: &Kernel| k.tapq_rc(*q).or_else(|| k.queue_functions(*q).is_none().then_some(1));
        let failed = [target, source].into_iter().find_map(rc);
        if let Some(rc) = failed {
            log.push(kmsg::tapq_failed(uuid, *q, rc));
            tapq_errno.get_or_insert(if rc == 1 { libc::ENODEV } else { libc::EIO });
            continue;
        }
        let (Some(sf), Some(tf)) = (source.queue_functions(*q), target.queue_functions(*q)) else { continue };
        let (st, tt) = (
            source.cards.get(&q.apid).map(|c| c.raw_type).unwrap_or(0),
            target.cards.get(&q.apid).map(|c| c.raw_type).unwrap_or(0),
        );
        let mut lines = facility_lines(uuid, *q, sf, tf, &COMPARED_LATEST);
        if st > tt {
            lines.push(kmsg::ap_type_not_compatible(uuid, st, tt));
        }
        let class = |f: ApFunctions| (f.has(functions::FULL), f.has(functions::STATELESS));
        let (sc, tc) = (class(sf), class(tf));
        if sc != tc && !(sc == (false, true) && tc.0) {
            if sc.0 && !tc.0 {
                lines.extend(kmsg::function_downgrade(uuid, *q));
            } else {
                lines.extend(facility_lines(uuid, *q, sf, tf, &FACILITIES[8..10]));
            }
        }
        if sf.se_state() != 0 || tf.se_state() != 0 {
            lines.push(kmsg::bind_state_not_zero(uuid, sf.se_state(), tf.se_state(), *q));
        }
        if !lines.is_empty() {
            incompatible = true;
            log.push(kmsg::queues_not_compatible(uuid, *q));
            log.extend(lines);
        }
    }
    if let Some(e) = tapq_errno {
        return Migration::failed(e, log);
    }
    if incompatible {
        return Migration::failed(libc::EINVAL, log);
    }
    // 4. the source configuration must pass the target's ap_config checks
    let m = src_mdev.matrix;
    let over = |mask: &Mask, max: u8| mask.highest().is_some_and(|x| x > max);
    if over(&m.adapters, target.max_adapter_id)
        || over(&m.domains, target.max_domain_id)
        || over(&m.control, target.max_domain_id)
    {
        return Migration::failed(libc::ENODEV, Vec::new());
    }
    if m.apqns().into_iter().any(|q| target.host_owned(q)) {
        return Migration::failed(libc::EADDRNOTAVAIL, Vec::new());
    }
    let conflict = target.mdevs.iter().filter(|(u, _)| u.as_str() != uuid).find_map(|(other, om)| {
        let shared: Vec<Apqn> = m.apqns().into_iter().filter(|q| om.matrix.contains(*q)).collect();
        (!shared.is_empty()).then(|| (other.clone(), shared))
    });
    if let Some((other, shared)) = conflict {
        return Migration::failed(
            libc::EADDRINUSE,
            shared.into_iter().map(|q| kmsg::already_assigned(uuid, q, &other)).collect(),
        );
    }
    // 5. secure execution
    if source.se_host || target.se_host {
        return Migration::failed(libc::EPERM, vec![kmsg::se_not_allowed(uuid)]);
    }
    Migration::default()
}
