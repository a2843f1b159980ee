//! A simulated host built from a sysfs tree (a snapshot of a real host, a dump, or a copy):
//! the bridge between `sysfs` (what a tree says) and `sim` (what a kernel does).

use crate::ap::{Inventory, KernelProfile, Mask};
use crate::sim::kernel::{SimCard, SimMdev, SimQueue};
use crate::sim::{Kernel, Profile};

/// The simulator profile a tree shows: v1 when an mdev has `migratable`, latest (or override,
/// when queues carry `driver_override`) when the features list `migratable`, base otherwise.
pub fn detect_profile(inv: &Inventory) -> Profile {
    match inv.profile() {
        KernelProfile::V1 => Profile::MigV1,
        KernelProfile::CannotMigrate => Profile::Base,
        KernelProfile::Latest | KernelProfile::Unknown if inv.kernel.driver_override_capable => Profile::Override,
        KernelProfile::Latest | KernelProfile::Unknown => Profile::MigLatest,
    }
}

/// Builds the kernel whose dump would read back as `inv`. A queue whose TAPQ failed while it is
/// configured and not checkstopped cannot be told apart further; it keeps the card's functions.
pub fn kernel_from_inventory(inv: &Inventory, profile: Option<Profile>) -> Kernel {
    let mut k = Kernel::new(profile.unwrap_or_else(|| detect_profile(inv)));
    k.hostname = inv.kernel.hostname.clone();
    k.release = inv.kernel.release.clone();
    k.vfio_ap_stream = inv.kernel.vfio_ap_stream.clone();
    k.max_adapter_id = inv.max_adapter_id;
    k.max_domain_id = inv.max_domain_id;
    k.bus_features = inv.kernel.bus_features.clone();
    k.se_host = inv.kernel.se_guest.unwrap_or(false);
    k.apmask = inv.apmask;
    k.aqmask = inv.aqmask;
    let usage_seen = Mask::from_ids(inv.queues.keys().map(|q| q.apqi));
    k.cfg_usage = inv.config.usage_domains.unwrap_or(usage_seen);
    k.cfg_control = inv.config.control_domains.unwrap_or(k.cfg_usage);
    k.cfg_adapters =
        inv.config.adapters.unwrap_or_else(|| Mask::from_ids(inv.cards.values().filter(|c| c.config).map(|c| c.id)));
    for c in inv.cards.values() {
        k.cards.insert(
            c.id,
            SimCard {
                raw_type: c.raw_hwtype,
                hwtype: c.hwtype,
                functions: c.functions,
                online: c.online,
                config: c.config,
                chkstop: c.chkstop,
                depth: c.depth.unwrap_or(7),
            },
        );
    }
    for q in inv.queues.values() {
        let Some(card) = k.cards.get(&q.apqn.apid).cloned() else { continue };
        let s = SimQueue {
            functions: q.functions.filter(|f| *f != card.functions),
            online: q.online.filter(|o| *o != card.online),
            config: (q.config != card.config).then_some(q.config),
            chkstop: (q.chkstop != card.chkstop).then_some(q.chkstop),
            driver_override: q.driver_override.clone().unwrap_or_default(),
        };
        if s != SimQueue::default() {
            k.queues.insert(q.apqn, s);
        }
    }
    for m in inv.mdevs.values() {
        let group = m.iommu_group.unwrap_or(k.next_iommu_group);
        k.next_iommu_group = k.next_iommu_group.max(group + 1);
        k.available_instances = k.available_instances.saturating_sub(1);
        k.mdevs.insert(
            m.uuid.clone(),
            SimMdev {
                matrix: m.matrix,
                migratable: m.migratable.unwrap_or(false),
                in_use: m.in_use,
                migrating: false,
                iommu_group: group,
            },
        );
    }
    k
}
