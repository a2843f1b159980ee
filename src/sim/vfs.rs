//! The simulated kernel as a sysfs tree: the directories, attributes and links a real s390x host
//! shows under `/sys` (kernel-ap.md §1), their contents as the kernel prints them, and writes
//! dispatched to the store functions. Paths are relative to the sysfs root, `/`-separated.

use crate::ap::inventory::{HOST_CARD_DRIVER, HOST_QUEUE_DRIVER, MDEV_TYPE, VFIO_AP_DRIVER};
use crate::ap::{Apqn, ids, types};

use super::kernel::{Errno, Kernel};
use super::store::{Assign, BusMask};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A file with its permission bits (0444 read-only, 0200 write-only, 0644 read-write).
    File(u16),
    Link(String),
}

const RO: Node = Node::File(0o444);
const WO: Node = Node::File(0o200);
const RW: Node = Node::File(0o644);

const BUS_ATTRS_RO: [&str; 13] = [
    "ap_adapter_mask",
    "ap_control_domain_mask",
    "ap_domain",
    "ap_interrupts",
    "ap_max_adapter_id",
    "ap_max_domain_id",
    "ap_usage_domain_mask",
    "bindings",
    "config_time",
    "features",
    "poll_thread",
    "poll_timeout",
    "scans",
];
const CARD_ATTRS_RO: [&str; 10] = [
    "ap_functions",
    "chkstop",
    "depth",
    "hwtype",
    "max_msg_size",
    "pendingq_count",
    "raw_hwtype",
    "request_count",
    "requestq_count",
    "type",
];
const QUEUE_ATTRS_RO: [&str; 5] = ["ap_functions", "chkstop", "pendingq_count", "request_count", "requestq_count"];
const MDEV_ATTRS_WO: [&str; 7] = [
    "assign_adapter",
    "assign_control_domain",
    "assign_domain",
    "remove",
    "unassign_adapter",
    "unassign_control_domain",
    "unassign_domain",
];
const MDEV_ATTRS_RO: [&str; 3] = ["control_domains", "guest_matrix", "matrix"];
const DRIVERS: [&str; 3] = [HOST_CARD_DRIVER, HOST_QUEUE_DRIVER, VFIO_AP_DRIVER];
const TYPES_DIR: &str = "mdev_supported_types";

fn parse_queue_name(s: &str) -> Option<Apqn> {
    s.parse().ok()
}

fn bit(b: bool) -> String {
    if b { "1\n".into() } else { "0\n".into() }
}

fn entries(list: impl IntoIterator<Item = (String, Node)>) -> Vec<(String, Node)> {
    let mut v: Vec<(String, Node)> = list.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn named<'a>(names: impl IntoIterator<Item = &'a str>, node: Node) -> Vec<(String, Node)> {
    names.into_iter().map(|n| (n.to_string(), node.clone())).collect()
}

fn dir(name: &str) -> (String, Node) {
    (name.to_string(), Node::Dir)
}

fn link(name: impl Into<String>, target: String) -> (String, Node) {
    (name.into(), Node::Link(target))
}

fn segs(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

impl Kernel {
    fn card_of_dir(&self, name: &str) -> Option<u8> {
        ids::parse_card_name(name).filter(|a| self.cards.contains_key(a))
    }

    fn queue_of_dir(&self, card: u8, name: &str) -> Option<Apqn> {
        parse_queue_name(name).filter(|q| q.apid == card && self.queue_exists(*q))
    }

    /// Bound devices of a driver, as `bus/ap/drivers/<d>` lists them.
    fn driver_devices(&self, d: &str) -> Vec<(String, Node)> {
        let mut v = Vec::new();
        for a in self.cards.keys() {
            if d == HOST_CARD_DRIVER && self.card_driver(*a).is_some() {
                v.push(link(ids::card_name(*a), format!("../../../../devices/ap/{}", ids::card_name(*a))));
            }
        }
        for q in self.queue_ids() {
            if self.queue_driver(q) == Some(d) {
                v.push(link(q.to_string(), format!("../../../../devices/ap/{}/{q}", ids::card_name(q.apid))));
            }
        }
        v
    }

    /// A card directory's attributes and driver link (its queue directories aside).
    fn card_attrs(&self, a: u8) -> Vec<(String, Node)> {
        let mut v = named(CARD_ATTRS_RO, RO);
        v.extend(named(["config", "online"], RW));
        if self.card_driver(a).is_some() {
            v.push(link("driver", format!("../../../bus/ap/drivers/{HOST_CARD_DRIVER}")));
        }
        v
    }

    fn queues_of(&self, a: u8) -> impl Iterator<Item = Apqn> + '_ {
        self.cfg_usage.iter().map(move |d| Apqn::new(a, d)).filter(|q| self.queue_exists(*q))
    }

    /// A queue directory's entries.
    fn queue_attrs(&self, q: Apqn) -> Vec<(String, Node)> {
        let mut v = named(QUEUE_ATTRS_RO, RO);
        v.push(("config".into(), RW));
        let driver = self.queue_driver(q);
        if let Some(d) = driver {
            v.push(link("driver", format!("../../../../bus/ap/drivers/{d}")));
        }
        if driver == Some(HOST_QUEUE_DRIVER) {
            v.push(("online".into(), RW));
        }
        if driver == Some(VFIO_AP_DRIVER) {
            v.push(("status".into(), RO));
        }
        if self.has_driver_override() {
            v.push(("driver_override".into(), RW));
        }
        if self.se_host {
            v.extend(named(["se_associate", "se_bind"], RO));
        }
        v
    }

    /// What `path` is, if it exists. Lookups of single entries in the big directories (queues,
    /// bus links) are answered directly: FUSE looks up every path component of every open.
    pub fn node(&self, path: &str) -> Option<Node> {
        let s = segs(path);
        let find = |v: Vec<(String, Node)>, name: &str| v.into_iter().find(|(n, _)| n == name).map(|(_, n)| n);
        match s.as_slice() {
            [] => Some(Node::Dir),
            ["devices", "ap", c] => self.card_of_dir(c).map(|_| Node::Dir),
            ["devices", "ap", c, name] => {
                let a = self.card_of_dir(c)?;
                match parse_queue_name(name) {
                    Some(q) => self.queue_of_dir(a, name).filter(|x| *x == q).map(|_| Node::Dir),
                    None => find(self.card_attrs(a), name),
                }
            }
            ["devices", "ap", c, qn, name] => {
                let q = self.queue_of_dir(self.card_of_dir(c)?, qn)?;
                find(self.queue_attrs(q), name)
            }
            ["bus", "ap", "devices", name] => {
                if let Some(a) = ids::parse_card_name(name).filter(|a| self.cards.contains_key(a)) {
                    return Some(Node::Link(format!("../../../devices/ap/{}", ids::card_name(a))));
                }
                let q = parse_queue_name(name).filter(|q| self.queue_exists(*q))?;
                Some(Node::Link(format!("../../../devices/ap/{}/{q}", ids::card_name(q.apid))))
            }
            _ => {
                let (name, parent) = s.split_last()?;
                find(self.list(&parent.join("/"))?, name)
            }
        }
    }

    /// The children of a directory, sorted; `None` if `path` is not a directory.
    pub fn list(&self, path: &str) -> Option<Vec<(String, Node)>> {
        let s = segs(path);
        let v = match s.as_slice() {
            [] => {
                vec![
                    dir("bus"),
                    dir("class"),
                    dir("devices"),
                    dir("firmware"),
                    dir("kernel"),
                    ("snapshot.json".into(), RO),
                ]
            }
            ["bus"] => vec![dir("ap"), dir("matrix"), dir("mdev")],
            ["bus", "ap"] => {
                let mut v = named(BUS_ATTRS_RO, RO);
                v.extend(named(["apmask", "aqmask"], RW));
                v.extend([dir("devices"), dir("drivers")]);
                v
            }
            ["bus", "ap", "devices"] => {
                let mut v: Vec<_> = self
                    .cards
                    .keys()
                    .map(|a| link(ids::card_name(*a), format!("../../../devices/ap/{}", ids::card_name(*a))))
                    .collect();
                v.extend(
                    self.queue_ids()
                        .into_iter()
                        .map(|q| link(q.to_string(), format!("../../../devices/ap/{}/{q}", ids::card_name(q.apid)))),
                );
                v
            }
            ["bus", "ap", "drivers"] => DRIVERS.iter().map(|d| dir(d)).collect(),
            ["bus", "ap", "drivers", d] if DRIVERS.contains(d) => self.driver_devices(d),
            ["bus", "mdev"] => vec![dir("devices")],
            ["bus", "mdev", "devices"] => {
                self.mdevs.keys().map(|u| link(u.clone(), format!("../../../devices/vfio_ap/matrix/{u}"))).collect()
            }
            ["bus", "matrix"] => vec![dir("devices")],
            ["bus", "matrix", "devices"] => vec![link("matrix", "../../../devices/vfio_ap/matrix".into())],
            ["class"] => vec![dir("mdev_bus")],
            ["class", "mdev_bus"] => vec![link("matrix", "../../devices/vfio_ap/matrix".into())],
            ["devices"] => vec![dir("ap"), dir("vfio_ap")],
            ["devices", "ap"] => self.cards.keys().map(|a| dir(&ids::card_name(*a))).collect(),
            ["devices", "ap", c] => {
                let a = self.card_of_dir(c)?;
                let mut v = self.card_attrs(a);
                v.extend(self.queues_of(a).map(|q| dir(&q.to_string())));
                v
            }
            ["devices", "ap", c, qn] => {
                let a = self.card_of_dir(c)?;
                self.queue_attrs(self.queue_of_dir(a, qn)?)
            }
            ["devices", "vfio_ap"] => vec![dir("matrix")],
            ["devices", "vfio_ap", "matrix"] => {
                let mut v = vec![("features".to_string(), RO), dir(TYPES_DIR)];
                v.extend(self.mdevs.keys().map(|u| dir(u)));
                v
            }
            ["devices", "vfio_ap", "matrix", TYPES_DIR] => vec![dir(MDEV_TYPE)],
            ["devices", "vfio_ap", "matrix", TYPES_DIR, MDEV_TYPE] => {
                let mut v = named(["available_instances", "device_api", "name"], RO);
                v.extend([("create".to_string(), WO), dir("devices")]);
                v
            }
            ["devices", "vfio_ap", "matrix", TYPES_DIR, MDEV_TYPE, "devices"] => {
                self.mdevs.keys().map(|u| link(u.clone(), format!("../../../{u}"))).collect()
            }
            ["devices", "vfio_ap", "matrix", u] => {
                let m = self.mdevs.get(*u)?;
                let mut v = named(MDEV_ATTRS_WO, WO);
                v.extend(named(MDEV_ATTRS_RO, RO));
                v.push(("ap_config".into(), RW));
                if self.has_migratable_attr() {
                    v.push(("migratable".into(), RW));
                }
                v.push(link("mdev_type", format!("../{TYPES_DIR}/{MDEV_TYPE}")));
                v.push(link("iommu_group", format!("../../../../kernel/iommu_groups/{}", m.iommu_group)));
                v
            }
            ["firmware"] => vec![dir("uv")],
            ["firmware", "uv"] => vec![("prot_virt_guest".into(), RO)],
            ["kernel"] => vec![dir("iommu_groups")],
            ["kernel", "iommu_groups"] => self.mdevs.values().map(|m| dir(&m.iommu_group.to_string())).collect(),
            ["kernel", "iommu_groups", g] => {
                self.mdevs.values().any(|m| m.iommu_group.to_string() == *g).then(Vec::new)?
            }
            _ => return None,
        };
        Some(entries(v))
    }

    /// `snapshot.json` of a simulated host: what an agent would learn from `uname`.
    pub fn snapshot_json(&self) -> String {
        crate::ap::meta::SnapshotMeta {
            kernel_release: self.release.clone(),
            vfio_ap_stream: self.vfio_ap_stream.clone(),
            hostname: self.hostname.clone(),
            ..Default::default()
        }
        .to_json()
    }

    /// Reads an attribute as the kernel prints it. `EACCES` for write-only attributes (kernfs
    /// refuses to open them for reading), `EIO` where TAPQ fails.
    pub fn read(&self, path: &str) -> Result<String, Errno> {
        match self.node(path) {
            Some(Node::File(mode)) if mode & 0o444 == 0 => return Err(libc::EACCES),
            Some(Node::File(_)) => {}
            Some(Node::Dir) => return Err(libc::EISDIR),
            Some(Node::Link(_)) => return Err(libc::EINVAL),
            None => return Err(libc::ENOENT),
        }
        let s = segs(path);
        let v = match s.as_slice() {
            ["snapshot.json"] => return Ok(self.snapshot_json()),
            ["bus", "ap", attr] => match *attr {
                "apmask" => self.apmask.to_string(),
                "aqmask" => self.aqmask.to_string(),
                "ap_adapter_mask" => self.cfg_adapters.to_string(),
                "ap_usage_domain_mask" => self.cfg_usage.to_string(),
                "ap_control_domain_mask" => self.cfg_control.to_string(),
                "ap_max_adapter_id" => self.max_adapter_id.to_string(),
                "ap_max_domain_id" => self.max_domain_id.to_string(),
                "ap_domain" => self.ap_domain().to_string(),
                "features" => self.bus_features.join(" "),
                "bindings" => self.bindings(),
                "config_time" => "30".into(),
                "poll_thread" => "0".into(),
                "poll_timeout" => "250000".into(),
                "ap_interrupts" => "1".into(),
                "scans" => "1".into(),
                _ => return Err(libc::ENOENT),
            },
            ["devices", "ap", c, attr] => {
                let a = self.card_of_dir(c).ok_or(libc::ENOENT)?;
                let card = self.cards.get(&a).ok_or(libc::ENOENT)?;
                match *attr {
                    "hwtype" => card.hwtype.to_string(),
                    "raw_hwtype" => card.raw_type.to_string(),
                    "ap_functions" => card.functions.card_visible().to_string(),
                    "depth" => card.depth.to_string(),
                    "type" => types::zcrypt_name(card.hwtype, card.functions.type_suffix()),
                    "online" => return Ok(bit(card.online)),
                    "config" => return Ok(bit(card.config)),
                    "chkstop" => return Ok(bit(card.chkstop)),
                    "max_msg_size" => "12288".into(),
                    "request_count" | "requestq_count" | "pendingq_count" => "0".into(),
                    _ => return Err(libc::ENOENT),
                }
            }
            ["devices", "ap", _, qn, attr] => {
                let q: Apqn = parse_queue_name(qn).ok_or(libc::ENOENT)?;
                match *attr {
                    "ap_functions" => match self.tapq_rc(q) {
                        Some(_) => return Err(libc::EIO),
                        None => self.queue_functions(q).ok_or(libc::EIO)?.to_string(),
                    },
                    "online" => return Ok(bit(self.queue_online(q))),
                    "config" => return Ok(bit(self.queue_config(q))),
                    "chkstop" => return Ok(bit(self.queue_chkstop(q))),
                    "status" => self.queue_status(q).as_str().into(),
                    "driver_override" => self.driver_override(q).into(),
                    "request_count" | "requestq_count" | "pendingq_count" => "0".into(),
                    "se_bind" => match self.queue_functions(q).map(|f| f.se_state()).unwrap_or(0) {
                        0 | 1 => "bound".into(),
                        2 => "unbound".into(),
                        _ => "unusable".into(),
                    },
                    "se_associate" => match self.queue_functions(q).map(|f| f.se_state()).unwrap_or(0) {
                        0 => "associated".into(),
                        _ => "unassociated".into(),
                    },
                    _ => return Err(libc::ENOENT),
                }
            }
            ["devices", "vfio_ap", "matrix", "features"] => self.matrix_features().join(" "),
            ["devices", "vfio_ap", "matrix", TYPES_DIR, MDEV_TYPE, attr] => match *attr {
                "name" => "VFIO AP Passthrough Device".into(),
                "device_api" => "vfio-ap".into(),
                "available_instances" => self.available_instances.to_string(),
                _ => return Err(libc::ENOENT),
            },
            ["devices", "vfio_ap", "matrix", u, attr] => {
                let m = self.mdevs.get(*u).ok_or(libc::ENOENT)?;
                match *attr {
                    "matrix" => return Ok(m.matrix.listing()),
                    "guest_matrix" => return Ok(self.guest_matrix(&m.matrix).listing()),
                    "control_domains" => return Ok(m.matrix.control_listing()),
                    "ap_config" => return Ok(m.matrix.ap_config_string()),
                    "migratable" => return Ok(bit(m.migratable)),
                    _ => return Err(libc::ENOENT),
                }
            }
            ["firmware", "uv", "prot_virt_guest"] => return Ok(bit(self.se_host)),
            _ => return Err(libc::ENOENT),
        };
        Ok(format!("{v}\n"))
    }

    /// Writes an attribute with the kernel's semantics. `EACCES` for read-only attributes.
    pub fn write(&mut self, path: &str, data: &str) -> Result<(), Errno> {
        match self.node(path) {
            Some(Node::File(mode)) if mode & 0o222 == 0 => return Err(libc::EACCES),
            Some(Node::File(_)) => {}
            Some(Node::Dir) => return Err(libc::EISDIR),
            Some(Node::Link(_)) => return Err(libc::EINVAL),
            None => return Err(libc::ENOENT),
        }
        let s = segs(path);
        match s.as_slice() {
            ["bus", "ap", "apmask"] => self.store_bus_mask(BusMask::Ap, data),
            ["bus", "ap", "aqmask"] => self.store_bus_mask(BusMask::Aq, data),
            ["devices", "ap", c, "online"] => {
                let a = self.card_of_dir(c).ok_or(libc::ENOENT)?;
                self.store_online(a, None, data)
            }
            ["devices", "ap", c, "config"] => {
                let a = self.card_of_dir(c).ok_or(libc::ENOENT)?;
                let v = match data.trim_end_matches('\n') {
                    "0" => false,
                    "1" => true,
                    _ => return Err(libc::EINVAL),
                };
                self.cards.get_mut(&a).ok_or(libc::ENOENT)?.config = v;
                Ok(())
            }
            ["devices", "ap", _, qn, attr] => {
                let q: Apqn = parse_queue_name(qn).ok_or(libc::ENOENT)?;
                match *attr {
                    "online" => self.store_online(q.apid, Some(q), data),
                    "config" => {
                        let v = match data.trim_end_matches('\n') {
                            "0" => false,
                            "1" => true,
                            _ => return Err(libc::EINVAL),
                        };
                        self.queues.entry(q).or_default().config = Some(v);
                        Ok(())
                    }
                    "driver_override" => self.store_driver_override(q, data),
                    _ => Err(libc::EACCES),
                }
            }
            ["devices", "vfio_ap", "matrix", TYPES_DIR, MDEV_TYPE, "create"] => self.store_create(data).map(|_| ()),
            ["devices", "vfio_ap", "matrix", u, attr] => {
                let u = u.to_string();
                match *attr {
                    "assign_adapter" => self.store_assign(&u, Assign::Adapter, data),
                    "assign_domain" => self.store_assign(&u, Assign::Domain, data),
                    "assign_control_domain" => self.store_assign(&u, Assign::Control, data),
                    "unassign_adapter" => self.store_unassign(&u, Assign::Adapter, data),
                    "unassign_domain" => self.store_unassign(&u, Assign::Domain, data),
                    "unassign_control_domain" => self.store_unassign(&u, Assign::Control, data),
                    "ap_config" => self.store_ap_config(&u, data),
                    "migratable" => self.store_migratable(&u, data),
                    "remove" => self.store_remove(&u, data),
                    _ => Err(libc::EACCES),
                }
            }
            _ => Err(libc::EACCES),
        }
    }

    /// Resolves a path that may pass through simulated symlinks (e.g. `bus/mdev/devices/<uuid>/matrix`)
    /// to the canonical path of the node.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut out: Vec<String> = Vec::new();
        let parts: Vec<String> = segs(path).into_iter().map(String::from).collect();
        let mut hops = 0;
        let mut queue: std::collections::VecDeque<String> = parts.into();
        while let Some(p) = queue.pop_front() {
            match p.as_str() {
                "." => continue,
                ".." => {
                    out.pop();
                    continue;
                }
                _ => {}
            }
            out.push(p);
            if let Some(Node::Link(target)) = self.node(&out.join("/")) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                out.pop();
                for t in segs(&target).into_iter().rev() {
                    queue.push_front(t.to_string());
                }
            }
        }
        let joined = out.join("/");
        self.node(&joined).map(|_| joined)
    }
}
