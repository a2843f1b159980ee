//! Between the host inventory (`ap::Inventory`) and `CryptoNode.status`: the agent reports the
//! former as the latter; the controller reads it back to judge nodes with `compat`.

use std::collections::BTreeMap;

use super::node::{CardStatus, CryptoNodeStatus, HostConfigStatus, KernelStatus, ObservedMdev, QueueGroupStatus};
use crate::ap::{
    ApFunctions, Apqn, Card, HostConfig, Inventory, KernelInfo, Mask, Matrix, Mdev, Queue, QueueStatus as QS,
};

fn ids(m: &Mask) -> Vec<u8> {
    m.ids()
}

fn mask(v: &[u8]) -> Mask {
    Mask::from_ids(v.iter().copied())
}

/// The status an agent reports for what it sees (the per-mdev `managed`/`synced`/`lastError` and
/// the conditions are the agent's to fill in).
pub fn status_from_inventory(inv: &Inventory) -> CryptoNodeStatus {
    CryptoNodeStatus {
        kernel: KernelStatus {
            profile: inv.profile().as_str().to_string(),
            release: inv.kernel.release.clone(),
            vfio_ap_stream: inv.kernel.vfio_ap_stream.clone(),
            bus_features: inv.kernel.bus_features.clone(),
            matrix_features: inv.kernel.matrix_features.clone(),
            secure_execution_guest: inv.kernel.se_guest,
            driver_override_capable: inv.kernel.driver_override_capable,
            vfio_ap_loaded: inv.kernel.vfio_ap_loaded,
        },
        max_adapter_id: inv.max_adapter_id,
        max_domain_id: inv.max_domain_id,
        apmask: inv.apmask.to_string(),
        aqmask: inv.aqmask.to_string(),
        host_config: HostConfigStatus {
            adapters: inv.config.adapters.as_ref().map(ids),
            usage_domains: inv.config.usage_domains.as_ref().map(ids),
            control_domains: inv.config.control_domains.as_ref().map(ids),
        },
        card_count: inv.cards.len() as u32,
        mdev_count: inv.mdevs.len() as u32,
        cards: inv
            .cards
            .values()
            .map(|c| CardStatus {
                id: c.id,
                type_name: c.type_name.clone(),
                hwtype: c.hwtype,
                raw_hwtype: c.raw_hwtype,
                functions: c.functions.to_string(),
                letters: c.functions.letters(),
                mode: c.functions.mode().to_string(),
                online: c.online,
                config: c.config,
                chkstop: c.chkstop,
                depth: c.depth,
                driver: c.driver.clone(),
            })
            .collect(),
        queue_groups: queue_groups(inv),
        mdevs: inv
            .mdevs
            .values()
            .map(|m| ObservedMdev {
                uuid: m.uuid.clone(),
                managed: false,
                adapters: ids(&m.matrix.adapters),
                domains: ids(&m.matrix.domains),
                control_domains: ids(&m.matrix.control),
                guest_adapters: ids(&m.guest_matrix.adapters),
                guest_domains: ids(&m.guest_matrix.domains),
                guest_control_domains: ids(&m.guest_matrix.control),
                migratable: m.migratable,
                in_use: m.in_use,
                iommu_group: m.iommu_group,
                synced: false,
                last_error: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// The queues grouped per adapter and equal attributes, in APQN order of each group's first queue.
fn queue_groups(inv: &Inventory) -> Vec<QueueGroupStatus> {
    let mut groups: Vec<QueueGroupStatus> = Vec::new();
    let mut index: BTreeMap<_, usize> = BTreeMap::new();
    for q in inv.queues.values() {
        let group = QueueGroupStatus {
            adapter: q.apqn.apid,
            domains: Vec::new(),
            driver: q.driver.clone(),
            functions: q.functions.map(|f| f.to_string()),
            online: q.online,
            config: q.config,
            chkstop: q.chkstop,
            status: q.status.map(|s| s.as_str().to_string()),
            driver_override: q.driver_override.clone(),
        };
        let key = (
            group.adapter,
            group.driver.clone(),
            group.functions.clone(),
            group.online,
            group.config,
            group.chkstop,
            group.status.clone(),
            group.driver_override.clone(),
        );
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(group);
            groups.len() - 1
        });
        groups[i].domains.push(q.apqn.apqi);
    }
    groups
}

/// The inventory a node's status describes. Unparseable entries are skipped (the agent wrote them
/// from a typed inventory, so they only fail if someone else edited the status).
pub fn inventory_from_status(s: &CryptoNodeStatus) -> Inventory {
    let cards: BTreeMap<u8, Card> = s
        .cards
        .iter()
        .map(|c| {
            (
                c.id,
                Card {
                    id: c.id,
                    type_name: c.type_name.clone(),
                    hwtype: c.hwtype,
                    raw_hwtype: c.raw_hwtype,
                    functions: ApFunctions::parse(&c.functions).unwrap_or_default(),
                    online: c.online,
                    config: c.config,
                    chkstop: c.chkstop,
                    depth: c.depth,
                    driver: c.driver.clone(),
                },
            )
        })
        .collect();
    let queues: BTreeMap<Apqn, Queue> = s
        .queue_groups
        .iter()
        .flat_map(|g| {
            g.domains.iter().map(move |&d| {
                let apqn = Apqn::new(g.adapter, d);
                let queue = Queue {
                    apqn,
                    driver: g.driver.clone(),
                    functions: g.functions.as_deref().and_then(ApFunctions::parse),
                    online: g.online,
                    config: g.config,
                    chkstop: g.chkstop,
                    status: g.status.as_deref().and_then(QS::parse),
                    driver_override: g.driver_override.clone(),
                };
                (apqn, queue)
            })
        })
        .collect();
    let mdevs = s
        .mdevs
        .iter()
        .map(|m| {
            (
                m.uuid.clone(),
                Mdev {
                    uuid: m.uuid.clone(),
                    matrix: Matrix::new(mask(&m.adapters), mask(&m.domains), mask(&m.control_domains)),
                    guest_matrix: Matrix::new(
                        mask(&m.guest_adapters),
                        mask(&m.guest_domains),
                        mask(&m.guest_control_domains),
                    ),
                    migratable: m.migratable,
                    in_use: m.in_use,
                    iommu_group: m.iommu_group,
                },
            )
        })
        .collect();
    Inventory {
        kernel: KernelInfo {
            release: s.kernel.release.clone(),
            vfio_ap_stream: s.kernel.vfio_ap_stream.clone(),
            hostname: None,
            bus_features: s.kernel.bus_features.clone(),
            matrix_features: s.kernel.matrix_features.clone(),
            se_guest: s.kernel.secure_execution_guest,
            driver_override_capable: s.kernel.driver_override_capable,
            vfio_ap_loaded: s.kernel.vfio_ap_loaded,
        },
        max_adapter_id: s.max_adapter_id,
        max_domain_id: s.max_domain_id,
        apmask: Mask::parse_absolute(&s.apmask).unwrap_or_default(),
        aqmask: Mask::parse_absolute(&s.aqmask).unwrap_or_default(),
        config: HostConfig {
            adapters: s.host_config.adapters.as_deref().map(mask),
            usage_domains: s.host_config.usage_domains.as_deref().map(mask),
            control_domains: s.host_config.control_domains.as_deref().map(mask),
        },
        cards,
        queues,
        mdevs,
    }
}
