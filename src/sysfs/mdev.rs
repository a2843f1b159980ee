//! The vfio_ap matrix device and its mdevs (kernel-ap.md §5).

use std::collections::BTreeMap;
use std::path::Path;

use super::attr::{self, read, read_opt};
use super::error::Error;
use super::read::Queues;
use crate::ap::{HostConfig, Mask, Matrix, Mdev, QueueStatus};

/// What `devices/vfio_ap/matrix` holds.
#[derive(Debug, Default)]
pub struct MatrixInfo {
    /// `devices/vfio_ap/matrix` exists.
    pub loaded: bool,
    /// Its `features`, `None` when absent (old kernel).
    pub features: Option<Vec<String>>,
    pub mdevs: BTreeMap<String, Mdev>,
}

const LISTING: &str = "lines XX.YYYY, XX. or .YYYY";

/// Reads the matrix device and every mdev below it (subdirectories named by a UUID).
pub fn read_matrix(root: &Path, queues: &Queues, config: &HostConfig) -> Result<MatrixInfo, Error> {
    let dir = root.join("devices/vfio_ap/matrix");
    if !attr::exists(&dir) {
        return Ok(MatrixInfo::default());
    }
    let features = read_opt(&dir.join("features"), attr::parse_features)?;
    let mut mdevs = BTreeMap::new();
    for (name, mdir) in attr::subdirs(&dir)? {
        if is_uuid(&name) {
            let m = read_mdev(&name, &mdir, queues, config, features.as_deref())?;
            mdevs.insert(name, m);
        }
    }
    Ok(MatrixInfo { loaded: true, features, mdevs })
}

/// A device name of 36 characters in the hyphenated 8-4-4-4-12 form.
pub fn is_uuid(name: &str) -> bool {
    name.len() == 36 && uuid::Uuid::try_parse(name).is_ok()
}

fn read_mdev(
    uuid: &str,
    dir: &Path,
    queues: &Queues,
    config: &HostConfig,
    features: Option<&[String]>,
) -> Result<Mdev, Error> {
    let listing = |p: &Path, v: &str| Matrix::parse_listing(v).map_err(|_| Error::parse(p, LISTING, v));
    let mut matrix = read(&dir.join("matrix"), listing)?;
    matrix.control = read(&dir.join("control_domains"), |p, v| {
        Matrix::parse_control_listing(v).map_err(|_| Error::parse(p, "lines of 4 hex digits", v))
    })?;
    let guest_path = dir.join("guest_matrix");
    let mut guest = match read_opt(&guest_path, listing)? {
        Some(g) => g,
        None if features.is_some_and(|f| f.iter().any(|x| x == "guest_matrix")) => {
            return Err(Error::io(guest_path, std::io::ErrorKind::NotFound.into()));
        }
        // Kernels before `guest_matrix` existed: apply the kernel's filter ourselves.
        None => filtered_guest(&matrix, queues, config),
    };
    guest.control = matrix.control.and(&config.control_domains.unwrap_or(Mask::full()));
    let iommu_path = dir.join("iommu_group");
    let iommu_group = match attr::read_link_name(&iommu_path)? {
        Some(n) => Some(n.parse::<u32>().map_err(|_| Error::parse(&iommu_path, "a link to iommu_groups/<N>", &n))?),
        None => None,
    };
    let in_use = queues.values().any(|q| matrix.contains(q.apqn) && q.status == Some(QueueStatus::InUse));
    Ok(Mdev {
        uuid: uuid.to_string(),
        matrix,
        guest_matrix: guest,
        migratable: read_opt(&dir.join("migratable"), attr::parse_bool)?,
        in_use,
        iommu_group,
    })
}

/// The guest matrix by the kernel's rule: matrix ∩ host configuration, then every adapter with a
/// queue that is not bound to vfio_ap (or absent) is dropped whole.
pub fn filtered_guest(matrix: &Matrix, queues: &Queues, config: &HostConfig) -> Matrix {
    let mut g = Matrix {
        adapters: matrix.adapters.and(&config.adapters.unwrap_or(Mask::full())),
        domains: matrix.domains.and(&config.usage_domains.unwrap_or(Mask::full())),
        control: Mask::empty(),
    };
    for a in g.adapters.ids() {
        let all_bound =
            g.domains.iter().all(|d| queues.get(&crate::ap::Apqn::new(a, d)).is_some_and(|q| q.bound_to_vfio()));
        if !all_bound {
            g.adapters.set(a, false);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ap::inventory::VFIO_AP_DRIVER;
    use crate::ap::{Apqn, Queue};

    fn queue(a: u8, d: u8, driver: &str) -> (Apqn, Queue) {
        let apqn = Apqn::new(a, d);
        let q = Queue {
            apqn,
            driver: Some(driver.into()),
            functions: None,
            online: None,
            config: true,
            chkstop: false,
            status: None,
            driver_override: None,
        };
        (apqn, q)
    }

    #[test]
    fn uuid_names_are_hyphenated() {
        assert!(is_uuid("4b1d6b9a-2c0e-4b7a-9d55-0123456789ab"));
        assert!(!is_uuid("4b1d6b9a2c0e4b7a9d550123456789ab"));
        assert!(!is_uuid("mdev_supported_types"));
    }

    #[test]
    fn an_adapter_with_a_host_bound_queue_leaves_the_guest() {
        let queues: Queues =
            [queue(0, 5, VFIO_AP_DRIVER), queue(1, 5, "cex4queue"), queue(2, 5, VFIO_AP_DRIVER)].into_iter().collect();
        let m = Matrix::new(Mask::from_ids([0, 1, 2, 3]), Mask::from_ids([5]), Mask::empty());
        let config = HostConfig { adapters: Some(Mask::from_ids([0, 1, 3])), ..Default::default() };
        let g = filtered_guest(&m, &queues, &config);
        assert_eq!(g.adapters.ids(), vec![0], "1 is host-bound, 2 is not configured, 3 has no queue");
        assert_eq!(g.domains.ids(), vec![5]);
    }
}
