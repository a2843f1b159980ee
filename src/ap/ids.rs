//! Adapter, domain and queue numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An adapter (card) id, 0..=255.
pub type Apid = u8;
/// A domain (queue index), 0..=255: the kernel's masks have 256 bits (`AP_DOMAINS`).
pub type Apqi = u8;

/// An AP queue number, written `XX.YYYY` in lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Apqn {
    pub apid: Apid,
    pub apqi: Apqi,
}

impl Apqn {
    pub const fn new(apid: Apid, apqi: Apqi) -> Self {
        Apqn { apid, apqi }
    }
}

impl fmt::Display for Apqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:04x}", self.apid, self.apqi)
    }
}

impl fmt::Debug for Apqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid APQN {0:?}: expected XX.YYYY in hex")]
pub struct ApqnError(pub String);

impl FromStr for Apqn {
    type Err = ApqnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ApqnError(s.to_string());
        let (a, q) = s.split_once('.').ok_or_else(err)?;
        if a.len() != 2 || q.len() != 4 {
            return Err(err());
        }
        let apid = u8::from_str_radix(a, 16).map_err(|_| err())?;
        let apqi = u16::from_str_radix(q, 16).map_err(|_| err())?;
        Ok(Apqn { apid, apqi: u8::try_from(apqi).map_err(|_| err())? })
    }
}

impl Serialize for Apqn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Apqn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Card directory name `cardXX`.
pub fn card_name(apid: Apid) -> String {
    format!("card{apid:02x}")
}

/// Parses `cardXX`.
pub fn parse_card_name(s: &str) -> Option<Apid> {
    let hex = s.strip_prefix("card")?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apqn_prints_and_parses_in_sysfs_form() {
        let q = Apqn::new(0x1f, 0x2a);
        assert_eq!(q.to_string(), "1f.002a");
        assert_eq!("1f.002a".parse::<Apqn>().unwrap(), q);
        assert!("1f.2a".parse::<Apqn>().is_err());
        assert!("1f.0100".parse::<Apqn>().is_err());
        assert!("zz.0001".parse::<Apqn>().is_err());
        assert_eq!(card_name(3), "card03");
        assert_eq!(parse_card_name("card0a"), Some(10));
        assert_eq!(parse_card_name("card1"), None);
    }
}
