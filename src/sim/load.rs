//! Building a simulated kernel from a machine file.

use crate::ap::{ApFunctions, Mask, Matrix, functions, types};

use super::kernel::{Kernel, SimCard, SimMdev};
use super::machine::Machine;
use super::{Error, Profile};

fn bad(path: &str, field: String, message: impl Into<String>) -> Error {
    Error::Machine { path: format!("{path}: {field}"), message: message.into() }
}

impl Kernel {
    /// Builds the host a machine file describes; `source` names the file in errors.
    pub fn from_machine(m: &Machine, profile: Option<Profile>, source: &str) -> Result<Kernel, Error> {
        let mut k = Kernel::new(profile.unwrap_or(m.kernel.profile));
        k.hostname = m.hostname.clone();
        k.release = m.kernel.release.clone();
        k.vfio_ap_stream = m.kernel.vfio_ap_stream.clone();
        k.max_adapter_id = m.max_adapter_id;
        k.max_domain_id = m.max_domain_id;
        if let Some(f) = &m.bus_features {
            k.bus_features = f.clone();
        }
        k.se_host = m.secure_execution_host;
        k.cfg_usage = m.usage_domains.0;
        k.cfg_control = m.control_domains.as_ref().map(|c| c.0).unwrap_or(m.usage_domains.0);
        let mask = |field: &str, v: &Option<String>| -> Result<Mask, Error> {
            match v {
                None => Ok(Mask::full()),
                Some(s) => Mask::parse_absolute(s).map_err(|e| bad(source, field.into(), e.to_string())),
            }
        };
        k.apmask = mask("apmask", &m.apmask)?;
        k.aqmask = mask("aqmask", &m.aqmask)?;
        let mut adapters = m.extra_adapters.0;
        for (i, c) in m.cards.iter().enumerate() {
            let field = |f: &str| format!("cards[{i}].{f}");
            if c.id > m.max_adapter_id {
                return Err(bad(source, field("id"), format!("{} is above maxAdapterId {}", c.id, m.max_adapter_id)));
            }
            if k.cards.contains_key(&c.id) {
                return Err(bad(source, field("id"), format!("card {:#04x} is listed twice", c.id)));
            }
            if c.raw_type.0 == 0 {
                return Err(bad(source, field("type"), "type 0 means no card; use extraAdapters"));
            }
            let hwtype = c.hwtype.unwrap_or_else(|| types::compatible_hwtype(c.raw_type.0));
            k.cards.insert(
                c.id,
                SimCard {
                    raw_type: c.raw_type.0,
                    hwtype,
                    functions: c.functions(),
                    online: c.online,
                    config: c.config,
                    chkstop: c.chkstop,
                    depth: c.depth.unwrap_or(7),
                },
            );
            if c.config {
                adapters.set(c.id, true);
            }
        }
        k.cfg_adapters = adapters;
        for (i, q) in m.queues.iter().enumerate() {
            let field = |f: &str| format!("queues[{i}].{f}");
            if !k.queue_exists(q.apqn) {
                return Err(bad(
                    source,
                    field("apqn"),
                    format!("queue {} does not exist (no such card, or domain not in usageDomains)", q.apqn),
                ));
            }
            let card_functions = k.cards.get(&q.apqn.apid).map(|c| c.functions).unwrap_or_default();
            let mut f = q.functions.map(ApFunctions);
            if let Some(se) = q.se_state {
                if se > 3 {
                    return Err(bad(source, field("seState"), format!("{se} is not a bind state 0..3")));
                }
                let base = f.unwrap_or(card_functions).0 & !functions::SE_STATE;
                f = Some(ApFunctions(base | ((se as u32) << 14)));
            }
            if q.driver_override.is_some() && k.profile != Profile::Override {
                return Err(bad(source, field("driverOverride"), "driver_override needs the override profile"));
            }
            let e = k.queues.entry(q.apqn).or_default();
            e.functions = f;
            e.online = q.online;
            e.config = q.config;
            e.chkstop = q.chkstop;
            e.driver_override = q.driver_override.clone().unwrap_or_default();
        }
        for (i, md) in m.mdevs.iter().enumerate() {
            let field = |f: &str| format!("mdevs[{i}].{f}");
            let uuid = md.uuid.hyphenated().to_string();
            if k.mdevs.contains_key(&uuid) {
                return Err(bad(source, field("uuid"), format!("{uuid} is listed twice")));
            }
            let matrix = Matrix::new(md.adapters.0, md.domains.0, md.control_domains.0);
            if matrix.adapters.highest().is_some_and(|x| x > k.max_adapter_id) {
                return Err(bad(source, field("adapters"), "id above maxAdapterId"));
            }
            if matrix.domains.or(&matrix.control).highest().is_some_and(|x| x > k.max_domain_id) {
                return Err(bad(source, field("domains"), "id above maxDomainId"));
            }
            if md.migratable.is_some() && k.profile != Profile::MigV1 {
                return Err(bad(source, field("migratable"), "the per-mdev attribute exists on mig-v1 kernels only"));
            }
            if let Some(q) = matrix.apqns().into_iter().find(|q| k.host_owned(*q)) {
                return Err(bad(source, field("adapters"), format!("queue {q} is owned by the host (apmask/aqmask)")));
            }
            if let Some((other, q)) = k
                .mdevs
                .iter()
                .find_map(|(u, o)| matrix.apqns().into_iter().find(|q| o.matrix.contains(*q)).map(|q| (u.clone(), q)))
            {
                return Err(bad(source, field("adapters"), format!("queue {q} is already assigned to {other}")));
            }
            let group = k.next_iommu_group;
            k.next_iommu_group += 1;
            k.available_instances -= 1;
            k.mdevs.insert(
                uuid,
                SimMdev {
                    matrix,
                    migratable: md.migratable.unwrap_or(false),
                    in_use: md.in_use,
                    migrating: false,
                    iommu_group: group,
                },
            );
        }
        Ok(k)
    }

    /// Parses and builds a machine file's text.
    pub fn from_yaml(text: &str, profile: Option<Profile>, source: &str) -> Result<Kernel, Error> {
        let m: Machine = serde_yaml::from_str(text).map_err(|e| Error::Machine {
            path: match e.location() {
                Some(l) => format!("{source}:{}:{}", l.line(), l.column()),
                None => source.to_string(),
            },
            message: e.to_string(),
        })?;
        Kernel::from_machine(&m, profile, source)
    }
}
