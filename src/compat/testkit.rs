//! A small builder of hand-made hosts for the verdict tests.

use std::collections::BTreeMap;

use crate::ap::inventory::{HOST_QUEUE_DRIVER, Mdev, VFIO_AP_DRIVER};
use crate::ap::{ApFunctions, Apqn, Card, HostConfig, Inventory, KernelInfo, KernelProfile, Mask, Matrix, Queue};

pub const UUID: &str = "4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
pub const OTHER: &str = "00000000-0000-4000-8000-0000000000aa";
/// A CCA coprocessor: `S--D--N-F-`.
pub const CCA: u32 = 0x9280_0000;
/// An accelerator: `----A-N-F-`.
pub const ACCEL: u32 = 0x0A80_0000;
pub const CEX7: u8 = 13;
pub const CEX8: u8 = 14;

/// A host whose cards all carry queues for `domains`, bound to vfio_ap and assigned to the mdev
/// `UUID` (matrix = guest matrix = cards × domains, control domains = domains).
pub struct Host {
    profile: KernelProfile,
    cards: Vec<(u8, u8, u32)>,
    domains: Vec<u8>,
}

impl Host {
    pub fn v1() -> Self {
        Host { profile: KernelProfile::V1, cards: Vec::new(), domains: vec![5] }
    }
    pub fn latest() -> Self {
        Host { profile: KernelProfile::Latest, cards: Vec::new(), domains: vec![5] }
    }
    pub fn cannot_migrate() -> Self {
        Host { profile: KernelProfile::CannotMigrate, cards: Vec::new(), domains: vec![5] }
    }
    /// A card: id, raw type, full 32-bit functions (the card shows the upper half, the queues all).
    pub fn card(mut self, id: u8, raw: u8, functions: u32) -> Self {
        self.cards.push((id, raw, functions));
        self
    }
    pub fn domains(mut self, d: &[u8]) -> Self {
        self.domains = d.to_vec();
        self
    }

    pub fn build(self) -> Inventory {
        let mut features = vec!["guest_matrix".to_string(), "hotplug".into(), "ap_config".into()];
        if self.profile != KernelProfile::CannotMigrate {
            features.push("migratable".into());
        }
        let mut inv = Inventory {
            kernel: KernelInfo {
                release: Some("6.20.0".into()),
                matrix_features: Some(features),
                se_guest: Some(false),
                vfio_ap_loaded: true,
                ..Default::default()
            },
            max_adapter_id: 255,
            max_domain_id: 84,
            apmask: Mask::empty(),
            aqmask: Mask::empty(),
            config: HostConfig {
                adapters: Some(Mask::from_ids(self.cards.iter().map(|c| c.0))),
                usage_domains: Some(Mask::from_ids(self.domains.iter().copied())),
                control_domains: Some(Mask::from_ids(self.domains.iter().copied())),
            },
            cards: BTreeMap::new(),
            queues: BTreeMap::new(),
            mdevs: BTreeMap::new(),
        };
        for &(id, raw, f) in &self.cards {
            let functions = ApFunctions(f);
            inv.cards.insert(
                id,
                Card {
                    id,
                    type_name: format!("CEX{}C", raw.min(14).saturating_sub(6)),
                    hwtype: raw.min(14),
                    raw_hwtype: raw,
                    functions: functions.card_visible(),
                    online: true,
                    config: true,
                    chkstop: false,
                    depth: Some(8),
                    driver: Some("cex4card".into()),
                },
            );
            for &d in &self.domains {
                let apqn = Apqn::new(id, d);
                inv.queues.insert(apqn, vfio_queue(apqn, functions));
            }
        }
        let adapters = Mask::from_ids(self.cards.iter().map(|c| c.0));
        let domains = Mask::from_ids(self.domains.iter().copied());
        let matrix = Matrix::new(adapters, domains, domains);
        if !self.cards.is_empty() {
            let migratable = (self.profile == KernelProfile::V1).then_some(true);
            inv.mdevs.insert(UUID.into(), mdev(UUID, matrix, migratable));
        }
        inv
    }
}

pub fn vfio_queue(apqn: Apqn, functions: ApFunctions) -> Queue {
    Queue {
        apqn,
        driver: Some(VFIO_AP_DRIVER.into()),
        functions: Some(functions),
        online: None,
        config: true,
        chkstop: false,
        status: Some(crate::ap::QueueStatus::Assigned),
        driver_override: None,
    }
}

pub fn mdev(uuid: &str, matrix: Matrix, migratable: Option<bool>) -> Mdev {
    Mdev { uuid: uuid.into(), matrix, guest_matrix: matrix, migratable, in_use: false, iommu_group: Some(1) }
}

/// Hands a queue to the host driver (masks say so too).
pub fn give_to_host(inv: &mut Inventory, q: Apqn) {
    inv.apmask.set(q.apid, true);
    inv.aqmask.set(q.apqi, true);
    if let Some(x) = inv.queues.get_mut(&q) {
        x.driver = Some(HOST_QUEUE_DRIVER.into());
        x.status = None;
        x.online = Some(true);
    }
}

pub fn our_mdev(inv: &mut Inventory) -> &mut Mdev {
    inv.mdevs.get_mut(UUID).expect("test host has the mdev")
}

pub fn queue(inv: &mut Inventory, a: u8, d: u8) -> &mut Queue {
    inv.queues.get_mut(&Apqn::new(a, d)).expect("test host has the queue")
}

pub fn q(a: u8, d: u8) -> Apqn {
    Apqn::new(a, d)
}
