//! Unit tests of the pure core: hand-made hosts reported as CryptoNode statuses, passthroughs,
//! VMIs and Leases, judged without any client.

mod conflicts;
mod lifecycle;
mod placement;
mod status;
mod sweep;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::ap::inventory::HOST_QUEUE_DRIVER;
use crate::ap::{ApFunctions, Apqn, Card, HostConfig, Inventory, KernelInfo, Mask, Matrix, Mdev, Queue};
use crate::api::convert::status_from_inventory;
use crate::api::node::{CryptoNodeStatus, ObservedMdev};
use crate::api::passthrough::{AllNodes, Placement as PlacementSpec, Standby};
use crate::api::{CryptoNode, CryptoNodeSpec, CryptoPassthrough, CryptoPassthroughSpec, DesiredMdev};

use super::inputs::{Cluster, NodeView, SweepProtection, VmiView};
use super::plan::{Outcome, plan};

pub const UUID: &str = "4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
/// `S--D--N-F-`: a CCA coprocessor.
pub const CCA: u32 = 0x9280_0000;
/// `----A-N-F-`: an accelerator.
pub const ACCEL: u32 = 0x0A80_0000;

pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kernel {
    V1,
    Latest,
    Unknown,
    CannotMigrate,
}

/// A host: cards (id, raw type, functions) each with queues for `domains`, all bound to the host
/// driver with the masks all ones (as a fresh host is), and the kernel profile made visible by an
/// unrelated empty mdev where the profile needs one.
pub struct Host {
    kernel: Kernel,
    cards: Vec<(u8, u8, u32)>,
    domains: Vec<u8>,
}

pub fn host(kernel: Kernel) -> Host {
    Host { kernel, cards: Vec::new(), domains: vec![5, 6] }
}

impl Host {
    pub fn card(mut self, id: u8, raw: u8, functions: u32) -> Self {
        self.cards.push((id, raw, functions));
        self
    }
    pub fn domains(mut self, d: &[u8]) -> Self {
        self.domains = d.to_vec();
        self
    }
    pub fn inventory(&self) -> Inventory {
        let mut features = vec!["guest_matrix".to_string(), "hotplug".into(), "ap_config".into()];
        if self.kernel != Kernel::CannotMigrate {
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
            apmask: Mask::full(),
            aqmask: Mask::full(),
            config: HostConfig {
                adapters: Some(Mask::from_ids(self.cards.iter().map(|c| c.0))),
                usage_domains: Some(Mask::from_ids(self.domains.iter().copied())),
                control_domains: Some(Mask::from_ids(self.domains.iter().copied())),
            },
            ..Default::default()
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
                inv.queues.insert(
                    apqn,
                    Queue {
                        apqn,
                        driver: Some(HOST_QUEUE_DRIVER.into()),
                        functions: Some(functions),
                        online: Some(true),
                        config: true,
                        chkstop: false,
                        status: None,
                        driver_override: None,
                    },
                );
            }
        }
        let marker = match self.kernel {
            Kernel::V1 => Some(Some(false)),
            Kernel::Latest => Some(None),
            Kernel::Unknown | Kernel::CannotMigrate => None,
        };
        if let Some(migratable) = marker {
            let uuid = "00000000-0000-4000-8000-00000000ffff".to_string();
            let m = Matrix::default();
            inv.mdevs.insert(
                uuid.clone(),
                Mdev { uuid, matrix: m, guest_matrix: m, migratable, in_use: false, iommu_group: None },
            );
        }
        inv
    }
    pub fn status(&self) -> CryptoNodeStatus {
        status_from_inventory(&self.inventory())
    }
}

/// The usual good host: two CEX8 CCA cards 1 and 2, domains 5 and 6, v1 kernel.
pub fn cex8() -> Host {
    host(Kernel::V1).card(1, 14, CCA).card(2, 14, CCA)
}

pub fn meta(ns: &str, name: &str, uid: &str, created_s: i64) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        generation: Some(1),
        creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000 + created_s).unwrap())),
        ..Default::default()
    }
}

/// A passthrough of adapters 1, 2 × domain 5 for VM `vm`, standby 1, uuid [`UUID`].
pub fn passthrough(name: &str) -> CryptoPassthrough {
    let mut pt = CryptoPassthrough::new(
        name,
        CryptoPassthroughSpec {
            uuid: Some(UUID.into()),
            adapters: vec![1, 2],
            domains: vec![5],
            control_domains: vec![5],
            vm_name: "vm".into(),
            placement: PlacementSpec::default(),
            migration: Default::default(),
        },
    );
    pt.metadata = meta("ns", name, &format!("uid-{name}"), 0);
    pt
}

pub fn all_standby(mut pt: CryptoPassthrough) -> CryptoPassthrough {
    pt.spec.placement.standby = Standby::All(AllNodes::All);
    pt
}

#[derive(Clone)]
pub struct World {
    pub cluster: Cluster,
}

impl World {
    pub fn new() -> World {
        World {
            cluster: Cluster {
                now: now(),
                nodes: BTreeMap::new(),
                passthroughs: Vec::new(),
                vmis: BTreeMap::new(),
                migrations: BTreeMap::new(),
                default_eviction_strategy: None,
                sweep: SweepProtection::Protected { reason: "ExternalResourceProvider", message: String::new() },
            },
        }
    }

    /// A node with a fresh agent (renewed 5 s ago) reporting `status`.
    pub fn node(mut self, name: &str, status: CryptoNodeStatus) -> World {
        let mut cnode = CryptoNode::new(name, CryptoNodeSpec::default());
        cnode.status = Some(status);
        let view = NodeView {
            name: name.into(),
            labels: BTreeMap::from([("kubernetes.io/arch".into(), "s390x".into())]),
            lease_renewed: Some(now() - SignedDuration::from_secs(5)),
            cnode: Some(Arc::new(cnode)),
        };
        self.cluster.nodes.insert(name.into(), view);
        self
    }

    pub fn renewed_ago(mut self, node: &str, secs: i64) -> World {
        if let Some(v) = self.cluster.nodes.get_mut(node) {
            v.lease_renewed = Some(now() - SignedDuration::from_secs(secs));
        }
        self
    }

    pub fn label(mut self, node: &str, k: &str, v: &str) -> World {
        if let Some(n) = self.cluster.nodes.get_mut(node) {
            n.labels.insert(k.into(), v.into());
        }
        self
    }

    /// Edits the CryptoNode of `node`.
    pub fn cnode(mut self, node: &str, f: impl FnOnce(&mut CryptoNode)) -> World {
        if let Some(v) = self.cluster.nodes.get_mut(node)
            && let Some(c) = v.cnode.as_mut()
        {
            f(Arc::make_mut(c));
        }
        self
    }

    /// Our entry on `node` (as if written by a previous reconcile) for `pt`.
    pub fn entry(self, node: &str, pt: &CryptoPassthrough) -> World {
        let uuid = pt.effective_uuid().unwrap_or_default();
        let e = super::placement::entry(pt, &uuid, super::placement::Role::Standby, super::judge::Class::Equivalent);
        self.cnode(node, |c| c.spec.mdevs.push(e))
    }

    /// Our mdev on `node`, as the agent reports it.
    pub fn mdev(self, node: &str, pt: &CryptoPassthrough, synced: bool) -> World {
        let uuid = pt.effective_uuid().unwrap_or_default();
        let e: DesiredMdev =
            super::placement::entry(pt, &uuid, super::placement::Role::Standby, super::judge::Class::Equivalent);
        self.cnode(node, |c| {
            if let Some(s) = c.status.as_mut() {
                let v1 = s.kernel.profile == "v1" || s.kernel.profile == "unknown";
                s.mdevs.push(ObservedMdev {
                    uuid: uuid.clone(),
                    managed: true,
                    adapters: e.adapters.clone(),
                    domains: e.domains.clone(),
                    control_domains: e.control_domains.clone(),
                    guest_adapters: e.adapters.clone(),
                    guest_domains: e.domains.clone(),
                    guest_control_domains: e.control_domains.clone(),
                    migratable: v1.then_some(true),
                    in_use: false,
                    iommu_group: Some(3),
                    synced,
                    last_error: None,
                });
            }
        })
    }

    /// Our entry and our synced mdev on each node.
    pub fn prepared(mut self, nodes: &[&str], pt: &CryptoPassthrough) -> World {
        for n in nodes {
            self = self.entry(n, pt).mdev(n, pt, true);
        }
        self
    }

    pub fn running_on(mut self, ns: &str, vm: &str, node: &str) -> World {
        self.cluster.vmis.insert(
            (ns.into(), vm.into()),
            VmiView { phase: Some("Running".into()), node_name: Some(node.into()), ..Default::default() },
        );
        self
    }

    pub fn with(mut self, pt: &CryptoPassthrough) -> World {
        self.cluster.passthroughs.push(Arc::new(pt.clone()));
        self
    }

    /// Plans `pt` (added to the cluster's passthroughs when missing).
    pub fn plan(&self, pt: &CryptoPassthrough) -> Outcome {
        let mut c = self.cluster.clone();
        if !c.passthroughs.iter().any(|p| p.metadata.uid == pt.metadata.uid) {
            c.passthroughs.push(Arc::new(pt.clone()));
        }
        plan(pt, &c).expect("a passthrough with a uid plans")
    }
}

impl Outcome {
    pub fn node(&self, name: &str) -> &crate::api::passthrough::NodeVerdict {
        self.status
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{name} listed in {:#?}", self.status.nodes))
    }
    pub fn desired_nodes(&self) -> Vec<&str> {
        self.placement.desired.keys().map(String::as_str).collect()
    }
    pub fn labeled(&self) -> Vec<&str> {
        self.placement.labeled.iter().map(String::as_str).collect()
    }
    pub fn condition(&self, t: &str) -> &crate::api::Condition {
        crate::api::condition::find(&self.status.conditions, t).unwrap_or_else(|| panic!("condition {t}"))
    }
    pub fn codes(&self, node: &str) -> Vec<&str> {
        self.node(node).reasons.iter().map(|r| r.code.as_str()).collect()
    }
}
