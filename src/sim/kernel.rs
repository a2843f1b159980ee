//! The simulated kernel's state and the derived facts the AP bus and vfio_ap compute from it.

use std::collections::BTreeMap;

use crate::ap::inventory::{HOST_CARD_DRIVER, HOST_QUEUE_DRIVER, VFIO_AP_DRIVER};
use crate::ap::{ApFunctions, Apid, Apqn, Mask, Matrix, QueueStatus, types};

use super::Profile;

/// An errno value as the kernel returns it to the writer (`libc::E*`).
pub type Errno = i32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCard {
    pub raw_type: u8,
    pub hwtype: u8,
    /// Full 32-bit TAPQ functions as the card reports them.
    pub functions: ApFunctions,
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    pub depth: u32,
}

/// Per-queue state that differs from the card's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimQueue {
    pub functions: Option<ApFunctions>,
    pub online: Option<bool>,
    pub config: Option<bool>,
    pub chkstop: Option<bool>,
    /// `driver_override`; empty = unset.
    pub driver_override: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMdev {
    pub matrix: Matrix,
    pub migratable: bool,
    /// Attached to a running guest.
    pub in_use: bool,
    /// A migration of the device is in progress (`migratable` writes get EBUSY).
    pub migrating: bool,
    pub iommu_group: u32,
}

/// The whole simulated host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub profile: Profile,
    pub hostname: Option<String>,
    pub release: Option<String>,
    pub vfio_ap_stream: Option<String>,
    pub max_adapter_id: u8,
    pub max_domain_id: u8,
    pub bus_features: Vec<String>,
    pub se_host: bool,
    /// Host configuration (QCI).
    pub cfg_adapters: Mask,
    pub cfg_usage: Mask,
    pub cfg_control: Mask,
    pub apmask: Mask,
    pub aqmask: Mask,
    pub cards: BTreeMap<Apid, SimCard>,
    pub queues: BTreeMap<Apqn, SimQueue>,
    pub mdevs: BTreeMap<String, SimMdev>,
    pub available_instances: u32,
    pub next_iommu_group: u32,
    /// dmesg: every message the simulated kernel logged.
    pub log: Vec<String>,
}

pub const MAX_INSTANCES: u32 = 65536;
pub const DEFAULT_BUS_FEATURES: [&str; 5] = ["APSC", "APXA", "QACT", "RC8A", "APSB"];

impl Kernel {
    /// An empty host of a profile: no cards, masks all ones.
    pub fn new(profile: Profile) -> Kernel {
        Kernel {
            profile,
            hostname: None,
            release: None,
            vfio_ap_stream: None,
            max_adapter_id: 255,
            max_domain_id: 84,
            bus_features: DEFAULT_BUS_FEATURES.iter().map(|s| s.to_string()).collect(),
            se_host: false,
            cfg_adapters: Mask::empty(),
            cfg_usage: Mask::empty(),
            cfg_control: Mask::empty(),
            apmask: Mask::full(),
            aqmask: Mask::full(),
            cards: BTreeMap::new(),
            queues: BTreeMap::new(),
            mdevs: BTreeMap::new(),
            available_instances: MAX_INSTANCES,
            next_iommu_group: 0,
            log: Vec::new(),
        }
    }

    pub fn has_migratable_attr(&self) -> bool {
        self.profile == Profile::MigV1
    }

    pub fn has_driver_override(&self) -> bool {
        self.profile == Profile::Override
    }

    /// `/sys/devices/vfio_ap/matrix/features`.
    pub fn matrix_features(&self) -> Vec<&'static str> {
        let mut f = vec!["guest_matrix", "hotplug", "ap_config"];
        if self.profile != Profile::Base && !self.se_host {
            f.push("migratable");
        }
        f
    }

    /// Queue devices: every card × every configured usage domain up to the maximum.
    pub fn queue_exists(&self, q: Apqn) -> bool {
        self.cards.contains_key(&q.apid) && self.cfg_usage.get(q.apqi) && q.apqi <= self.max_domain_id
    }

    pub fn queue_ids(&self) -> Vec<Apqn> {
        self.cards
            .keys()
            .flat_map(|a| self.cfg_usage.iter().filter(|d| *d <= self.max_domain_id).map(move |d| Apqn::new(*a, d)))
            .collect()
    }

    fn queue(&self, q: Apqn) -> Option<&SimQueue> {
        self.queues.get(&q)
    }

    pub fn queue_functions(&self, q: Apqn) -> Option<ApFunctions> {
        let card = self.cards.get(&q.apid)?;
        Some(self.queue(q).and_then(|s| s.functions).unwrap_or(card.functions))
    }
    pub fn queue_config(&self, q: Apqn) -> bool {
        let card = self.cards.get(&q.apid).is_some_and(|c| c.config);
        self.queue(q).and_then(|s| s.config).unwrap_or(card)
    }
    pub fn queue_chkstop(&self, q: Apqn) -> bool {
        let card = self.cards.get(&q.apid).is_some_and(|c| c.chkstop);
        self.queue(q).and_then(|s| s.chkstop).unwrap_or(card)
    }
    pub fn queue_online(&self, q: Apqn) -> bool {
        let card = self.cards.get(&q.apid).is_some_and(|c| c.online);
        self.queue(q).and_then(|s| s.online).unwrap_or(card)
    }
    pub fn driver_override(&self, q: Apqn) -> &str {
        self.queue(q).map(|s| s.driver_override.as_str()).unwrap_or("")
    }
    pub fn any_override(&self) -> bool {
        self.queues.values().any(|s| !s.driver_override.is_empty())
    }

    /// TAPQ response code when TAPQ fails on the queue: 4 checkstopped, 3 deconfigured.
    pub fn tapq_rc(&self, q: Apqn) -> Option<u8> {
        if !self.queue_exists(q) {
            Some(1)
        } else if self.queue_chkstop(q) {
            Some(4)
        } else if !self.queue_config(q) {
            Some(3)
        } else {
            None
        }
    }

    /// Owned by the host's default drivers for the `apmask`/`ap_config`/assign checks.
    pub fn host_owned(&self, q: Apqn) -> bool {
        let ov = self.driver_override(q);
        if !ov.is_empty() { ov != VFIO_AP_DRIVER } else { self.apmask.get(q.apid) && self.aqmask.get(q.apqi) }
    }

    pub fn card_driver(&self, a: Apid) -> Option<&'static str> {
        self.cards.get(&a).filter(|c| types::is_bindable(c.hwtype)).map(|_| HOST_CARD_DRIVER)
    }

    /// The driver a queue device is bound to.
    pub fn queue_driver(&self, q: Apqn) -> Option<&'static str> {
        let card = self.cards.get(&q.apid)?;
        if !self.queue_exists(q) || !types::is_bindable(card.hwtype) {
            return None;
        }
        match self.driver_override(q) {
            "" => Some(if self.apmask.get(q.apid) && self.aqmask.get(q.apqi) {
                HOST_QUEUE_DRIVER
            } else {
                VFIO_AP_DRIVER
            }),
            VFIO_AP_DRIVER => Some(VFIO_AP_DRIVER),
            HOST_QUEUE_DRIVER => Some(HOST_QUEUE_DRIVER),
            _ => None,
        }
    }

    pub fn bound_to_vfio(&self, q: Apqn) -> bool {
        self.queue_driver(q) == Some(VFIO_AP_DRIVER)
    }

    /// `status` of a queue bound to vfio_ap.
    pub fn queue_status(&self, q: Apqn) -> QueueStatus {
        match self.mdevs.values().find(|m| m.matrix.contains(q)) {
            Some(m) if m.in_use => QueueStatus::InUse,
            Some(_) => QueueStatus::Assigned,
            None => QueueStatus::Unassigned,
        }
    }

    /// The guest matrix vfio_ap computes (`vfio_ap_mdev_filter_matrix`): matrix ∩ host
    /// configuration, then a whole adapter is dropped if any of its queues is not bound to vfio_ap.
    pub fn guest_matrix(&self, m: &Matrix) -> Matrix {
        let mut adapters = m.adapters.and(&self.cfg_adapters);
        let domains = m.domains.and(&self.cfg_usage);
        for a in adapters.ids() {
            if domains.iter().any(|d| !self.bound_to_vfio(Apqn::new(a, d))) {
                adapters.set(a, false);
            }
        }
        Matrix::new(adapters, domains, m.control.and(&self.cfg_control))
    }

    /// `ap_domain`: the host-owned usage domain with the most host-owned queues, lowest on a tie.
    pub fn ap_domain(&self) -> i32 {
        let mut best: Option<(usize, u8)> = None;
        for d in self.cfg_usage.iter().filter(|d| self.aqmask.get(*d)) {
            let n =
                self.cards.keys().filter(|a| self.queue_driver(Apqn::new(**a, d)) == Some(HOST_QUEUE_DRIVER)).count();
            if n > 0 && best.is_none_or(|(bn, _)| n > bn) {
                best = Some((n, d));
            }
        }
        best.map(|(_, d)| d as i32).unwrap_or(-1)
    }

    /// `bindings`: bound queue devices / all queue devices.
    pub fn bindings(&self) -> String {
        let all = self.queue_ids();
        let bound = all.iter().filter(|q| self.queue_driver(**q).is_some()).count();
        if bound == all.len() { format!("{bound}/{} (complete)", all.len()) } else { format!("{bound}/{}", all.len()) }
    }

    /// Kernel log helper.
    pub fn klog(&mut self, line: String) {
        tracing::debug!(target: "sim::dmesg", "{line}");
        self.log.push(line);
    }
}
