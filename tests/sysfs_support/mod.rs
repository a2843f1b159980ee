//! Hand-built sysfs trees with exactly the files and links of kernel-ap.md §1–§5, for the
//! `sysfs_*` tests. Shared by several test crates, so not every item is used by each.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use cryptopass::ap::{Mask, Matrix};

pub const UUID_A: &str = "4b1d6b9a-2c0e-4b7a-9d55-0123456789ab";
pub const UUID_B: &str = "0f6f2e6c-92a1-4a8e-8d0e-9b0c2f1e3d4a";

pub fn file(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
}

pub fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

pub fn remove(root: &Path, rel: &str) {
    let p = root.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => panic!("{} does not exist", p.display()),
    }
}

#[derive(Clone)]
pub struct FCard {
    pub id: u8,
    pub raw: u8,
    /// Full 32-bit TAPQ functions (the card shows bits 0..15 only).
    pub functions: u32,
    pub domains: Vec<u8>,
}

#[derive(Clone)]
pub struct FMdev {
    pub uuid: &'static str,
    pub adapters: Vec<u8>,
    pub domains: Vec<u8>,
    pub control: Vec<u8>,
    pub migratable: Option<bool>,
    pub in_use: bool,
    pub iommu_group: u32,
}

/// A host; `write` lays it out like the kernel does.
#[derive(Clone)]
pub struct Fixture {
    pub max_adapter_id: u8,
    pub max_domain_id: u8,
    pub apmask: Mask,
    pub aqmask: Mask,
    /// `None` → `not supported`.
    pub adapters: Option<Mask>,
    pub usage: Option<Mask>,
    pub control: Option<Mask>,
    pub bus_features: &'static str,
    pub vfio_ap: bool,
    /// `None` → no `features` file in the matrix.
    pub matrix_features: Option<&'static str>,
    pub cards: Vec<FCard>,
    pub mdevs: Vec<FMdev>,
    pub driver_override: bool,
    pub se_guest: Option<bool>,
    /// Content of `snapshot.json` at the root.
    pub meta: Option<&'static str>,
}

impl Default for Fixture {
    /// Two CEX8 CCA cards 00 and 01 with domains 5 and 6; domain 6 given to vfio_ap by aqmask;
    /// a latest kernel without mdevs.
    fn default() -> Self {
        Fixture {
            max_adapter_id: 255,
            max_domain_id: 84,
            apmask: Mask::full(),
            aqmask: Mask::full().and_not(&Mask::from_ids([6])),
            adapters: Some(Mask::from_ids([0, 1])),
            usage: Some(Mask::from_ids(0..=15)),
            control: Some(Mask::from_ids(0..=15)),
            bus_features: "APSC APXA QACT RC8A APSB",
            vfio_ap: true,
            matrix_features: Some("guest_matrix hotplug ap_config migratable"),
            cards: vec![
                FCard { id: 0, raw: 14, functions: 0x9280_0000, domains: vec![5, 6] },
                FCard { id: 1, raw: 14, functions: 0x9280_0000, domains: vec![5, 6] },
            ],
            mdevs: vec![],
            driver_override: false,
            se_guest: None,
            meta: None,
        }
    }
}

impl Fixture {
    pub fn with_mdev(mut self, m: FMdev) -> Self {
        self.mdevs.push(m);
        self
    }

    /// An mdev on 00.0006 and 01.0006 with control domain 6.
    pub fn mdev_a(migratable: Option<bool>, in_use: bool) -> FMdev {
        FMdev {
            uuid: UUID_A,
            adapters: vec![0, 1],
            domains: vec![6],
            control: vec![6],
            migratable,
            in_use,
            iommu_group: 3,
        }
    }

    fn host_owned(&self, a: u8, d: u8) -> bool {
        self.apmask.get(a) && self.aqmask.get(d)
    }

    fn mdev_of(&self, a: u8, d: u8) -> Option<&FMdev> {
        self.mdevs.iter().find(|m| m.adapters.contains(&a) && m.domains.contains(&d))
    }

    fn queue_exists(&self, a: u8, d: u8) -> bool {
        self.cards.iter().any(|c| c.id == a && c.domains.contains(&d))
    }

    pub fn write(&self, root: &Path) {
        let hex = |m: Option<Mask>| m.map(|m| format!("{m}\n")).unwrap_or_else(|| "not supported\n".into());
        file(root, "bus/ap/apmask", &format!("{}\n", self.apmask));
        file(root, "bus/ap/aqmask", &format!("{}\n", self.aqmask));
        file(root, "bus/ap/ap_adapter_mask", &hex(self.adapters));
        file(root, "bus/ap/ap_usage_domain_mask", &hex(self.usage));
        file(root, "bus/ap/ap_control_domain_mask", &hex(self.control));
        file(root, "bus/ap/ap_max_adapter_id", &format!("{}\n", self.max_adapter_id));
        file(root, "bus/ap/ap_max_domain_id", &format!("{}\n", self.max_domain_id));
        file(root, "bus/ap/features", &format!("{}\n", self.bus_features));
        file(root, "bus/ap/ap_domain", "5\n");
        file(root, "bus/ap/uevent", "");
        for drv in ["cex4card", "cex4queue", "vfio_ap"] {
            file(root, &format!("bus/ap/drivers/{drv}/bind"), "");
            file(root, &format!("bus/ap/drivers/{drv}/unbind"), "");
            file(root, &format!("bus/ap/drivers/{drv}/uevent"), "");
        }
        file(root, "devices/ap/uevent", "");
        for c in &self.cards {
            self.write_card(root, c);
        }
        if self.vfio_ap {
            self.write_matrix(root);
        }
        if let Some(se) = self.se_guest {
            file(root, "firmware/uv/prot_virt_guest", if se { "1\n" } else { "0\n" });
        }
        if let Some(m) = self.meta {
            file(root, "snapshot.json", m);
        }
    }

    fn write_card(&self, root: &Path, c: &FCard) {
        let card = format!("card{:02x}", c.id);
        let dir = format!("devices/ap/{card}");
        file(root, &format!("{dir}/hwtype"), &format!("{}\n", c.raw.min(14)));
        file(root, &format!("{dir}/raw_hwtype"), &format!("{}\n", c.raw));
        file(root, &format!("{dir}/ap_functions"), &format!("0x{:08X}\n", c.functions & 0xFFFF_0000));
        file(root, &format!("{dir}/type"), &format!("CEX{}C\n", c.raw.min(14) - 6));
        for (name, v) in [("online", "1"), ("config", "1"), ("chkstop", "0"), ("depth", "7"), ("max_msg_size", "12288")]
        {
            file(root, &format!("{dir}/{name}"), &format!("{v}\n"));
        }
        for name in ["request_count", "requestq_count", "pendingq_count"] {
            file(root, &format!("{dir}/{name}"), "0\n");
        }
        file(root, &format!("{dir}/uevent"), "DEV_TYPE=0e\n");
        file(root, &format!("{dir}/modalias"), "ap:t0E\n");
        file(root, &format!("{dir}/power/runtime_status"), "unsupported\n");
        link(root, &format!("{dir}/subsystem"), "../../../bus/ap");
        link(root, &format!("{dir}/driver"), "../../../bus/ap/drivers/cex4card");
        link(root, &format!("bus/ap/devices/{card}"), &format!("../../../devices/ap/{card}"));
        link(root, &format!("bus/ap/drivers/cex4card/{card}"), &format!("../../../../devices/ap/{card}"));
        for d in &c.domains {
            self.write_queue(root, c, *d);
        }
    }

    fn write_queue(&self, root: &Path, c: &FCard, d: u8) {
        let (a, card) = (c.id, format!("card{:02x}", c.id));
        let q = format!("{a:02x}.{d:04x}");
        let dir = format!("devices/ap/{card}/{q}");
        let drv = if self.host_owned(a, d) { "cex4queue" } else { "vfio_ap" };
        file(root, &format!("{dir}/ap_functions"), &format!("0x{:08X}\n", c.functions));
        file(root, &format!("{dir}/config"), "1\n");
        file(root, &format!("{dir}/chkstop"), "0\n");
        for name in ["request_count", "requestq_count", "pendingq_count"] {
            file(root, &format!("{dir}/{name}"), "0\n");
        }
        file(root, &format!("{dir}/uevent"), "");
        link(root, &format!("{dir}/subsystem"), "../../../../bus/ap");
        link(root, &format!("{dir}/driver"), &format!("../../../../bus/ap/drivers/{drv}"));
        if drv == "cex4queue" {
            file(root, &format!("{dir}/online"), "1\n");
        } else {
            let status = match self.mdev_of(a, d) {
                Some(m) if m.in_use => "in use",
                Some(_) => "assigned",
                None => "unassigned",
            };
            file(root, &format!("{dir}/status"), &format!("{status}\n"));
        }
        if self.driver_override {
            file(root, &format!("{dir}/driver_override"), "\n");
        }
        link(root, &format!("bus/ap/devices/{q}"), &format!("../../../devices/ap/{card}/{q}"));
        link(root, &format!("bus/ap/drivers/{drv}/{q}"), &format!("../../../../devices/ap/{card}/{q}"));
    }

    fn write_matrix(&self, root: &Path) {
        let m = "devices/vfio_ap/matrix";
        let t = format!("{m}/mdev_supported_types/vfio_ap-passthrough");
        if let Some(f) = self.matrix_features {
            file(root, &format!("{m}/features"), &format!("{f}\n"));
        }
        file(root, &format!("{m}/uevent"), "");
        file(root, &format!("{m}/power/control"), "auto\n");
        link(root, &format!("{m}/subsystem"), "../../../bus/matrix");
        link(root, "class/mdev_bus/matrix", "../../devices/vfio_ap/matrix");
        link(root, "bus/matrix/devices/matrix", "../../../devices/vfio_ap/matrix");
        file(root, &format!("{t}/name"), "VFIO AP Passthrough Device\n");
        file(root, &format!("{t}/device_api"), "vfio-ap\n");
        file(root, &format!("{t}/available_instances"), &format!("{}\n", 65536 - self.mdevs.len()));
        file(root, &format!("{t}/create"), "");
        fs::create_dir_all(root.join(&t).join("devices")).unwrap();
        fs::create_dir_all(root.join("bus/mdev/devices")).unwrap();
        for md in &self.mdevs {
            self.write_mdev(root, md);
        }
    }

    fn write_mdev(&self, root: &Path, md: &FMdev) {
        let dir = format!("devices/vfio_ap/matrix/{}", md.uuid);
        let matrix = Matrix::new(
            Mask::from_ids(md.adapters.clone()),
            Mask::from_ids(md.domains.clone()),
            Mask::from_ids(md.control.clone()),
        );
        let mut guest = Matrix::new(
            matrix.adapters.and(&self.adapters.unwrap_or(Mask::full())),
            matrix.domains.and(&self.usage.unwrap_or(Mask::full())),
            matrix.control.and(&self.control.unwrap_or(Mask::full())),
        );
        for a in guest.adapters.ids() {
            if guest.domains.iter().any(|d| !self.queue_exists(a, d) || self.host_owned(a, d)) {
                guest.adapters.set(a, false);
            }
        }
        file(root, &format!("{dir}/matrix"), &matrix.listing());
        file(root, &format!("{dir}/guest_matrix"), &guest.listing());
        file(root, &format!("{dir}/control_domains"), &matrix.control_listing());
        file(root, &format!("{dir}/ap_config"), &matrix.ap_config_string());
        for name in [
            "assign_adapter",
            "unassign_adapter",
            "assign_domain",
            "unassign_domain",
            "assign_control_domain",
            "unassign_control_domain",
            "remove",
        ] {
            file(root, &format!("{dir}/{name}"), "");
        }
        if let Some(mig) = md.migratable {
            file(root, &format!("{dir}/migratable"), if mig { "1\n" } else { "0\n" });
        }
        file(root, &format!("{dir}/uevent"), "MDEV_TYPE=vfio_ap-passthrough\n");
        link(root, &format!("{dir}/iommu_group"), &format!("../../../../kernel/iommu_groups/{}", md.iommu_group));
        link(root, &format!("{dir}/mdev_type"), "../mdev_supported_types/vfio_ap-passthrough");
        link(root, &format!("{dir}/subsystem"), "../../../../bus/mdev");
        link(root, &format!("bus/mdev/devices/{}", md.uuid), &format!("../../../devices/vfio_ap/matrix/{}", md.uuid));
        link(
            root,
            &format!("devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/devices/{}", md.uuid),
            &format!("../../../{}", md.uuid),
        );
        fs::create_dir_all(root.join(format!("kernel/iommu_groups/{}/devices", md.iommu_group))).unwrap();
    }
}

/// Writes `f` into a fresh temporary directory.
pub fn tree(f: &Fixture) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    f.write(t.path());
    t
}
