//! The planned state of a node (architecture.md, "Placement before and after the VM runs"):
//! verdicts judge hosts as they will be once the agent made our mdev, not as they are now.

use crate::ap::inventory::VFIO_AP_DRIVER;
use crate::ap::{Inventory, KernelProfile, Mask, Matrix, Mdev, QueueStatus};
use crate::api::convert::inventory_from_status;
use crate::api::node::CryptoNodeStatus;

/// A node's inventory with our mdev as planned, and the profile its kernel showed before.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub name: String,
    /// The profile of the node as reported (an existing mdev of ours reveals it too).
    pub profile: KernelProfile,
    pub inventory: Inventory,
}

fn within(m: Mask, host: Option<Mask>) -> Mask {
    host.map_or(m, |h| m.and(&h))
}

/// The node's status inventory with the mdev `uuid` holding `matrix`: guest matrix = matrix ∩
/// the host's configuration, every configured queue of the matrix handed to vfio_ap (as the agent
/// will: `driver_override` where the host uses overrides, else the masks), `migratable` set where
/// the kernel has the per-mdev attribute (v1). Other mdevs stay as they are, except those named in
/// `yielding`: passthroughs that give way to this one on the node (see `conflict`).
pub fn planned_node(
    name: &str,
    status: &CryptoNodeStatus,
    uuid: &str,
    matrix: &Matrix,
    yielding: &[String],
) -> PlannedNode {
    let mut inv = inventory_from_status(status);
    for u in yielding {
        inv.mdevs.remove(u);
    }
    let profile = inv.profile();
    let guest = Matrix::new(
        within(matrix.adapters, inv.config.adapters),
        within(matrix.domains, inv.config.usage_domains),
        within(matrix.control, inv.config.control_domains),
    );
    let existing = inv.mdevs.get(uuid);
    let in_use = existing.is_some_and(|m| m.in_use);
    let iommu_group = existing.and_then(|m| m.iommu_group);
    for q in guest.apqns() {
        let owned_by_masks = inv.host_owned_by_masks(q);
        let Some(queue) = inv.queues.get_mut(&q) else { continue };
        match queue.driver_override.as_deref() {
            Some(d) if !d.trim().is_empty() => queue.driver_override = Some(VFIO_AP_DRIVER.to_string()),
            _ if owned_by_masks => inv.aqmask.set(q.apqi, false),
            _ => {}
        }
        queue.driver = Some(VFIO_AP_DRIVER.to_string());
        queue.online = None;
        queue.status = Some(if in_use { QueueStatus::InUse } else { QueueStatus::Assigned });
    }
    let migratable = (profile == KernelProfile::V1).then_some(true);
    let uuid = uuid.to_ascii_lowercase();
    inv.mdevs
        .insert(uuid.clone(), Mdev { uuid, matrix: *matrix, guest_matrix: guest, migratable, in_use, iommu_group });
    PlannedNode { name: name.to_string(), profile, inventory: inv }
}

/// The same planned node judged as if its kernel had `migratable` per mdev (`Some(true)`) or not
/// (`None`): how an `unknown` node is judged by both rule sets.
pub fn flavored(inv: &Inventory, uuid: &str, migratable: Option<bool>) -> Inventory {
    let mut inv = inv.clone();
    if let Some(m) = inv.mdevs.get_mut(uuid) {
        m.migratable = migratable;
    }
    inv
}
