//! The YAML machine file: a simulated host described the way an administrator knows it.
//!
//! ```yaml
//! hostname: z16-a
//! kernel: { profile: mig-latest, release: 6.19.0-cp, vfioApStream: v5 }
//! maxAdapterId: 255          # default 255 (APXA)
//! maxDomainId: 84            # default 84
//! busFeatures: [APSC, APXA, QACT, RC8A, APSB]   # default: all five
//! secureExecutionHost: false # firmware/uv/prot_virt_guest
//! usageDomains: ["0-15", 0x20]        # host configuration (QCI); ints, "0x10", "A-B" ranges
//! controlDomains: ["0-15", 0x20]      # default: usageDomains
//! extraAdapters: [0x30]               # configured adapters without a card device (TAPQ type 0)
//! apmask: "0x3fff"                    # optional, absolute form; default all ones
//! aqmask: "0xffff"
//! cards:
//!   - { id: 0x00, type: CEX8, mode: CCA }            # functions default from the mode
//!   - { id: 0x01, type: 14, functions: 0x92800000, hwtype: 14, online: true, config: true, chkstop: false, depth: 8 }
//! queues:                               # per-queue overrides
//!   - { apqn: "00.0005", functions: 0x9280C000, online: false, config: true, chkstop: false, driverOverride: vfio_ap }
//! mdevs:                                # existing mdevs (e.g. an administrator's)
//!   - { uuid: 4b1d..., adapters: [0], domains: [5], controlDomains: [5], migratable: true, inUse: true }
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::Profile;
use crate::ap::{ApFunctions, Apqn, Mask};

/// A list of ids: integers, `"0x10"` strings or `"A-B"` ranges (any base-0 numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IdList(pub Mask);

impl<'de> Deserialize<'de> for IdList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Int(u64),
            Str(String),
        }
        use serde::de::Error as _;
        let items = Vec::<Item>::deserialize(d)?;
        let mut m = Mask::empty();
        let id = |v: u64| u8::try_from(v).map_err(|_| D::Error::custom(format!("id {v} is above 255")));
        let num = |s: &str| -> Result<u8, D::Error> {
            let v = crate::ap::cnum::kstrtoul(s.trim())
                .map_err(|_| D::Error::custom(format!("{s:?} is not a number or A-B range")))?;
            id(v)
        };
        for it in items {
            match it {
                Item::Int(v) => m.set(id(v)?, true),
                Item::Str(s) => match s.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (num(a)?, num(b)?);
                        if a > b {
                            return Err(D::Error::custom(format!("range {s:?} runs backwards")));
                        }
                        (a..=b).for_each(|i| m.set(i, true));
                    }
                    None => m.set(num(&s)?, true),
                },
            }
        }
        Ok(IdList(m))
    }
}

/// A card's mode, which sets its default functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "CCA", alias = "cca")]
    Cca,
    #[serde(rename = "EP11", alias = "ep11")]
    Ep11,
    #[serde(rename = "Accel", alias = "accel", alias = "accelerator")]
    Accel,
}

impl Mode {
    /// Typical `ap_functions` of a card in this mode (as lszcrypt shows them on z15/z16).
    pub fn default_functions(self) -> ApFunctions {
        match self {
            Mode::Cca => ApFunctions(0x9280_0000),   // S--D--N-F-
            Mode::Ep11 => ApFunctions(0x8680_0000),  // S----XN-F-
            Mode::Accel => ApFunctions(0xEA00_0000), // SMC-A-N---
        }
    }
}

/// An AP type by name (`CEX8`) or raw number (`14`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TypeName(pub u8);

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum T {
            Int(u8),
            Str(String),
        }
        use serde::de::Error as _;
        match T::deserialize(d)? {
            T::Int(n) => Ok(TypeName(n)),
            T::Str(s) => crate::ap::types::parse_type(&s)
                .map(TypeName)
                .ok_or_else(|| D::Error::custom(format!("unknown AP type {s:?} (expected e.g. CEX8 or 14)"))),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardSpec {
    pub id: u8,
    /// Raw AP type (`raw_hwtype`).
    #[serde(rename = "type")]
    pub raw_type: TypeName,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Full 32-bit TAPQ functions; default from `mode` (CCA when neither is given).
    #[serde(default)]
    pub functions: Option<u32>,
    /// Compatible type; default: the raw type, capped at CEX8.
    #[serde(default)]
    pub hwtype: Option<u8>,
    #[serde(default = "yes")]
    pub online: bool,
    #[serde(default = "yes")]
    pub config: bool,
    #[serde(default)]
    pub chkstop: bool,
    #[serde(default)]
    pub depth: Option<u32>,
}

impl CardSpec {
    pub fn functions(&self) -> ApFunctions {
        match (self.functions, self.mode) {
            (Some(f), _) => ApFunctions(f),
            (None, Some(m)) => m.default_functions(),
            (None, None) => Mode::Cca.default_functions(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSpec {
    pub apqn: Apqn,
    /// Live TAPQ functions incl. SE bind state bits (default: the card's).
    #[serde(default)]
    pub functions: Option<u32>,
    /// Shorthand for the SE bind/associate state bits 16..17 (0..3).
    #[serde(default)]
    pub se_state: Option<u8>,
    #[serde(default)]
    pub online: Option<bool>,
    #[serde(default)]
    pub config: Option<bool>,
    #[serde(default)]
    pub chkstop: Option<bool>,
    /// `driver_override` (profile `override` only).
    #[serde(default)]
    pub driver_override: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MdevSpec {
    pub uuid: uuid::Uuid,
    #[serde(default)]
    pub adapters: IdList,
    #[serde(default)]
    pub domains: IdList,
    #[serde(default)]
    pub control_domains: IdList,
    /// v1 kernels only.
    #[serde(default)]
    pub migratable: Option<bool>,
    /// Attached to a running guest.
    #[serde(default)]
    pub in_use: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelSpec {
    pub profile: Profile,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub vfio_ap_stream: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Machine {
    #[serde(default)]
    pub hostname: Option<String>,
    pub kernel: KernelSpec,
    #[serde(default = "default_max")]
    pub max_adapter_id: u8,
    #[serde(default = "default_max_domain")]
    pub max_domain_id: u8,
    #[serde(default)]
    pub bus_features: Option<Vec<String>>,
    #[serde(default)]
    pub secure_execution_host: bool,
    pub usage_domains: IdList,
    #[serde(default)]
    pub control_domains: Option<IdList>,
    #[serde(default)]
    pub extra_adapters: IdList,
    #[serde(default)]
    pub apmask: Option<String>,
    #[serde(default)]
    pub aqmask: Option<String>,
    #[serde(default)]
    pub cards: Vec<CardSpec>,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    #[serde(default)]
    pub mdevs: Vec<MdevSpec>,
}

fn default_max() -> u8 {
    255
}
fn default_max_domain() -> u8 {
    84
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", serde_yaml::to_string(self).map_err(|_| fmt::Error)?)
    }
}
