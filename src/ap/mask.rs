//! 256-bit AP masks with every text format the kernel reads and prints.
//!
//! Bit 0 is the leftmost (most significant) bit of the 64-hex-digit string, as in
//! `/sys/bus/ap/apmask` (`set_bit_inv` in the kernel).

use std::fmt;

use thiserror::Error;

use super::cnum::simple_strtoul;

pub const BITS: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Mask([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaskError {
    #[error("invalid mask {0:?}: expected 0x and up to 64 hex digits, or +N,-A-B edits")]
    Invalid(String),
}

impl MaskError {
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

impl Mask {
    pub const fn empty() -> Self {
        Mask([0; 32])
    }
    pub const fn full() -> Self {
        Mask([0xff; 32])
    }
    pub fn from_ids<I: IntoIterator<Item = u8>>(ids: I) -> Self {
        let mut m = Mask::empty();
        for i in ids {
            m.set(i, true);
        }
        m
    }
    /// All ids `0..=max`.
    pub fn up_to(max: u8) -> Self {
        Mask::from_ids(0..=max)
    }
    pub fn get(&self, i: u8) -> bool {
        self.0[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }
    pub fn set(&mut self, i: u8, on: bool) {
        let bit = 0x80 >> (i % 8);
        if on {
            self.0[(i / 8) as usize] |= bit;
        } else {
            self.0[(i / 8) as usize] &= !bit;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
    pub fn is_full(&self) -> bool {
        self.0.iter().all(|b| *b == 0xff)
    }
    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |i| self.get(*i))
    }
    pub fn ids(&self) -> Vec<u8> {
        self.iter().collect()
    }
    pub fn and(&self, o: &Mask) -> Mask {
        let mut r = *self;
        r.0.iter_mut().zip(o.0.iter()).for_each(|(a, b)| *a &= b);
        r
    }
    pub fn or(&self, o: &Mask) -> Mask {
        let mut r = *self;
        r.0.iter_mut().zip(o.0.iter()).for_each(|(a, b)| *a |= b);
        r
    }
    pub fn and_not(&self, o: &Mask) -> Mask {
        let mut r = *self;
        r.0.iter_mut().zip(o.0.iter()).for_each(|(a, b)| *a &= !b);
        r
    }
    pub fn is_subset_of(&self, o: &Mask) -> bool {
        self.and_not(o).is_empty()
    }
    /// Highest id set, if any.
    pub fn highest(&self) -> Option<u8> {
        (0..=255u8).rev().find(|i| self.get(*i))
    }

    /// Absolute form, the kernel's `hex2bitmap`: optional `0x`, hex digits MSB first, padded with
    /// zeros on the right, at most 64 digits, optionally one trailing newline.
    pub fn parse_absolute(s: &str) -> Result<Mask, MaskError> {
        let err = || MaskError::Invalid(s.to_string());
        let mut b = s.as_bytes();
        if b.starts_with(b"0x") {
            b = &b[1..];
        }
        if b.first() == Some(&b'x') {
            b = &b[1..];
        }
        let mut m = Mask::empty();
        let mut i = 0usize;
        while i < BITS {
            let Some(d) = b.first().and_then(|c| (*c as char).to_digit(16)) else { break };
            for n in 0..4 {
                if d & (0x08 >> n) != 0 {
                    m.set((i + n) as u8, true);
                }
            }
            i += 4;
            b = &b[1..];
        }
        if b.first() == Some(&b'\n') {
            b = &b[1..];
        }
        if b.is_empty() { Ok(m) } else { Err(err()) }
    }

    /// Relative edits, the kernel's `modify_bitmap`: `+N`, `-N`, `+A-B`, `-A-B` separated by
    /// commas, numbers in C base 0, `< 256`, `A <= B`.
    pub fn apply_relative(&self, s: &str) -> Result<Mask, MaskError> {
        let err = || MaskError::Invalid(s.to_string());
        let mut m = *self;
        let mut rest = s;
        while !rest.is_empty() {
            let sign = rest.as_bytes()[0];
            if sign != b'+' && sign != b'-' {
                return Err(err());
            }
            rest = &rest[1..];
            let (a, n) = simple_strtoul(rest);
            if n == 0 || a >= BITS as u64 {
                return Err(err());
            }
            rest = &rest[n..];
            let mut z = a;
            if let Some(r) = rest.strip_prefix('-') {
                let (zz, n) = simple_strtoul(r);
                if n == 0 || a > zz || zz >= BITS as u64 {
                    return Err(err());
                }
                z = zz;
                rest = &r[n..];
            }
            for i in a..=z {
                m.set(i as u8, sign == b'+');
            }
            rest = rest.trim_start_matches([',', '\n']);
        }
        Ok(m)
    }

    /// What a write of `s` to `apmask`/`aqmask` makes of the mask `self` (`ap_parse_mask_str`).
    pub fn apply_write(&self, s: &str) -> Result<Mask, MaskError> {
        if s.starts_with('+') || s.starts_with('-') { self.apply_relative(s) } else { Mask::parse_absolute(s) }
    }

    /// The shortest relative edit string that turns `self` into `target` (`+A-B` ranges), or
    /// `None` if they are equal. Written by the agent so that it touches only the bits it needs.
    pub fn relative_edits_to(&self, target: &Mask) -> Option<String> {
        let mut parts = Vec::new();
        let mut i: usize = 0;
        while i < BITS {
            let want = target.get(i as u8);
            if self.get(i as u8) == want {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < BITS && target.get((i + 1) as u8) == want && self.get((i + 1) as u8) != want {
                i += 1;
            }
            let sign = if want { '+' } else { '-' };
            if start == i {
                parts.push(format!("{sign}{start}"));
            } else {
                parts.push(format!("{sign}{start}-{i}"));
            }
            i += 1;
        }
        if parts.is_empty() { None } else { Some(parts.join(",")) }
    }
}

impl fmt::Display for Mask {
    /// `0x` + 64 lowercase hex digits, as the kernel prints masks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mask{:?}", self.ids())
    }
}

impl std::str::FromStr for Mask {
    type Err = MaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mask::parse_absolute(s)
    }
}

impl serde::Serialize for Mask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Mask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ids = Vec::<u8>::deserialize(d)?;
        Ok(Mask::from_ids(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn absolute_masks_pad_on_the_right() {
        let m = Mask::parse_absolute("0x41").unwrap();
        assert_eq!(m.ids(), vec![1, 7]);
        assert_eq!(Mask::parse_absolute("x8").unwrap().ids(), vec![0]);
        assert_eq!(Mask::parse_absolute("8\n").unwrap().ids(), vec![0]);
        assert_eq!(Mask::parse_absolute("").unwrap(), Mask::empty());
        assert_eq!(Mask::full().to_string(), format!("0x{}", "f".repeat(64)));
    }

    #[test]
    fn absolute_masks_reject_junk_and_overlong() {
        assert!(Mask::parse_absolute("0x4g").is_err());
        assert!(Mask::parse_absolute(&format!("0x{}", "f".repeat(65))).is_err());
        assert!(Mask::parse_absolute("0x41\n\n").is_err());
        assert!(Mask::parse_absolute("0x41 ").is_err());
    }

    #[test]
    fn relative_edits_follow_modify_bitmap() {
        let m = Mask::full();
        let r = m.apply_write("-0x03,+4").unwrap();
        assert!(!r.get(3) && r.get(4) && r.get(2));
        let r = Mask::empty().apply_write("+1-3,+010\n").unwrap();
        assert_eq!(r.ids(), vec![1, 2, 3, 8]);
        assert!(Mask::empty().apply_write("+256").is_err());
        assert!(Mask::empty().apply_write("+3-1").is_err());
        assert!(Mask::empty().apply_write("+").is_err());
        assert!(Mask::empty().apply_write("+1;").is_err());
        assert!(Mask::empty().apply_write("+1-").is_err());
    }

    fn mask() -> impl Strategy<Value = Mask> {
        proptest::array::uniform32(any::<u8>()).prop_map(Mask)
    }

    proptest! {
        #[test]
        fn print_then_parse_is_identity(m in mask()) {
            prop_assert_eq!(Mask::parse_absolute(&m.to_string()).unwrap(), m);
        }

        #[test]
        fn relative_edits_agree_with_a_bitset_model(
            start in mask(),
            edits in proptest::collection::vec((any::<bool>(), any::<u8>(), 0u8..8, 0u8..3), 1..6)
        ) {
            let mut model: Vec<bool> = (0..=255u8).map(|i| start.get(i)).collect();
            let mut parts = Vec::new();
            for (plus, a, len, radix) in &edits {
                let b = a.saturating_add(*len);
                for i in *a..=b { model[i as usize] = *plus; }
                let fmt = |n: u8| match radix { 0 => n.to_string(), 1 => format!("{n:#x}"), _ => if n == 0 { "0".into() } else { format!("0{n:o}") } };
                let sign = if *plus { '+' } else { '-' };
                parts.push(if a == &b { format!("{sign}{}", fmt(*a)) } else { format!("{sign}{}-{}", fmt(*a), fmt(b)) });
            }
            let got = start.apply_write(&parts.join(",")).unwrap();
            for i in 0..=255u8 { prop_assert_eq!(got.get(i), model[i as usize], "bit {}", i); }
        }

        #[test]
        fn relative_edits_to_reaches_the_target(a in mask(), b in mask()) {
            match a.relative_edits_to(&b) {
                None => prop_assert_eq!(a, b),
                Some(s) => prop_assert_eq!(a.apply_write(&s).unwrap(), b),
            }
        }

        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = Mask::parse_absolute(&s);
            let _ = Mask::full().apply_write(&s);
        }
    }
}
