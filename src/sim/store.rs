//! What happens when something is written to an attribute: the kernel's store functions with
//! their exact parsing, checks, errno values, rollbacks and log messages (kernel-ap.md §3, §5).

use crate::ap::cnum::kstrtoul;
use crate::ap::inventory::VFIO_AP_DRIVER;
use crate::ap::{Apqn, Mask, Matrix, kmsg};

use super::kernel::{Errno, Kernel, SimMdev};

/// Which bus mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusMask {
    Ap,
    Aq,
}

/// Which per-mdev assignment attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assign {
    Adapter,
    Domain,
    Control,
}

fn bool01(data: &str) -> Result<bool, Errno> {
    match data.trim_end_matches('\n') {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(libc::EINVAL),
    }
}

/// `uuid_is_valid` on the first 36 characters.
fn parse_uuid(data: &str) -> Result<String, Errno> {
    if data.len() < 36 || data.len() > 37 || !data.is_char_boundary(36) {
        return Err(libc::EINVAL);
    }
    let s = &data[..36];
    let ok = s.bytes().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    if ok { Ok(s.to_ascii_lowercase()) } else { Err(libc::EINVAL) }
}

impl Kernel {
    fn mdev_mut(&mut self, uuid: &str) -> Result<&mut SimMdev, Errno> {
        self.mdevs.get_mut(uuid).ok_or(libc::ENODEV)
    }

    /// `apmask_store` / `aqmask_store`.
    pub fn store_bus_mask(&mut self, which: BusMask, data: &str) -> Result<(), Errno> {
        if self.has_driver_override() && self.any_override() {
            return Err(libc::EINVAL);
        }
        let old = match which {
            BusMask::Ap => self.apmask,
            BusMask::Aq => self.aqmask,
        };
        let new = old.apply_write(data).map_err(|e| e.errno())?;
        if new == old {
            return Ok(());
        }
        // Only bits going 0 -> 1 (queues moving back to the host) are checked.
        let reserved = new.and_not(&old);
        if !reserved.is_empty() {
            let (apm, aqm) = match which {
                BusMask::Ap => (reserved, self.aqmask),
                BusMask::Aq => (self.apmask, reserved),
            };
            let holder = self.mdevs.iter().find_map(|(uuid, m)| {
                let a = m.matrix.adapters.and(&apm);
                let d = m.matrix.domains.and(&aqm);
                (!a.is_empty() && !d.is_empty()).then(|| (uuid.clone(), Matrix::new(a, d, Mask::empty())))
            });
            if let Some((uuid, shared)) = holder {
                for q in shared.apqns() {
                    self.klog(kmsg::cannot_reserve_for_host(&uuid, q));
                }
                return Err(libc::EBUSY);
            }
        }
        match which {
            BusMask::Ap => self.apmask = new,
            BusMask::Aq => self.aqmask = new,
        }
        Ok(())
    }

    /// `create` in the type directory.
    pub fn store_create(&mut self, data: &str) -> Result<String, Errno> {
        let uuid = parse_uuid(data)?;
        if self.mdevs.contains_key(&uuid) {
            return Err(libc::EEXIST);
        }
        if self.available_instances == 0 {
            return Err(libc::EUSERS);
        }
        self.available_instances -= 1;
        let group = self.next_iommu_group;
        self.next_iommu_group += 1;
        self.mdevs.insert(
            uuid.clone(),
            SimMdev {
                matrix: Matrix::default(),
                migratable: false,
                in_use: false,
                migrating: false,
                iommu_group: group,
            },
        );
        Ok(uuid)
    }

    /// mdev `remove`. A real kernel blocks while a guest holds the device; the simulator
    /// refuses with `EBUSY` instead of hanging the writer.
    pub fn store_remove(&mut self, uuid: &str, data: &str) -> Result<(), Errno> {
        let v = kstrtoul(data).map_err(|_| libc::EINVAL)?;
        if v == 0 {
            return Ok(());
        }
        let m = self.mdevs.get(uuid).ok_or(libc::ENODEV)?;
        if m.in_use {
            return Err(libc::EBUSY);
        }
        self.mdevs.remove(uuid);
        self.available_instances += 1;
        Ok(())
    }

    /// The checks of `vfio_ap_mdev_validate_masks`: host-owned → EADDRNOTAVAIL, shared with
    /// another mdev → EADDRINUSE (each shared APQN logged).
    pub fn validate_matrix(&mut self, uuid: &str, m: &Matrix) -> Result<(), Errno> {
        if m.apqns().into_iter().any(|q| self.host_owned(q)) {
            return Err(libc::EADDRNOTAVAIL);
        }
        let conflict = self.mdevs.iter().filter(|(u, _)| u.as_str() != uuid).find_map(|(other, om)| {
            let a = m.adapters.and(&om.matrix.adapters);
            let d = m.domains.and(&om.matrix.domains);
            (!a.is_empty() && !d.is_empty()).then(|| (other.clone(), Matrix::new(a, d, Mask::empty())))
        });
        if let Some((other, shared)) = conflict {
            for q in shared.apqns() {
                self.klog(kmsg::already_assigned(uuid, q, &other));
            }
            return Err(libc::EADDRINUSE);
        }
        Ok(())
    }

    fn max_for(&self, what: Assign) -> u8 {
        match what {
            Assign::Adapter => self.max_adapter_id,
            Assign::Domain | Assign::Control => self.max_domain_id,
        }
    }

    /// `assign_adapter`, `assign_domain`, `assign_control_domain`.
    pub fn store_assign(&mut self, uuid: &str, what: Assign, data: &str) -> Result<(), Errno> {
        let id = kstrtoul(data).map_err(|e| e.errno())?;
        if id > self.max_for(what) as u64 {
            return Err(libc::ENODEV);
        }
        let id = id as u8;
        let mdev = self.mdev_mut(uuid)?;
        let mask = match what {
            Assign::Adapter => &mut mdev.matrix.adapters,
            Assign::Domain => &mut mdev.matrix.domains,
            Assign::Control => &mut mdev.matrix.control,
        };
        if mask.get(id) {
            return Ok(());
        }
        mask.set(id, true);
        let matrix = mdev.matrix;
        if what == Assign::Control {
            return Ok(()); // control domains may be shared: no checks
        }
        if let Err(e) = self.validate_matrix(uuid, &matrix) {
            let mdev = self.mdev_mut(uuid)?;
            match what {
                Assign::Adapter => mdev.matrix.adapters.set(id, false),
                _ => mdev.matrix.domains.set(id, false),
            }
            return Err(e);
        }
        Ok(())
    }

    /// `unassign_*`: clear the bit; not set is success.
    pub fn store_unassign(&mut self, uuid: &str, what: Assign, data: &str) -> Result<(), Errno> {
        let id = kstrtoul(data).map_err(|e| e.errno())?;
        if id > self.max_for(what) as u64 {
            return Err(libc::ENODEV);
        }
        let mdev = self.mdev_mut(uuid)?;
        let mask = match what {
            Assign::Adapter => &mut mdev.matrix.adapters,
            Assign::Domain => &mut mdev.matrix.domains,
            Assign::Control => &mut mdev.matrix.control,
        };
        mask.set(id as u8, false);
        Ok(())
    }

    /// `ap_config`: all or nothing.
    pub fn store_ap_config(&mut self, uuid: &str, data: &str) -> Result<(), Errno> {
        if !self.mdevs.contains_key(uuid) {
            return Err(libc::ENODEV);
        }
        let m = Matrix::parse_ap_config(data).map_err(|_| libc::EINVAL)?;
        let over = |mask: &Mask, max: u8| mask.highest().is_some_and(|x| x > max);
        if over(&m.adapters, self.max_adapter_id)
            || over(&m.domains, self.max_domain_id)
            || over(&m.control, self.max_domain_id)
        {
            return Err(libc::ENODEV);
        }
        self.validate_matrix(uuid, &m)?;
        self.mdev_mut(uuid)?.matrix = m;
        Ok(())
    }

    /// `migratable` (seed v1 kernels only).
    pub fn store_migratable(&mut self, uuid: &str, data: &str) -> Result<(), Errno> {
        let v = bool01(data)?;
        let m = self.mdev_mut(uuid)?;
        if m.migrating {
            return Err(libc::EBUSY);
        }
        m.migratable = v;
        Ok(())
    }

    /// Queue `driver_override` (kernel >= 6.19): only while both masks are all ones.
    pub fn store_driver_override(&mut self, q: Apqn, data: &str) -> Result<(), Errno> {
        if !self.apmask.is_full() || !self.aqmask.is_full() {
            return Err(libc::EINVAL);
        }
        let v = data.strip_suffix('\n').unwrap_or(data);
        if v.contains('\n') || v.len() > 64 {
            return Err(libc::EINVAL);
        }
        self.queues.entry(q).or_default().driver_override = v.to_string();
        Ok(())
    }

    /// Card `online` / queue `online` (chzcrypt -e/-d).
    pub fn store_online(&mut self, card: u8, q: Option<Apqn>, data: &str) -> Result<(), Errno> {
        let v = bool01(data)?;
        match q {
            Some(q) => self.queues.entry(q).or_default().online = Some(v),
            None => self.cards.get_mut(&card).ok_or(libc::ENODEV)?.online = v,
        }
        Ok(())
    }

    /// Whether an override names the vfio_ap driver.
    pub fn override_is_vfio(&self, q: Apqn) -> bool {
        self.driver_override(q) == VFIO_AP_DRIVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_takes_36_or_37_bytes_and_lowercases() {
        assert_eq!(
            parse_uuid("4B1D0000-0000-4000-8000-00000000000A\n").unwrap(),
            "4b1d0000-0000-4000-8000-00000000000a"
        );
        assert_eq!(parse_uuid("4b1d0000-0000-4000-8000-00000000000a").unwrap(), "4b1d0000-0000-4000-8000-00000000000a");
        assert_eq!(parse_uuid("4b1d0000-0000-4000-8000-00000000000"), Err(libc::EINVAL));
        assert_eq!(parse_uuid("4b1d0000-0000-4000-8000-00000000000a\n\n"), Err(libc::EINVAL));
        assert_eq!(parse_uuid("4b1d0000x0000-4000-8000-00000000000a"), Err(libc::EINVAL));
    }
}
