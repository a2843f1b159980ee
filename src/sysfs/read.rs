//! The inventory reader: `bus/ap`, the card and queue devices, the vfio_ap matrix and its mdevs,
//! and what the kernel says of itself, under a root that plays `/sys` (kernel-ap.md §1–§5).

use std::collections::BTreeMap;
use std::path::Path;

use super::attr::{self, read, read_opt};
use super::error::Error;
use super::{mdev, meta};
use crate::ap::ids::parse_card_name;
use crate::ap::{Apid, Apqn, Card, HostConfig, Inventory, KernelInfo, Queue};

/// Reads the AP inventory of the host whose sysfs is at `root`.
pub fn read_inventory(root: &Path) -> Result<Inventory, Error> {
    let bus = root.join("bus/ap");
    if !bus.is_dir() {
        return Err(Error::Parse {
            path: bus,
            message: "expected the AP bus directory: is this the sysfs root of an s390x host with the AP bus?".into(),
        });
    }
    let max_id = "a decimal number 0..255";
    let config = HostConfig {
        adapters: read(&bus.join("ap_adapter_mask"), attr::parse_config_mask)?,
        usage_domains: read(&bus.join("ap_usage_domain_mask"), attr::parse_config_mask)?,
        control_domains: read(&bus.join("ap_control_domain_mask"), attr::parse_config_mask)?,
    };
    let mut inv = Inventory {
        max_adapter_id: read(&bus.join("ap_max_adapter_id"), |p, v| attr::parse_decimal(p, v, max_id))?,
        max_domain_id: read(&bus.join("ap_max_domain_id"), |p, v| attr::parse_decimal(p, v, max_id))?,
        apmask: read(&bus.join("apmask"), attr::parse_mask)?,
        aqmask: read(&bus.join("aqmask"), attr::parse_mask)?,
        config,
        ..Default::default()
    };
    let bus_features = read(&bus.join("features"), attr::parse_features)?;

    let devices = root.join("devices/ap");
    for (name, dir) in attr::subdirs(&devices)? {
        let Some(id) = card_id(&name) else { continue };
        inv.cards.insert(id, read_card(id, &dir)?);
        for (qname, qdir) in attr::subdirs(&dir)? {
            if !looks_like_apqn(&qname) {
                continue;
            }
            let apqn: Apqn = qname
                .parse()
                .map_err(|_| Error::parse(&qdir, "a queue directory XX.YYYY with a domain ≤ 0xff", &qname))?;
            if apqn.apid != id {
                return Err(Error::parse(&qdir, &format!("a queue of card {id:02x}"), &qname));
            }
            inv.queues.insert(apqn, read_queue(apqn, &qdir)?);
        }
    }

    let matrix = mdev::read_matrix(root, &inv.queues, &inv.config)?;
    let id = meta::host_identity(root)?;
    inv.kernel = KernelInfo {
        release: id.kernel_release,
        vfio_ap_stream: id.vfio_ap_stream,
        hostname: id.hostname,
        bus_features,
        matrix_features: matrix.features,
        se_guest: read_opt(&root.join("firmware/uv/prot_virt_guest"), attr::parse_bool)?,
        driver_override_capable: inv.queues.values().any(|q| q.driver_override.is_some()),
        vfio_ap_loaded: matrix.loaded,
    };
    inv.mdevs = matrix.mdevs;
    Ok(inv)
}

/// `cardXX` with two lowercase hex digits.
fn card_id(name: &str) -> Option<Apid> {
    let hex = name.strip_prefix("card")?;
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    parse_card_name(name)
}

/// `XX.YYYY` in lowercase hex (anything else in a card directory is not a queue).
fn looks_like_apqn(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 7
        && b[2] == b'.'
        && b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

fn read_card(id: Apid, dir: &Path) -> Result<Card, Error> {
    let ty = "a decimal AP type 0..255";
    let driver = attr::read_link_name(&dir.join("driver"))?;
    // `type` and `online` belong to the zcrypt card driver: a card without one lacks them.
    let (type_name, online) = if driver.is_some() {
        (attr::read_value(&dir.join("type"))?, read(&dir.join("online"), attr::parse_bool)?)
    } else {
        (
            attr::read_optional(&dir.join("type"))?.unwrap_or_default(),
            read_opt(&dir.join("online"), attr::parse_bool)?.unwrap_or(false),
        )
    };
    Ok(Card {
        id,
        type_name,
        hwtype: read(&dir.join("hwtype"), |p, v| attr::parse_decimal(p, v, ty))?,
        raw_hwtype: read(&dir.join("raw_hwtype"), |p, v| attr::parse_decimal(p, v, ty))?,
        functions: read(&dir.join("ap_functions"), attr::parse_functions)?,
        online,
        config: read(&dir.join("config"), attr::parse_bool)?,
        chkstop: read(&dir.join("chkstop"), attr::parse_bool)?,
        depth: read_opt(&dir.join("depth"), |p, v| attr::parse_decimal(p, v, "a decimal queue depth"))?,
        driver,
    })
}

fn read_queue(apqn: Apqn, dir: &Path) -> Result<Queue, Error> {
    let functions_path = dir.join("ap_functions");
    // TAPQ failure reads as EIO; snapshots leave such files out: both mean "unknown".
    let functions = match attr::read_optional(&functions_path) {
        Ok(Some(v)) => Some(attr::parse_functions(&functions_path, &v)?),
        Ok(None) => None,
        Err(e) if e.errno() == Some(libc::EIO) => None,
        Err(e) => return Err(e),
    };
    Ok(Queue {
        apqn,
        driver: attr::read_link_name(&dir.join("driver"))?,
        functions,
        online: read_opt(&dir.join("online"), attr::parse_bool)?,
        config: read(&dir.join("config"), attr::parse_bool)?,
        chkstop: read(&dir.join("chkstop"), attr::parse_bool)?,
        status: read_opt(&dir.join("status"), attr::parse_status)?,
        driver_override: attr::read_optional(&dir.join("driver_override"))?,
    })
}

/// Queues by APQN, as the mdev reader needs them.
pub type Queues = BTreeMap<Apqn, Queue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_device_names_count() {
        assert_eq!(card_id("card0a"), Some(10));
        assert_eq!(card_id("card0A"), None);
        assert_eq!(card_id("cards"), None);
        assert!(looks_like_apqn("0a.001f"));
        assert!(!looks_like_apqn("0A.001f"));
        assert!(!looks_like_apqn("power"));
        assert!(!looks_like_apqn("0a.01f"));
    }
}
