//! An mdev's AP configuration: the `ap_config` triple and the `matrix` / `guest_matrix` /
//! `control_domains` listings.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::Apqn;
use super::mask::Mask;

/// Adapters × domains, plus control domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Matrix {
    pub adapters: Mask,
    pub domains: Mask,
    #[serde(rename = "controlDomains")]
    pub control: Mask,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatrixError {
    #[error("invalid ap_config {0:?}: expected three masks 0x<64 hex>,0x<64 hex>,0x<64 hex>")]
    Config(String),
    #[error("invalid matrix line {0:?}: expected XX.YYYY, XX. or .YYYY")]
    Line(String),
    #[error("invalid control domain line {0:?}: expected 4 hex digits")]
    Control(String),
}

fn hex_id(s: &str, len: usize, whole: &str) -> Result<u8, MatrixError> {
    if s.len() != len {
        return Err(MatrixError::Line(whole.to_string()));
    }
    u16::from_str_radix(s, 16)
        .ok()
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| MatrixError::Line(whole.to_string()))
}

impl Matrix {
    pub fn new(adapters: Mask, domains: Mask, control: Mask) -> Self {
        Matrix { adapters, domains, control }
    }

    pub fn apqns(&self) -> BTreeSet<Apqn> {
        self.adapters.iter().flat_map(|a| self.domains.iter().map(move |d| Apqn::new(a, d))).collect()
    }

    pub fn contains(&self, q: Apqn) -> bool {
        self.adapters.get(q.apid) && self.domains.get(q.apqi)
    }

    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty() && self.domains.is_empty() && self.control.is_empty()
    }

    /// `ap_config` as the kernel prints it (with the trailing newline).
    pub fn ap_config_string(&self) -> String {
        format!("{},{},{}\n", self.adapters, self.domains, self.control)
    }

    /// Parses an `ap_config` write: three absolute masks separated by commas.
    pub fn parse_ap_config(s: &str) -> Result<Matrix, MatrixError> {
        let err = || MatrixError::Config(s.to_string());
        let body = s.strip_suffix('\n').unwrap_or(s);
        let parts: Vec<&str> = body.split(',').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        let m = |p: &str| Mask::parse_absolute(p).map_err(|_| err());
        Ok(Matrix { adapters: m(parts[0])?, domains: m(parts[1])?, control: m(parts[2])? })
    }

    /// The `matrix` / `guest_matrix` listing of adapters × domains.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        if !self.adapters.is_empty() {
            for a in self.adapters.iter() {
                if self.domains.is_empty() {
                    out.push_str(&format!("{a:02x}.\n"));
                } else {
                    for d in self.domains.iter() {
                        out.push_str(&format!("{a:02x}.{d:04x}\n"));
                    }
                }
            }
        } else {
            for d in self.domains.iter() {
                out.push_str(&format!(".{d:04x}\n"));
            }
        }
        out
    }

    /// The `control_domains` listing.
    pub fn control_listing(&self) -> String {
        self.control.iter().map(|d| format!("{d:04x}\n")).collect()
    }

    /// Parses a `matrix` listing back into adapter and domain masks (control stays empty).
    pub fn parse_listing(s: &str) -> Result<Matrix, MatrixError> {
        let mut m = Matrix::default();
        for line in s.lines().filter(|l| !l.is_empty()) {
            let (a, d) = line.split_once('.').ok_or_else(|| MatrixError::Line(line.to_string()))?;
            if !a.is_empty() {
                m.adapters.set(hex_id(a, 2, line)?, true);
            }
            if !d.is_empty() {
                m.domains.set(hex_id(d, 4, line)?, true);
            }
            if a.is_empty() && d.is_empty() {
                return Err(MatrixError::Line(line.to_string()));
            }
        }
        Ok(m)
    }

    /// Parses a `control_domains` listing.
    pub fn parse_control_listing(s: &str) -> Result<Mask, MatrixError> {
        let mut m = Mask::empty();
        for line in s.lines().filter(|l| !l.is_empty()) {
            let id = hex_id(line, 4, line).map_err(|_| MatrixError::Control(line.to_string()))?;
            m.set(id, true);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn listings_match_the_kernel() {
        let m = Matrix::new(Mask::from_ids([1, 0x1f]), Mask::from_ids([5]), Mask::from_ids([5, 6]));
        assert_eq!(m.listing(), "01.0005\n1f.0005\n");
        assert_eq!(m.control_listing(), "0005\n0006\n");
        let only_a = Matrix::new(Mask::from_ids([2]), Mask::empty(), Mask::empty());
        assert_eq!(only_a.listing(), "02.\n");
        let only_d = Matrix::new(Mask::empty(), Mask::from_ids([0x10]), Mask::empty());
        assert_eq!(only_d.listing(), ".0010\n");
        assert_eq!(Matrix::default().listing(), "");
    }

    #[test]
    fn ap_config_rejects_anything_but_three_masks() {
        assert!(Matrix::parse_ap_config("0x80,0x80").is_err());
        assert!(Matrix::parse_ap_config("0x80,0x80,0x80,0x80").is_err());
        assert!(Matrix::parse_ap_config("0x80,,0x80").is_err());
        assert!(Matrix::parse_ap_config("0x80,0xzz,0x80").is_err());
        let m = Matrix::parse_ap_config("0x80,0x40,0x20\n").unwrap();
        assert_eq!((m.adapters.ids(), m.domains.ids(), m.control.ids()), (vec![0], vec![1], vec![2]));
    }

    fn mask() -> impl Strategy<Value = Mask> {
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Mask::from_ids)
    }

    proptest! {
        #[test]
        fn ap_config_print_parse_identity(a in mask(), d in mask(), c in mask()) {
            let m = Matrix::new(a, d, c);
            prop_assert_eq!(Matrix::parse_ap_config(&m.ap_config_string()).unwrap(), m);
        }

        #[test]
        fn listing_print_parse_identity(a in mask(), d in mask(), c in mask()) {
            let m = Matrix::new(a, d, c);
            let back = Matrix::parse_listing(&m.listing()).unwrap();
            prop_assert_eq!(back.apqns(), m.apqns());
            if !a.is_empty() { prop_assert_eq!(back.adapters, a); }
            if a.is_empty() || !d.is_empty() { prop_assert_eq!(back.domains, d); }
            prop_assert_eq!(Matrix::parse_control_listing(&m.control_listing()).unwrap(), c);
        }

        #[test]
        fn listing_parsers_never_panic(s in ".{0,60}") {
            let _ = Matrix::parse_listing(&s);
            let _ = Matrix::parse_control_listing(&s);
            let _ = Matrix::parse_ap_config(&s);
        }
    }
}
