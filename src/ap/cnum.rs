//! Number parsing exactly as the kernel does it for sysfs writes.
//!
//! `kstrtoul(s, 0, ..)` (used by `assign_*`, `remove`) and `simple_strtoul(s, .., 0)` (used by the
//! relative `+N,-A-B` mask edits) both take C base 0: decimal, `0x` hex, a leading `0` means octal.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CNumError {
    /// Not a number (the kernel returns `EINVAL`).
    #[error("not a number")]
    Invalid,
    /// Does not fit in an unsigned long (the kernel returns `ERANGE`).
    #[error("number out of range")]
    Range,
}

impl CNumError {
    pub fn errno(self) -> i32 {
        match self {
            CNumError::Invalid => libc::EINVAL,
            CNumError::Range => libc::ERANGE,
        }
    }
}

fn radix_of(s: &[u8]) -> (u32, usize) {
    if s.len() >= 2 && s[0] == b'0' && (s[1] == b'x' || s[1] == b'X') && s.get(2).is_some_and(u8::is_ascii_hexdigit) {
        (16, 2)
    } else if s.first() == Some(&b'0') {
        (8, 0)
    } else {
        (10, 0)
    }
}

/// `kstrtoul(s, 0, &v)`: the whole string must be a number, optionally followed by one newline;
/// a leading `+` is accepted.
pub fn kstrtoul(s: &str) -> Result<u64, CNumError> {
    let mut b = s.as_bytes();
    if let Some(rest) = b.strip_prefix(b"+") {
        b = rest;
    }
    if let Some(rest) = b.strip_suffix(b"\n") {
        b = rest;
    }
    let (radix, skip) = radix_of(b);
    let digits = &b[skip..];
    if digits.is_empty() {
        return Err(CNumError::Invalid);
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &c in digits {
        let d = (c as char).to_digit(radix).ok_or(CNumError::Invalid)?;
        match v.checked_mul(radix as u64).and_then(|x| x.checked_add(d as u64)) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow { Err(CNumError::Range) } else { Ok(v) }
}

/// `simple_strtoul(s, &end, 0)`: parses the longest numeric prefix, returns the value and the
/// number of bytes consumed (0 when there is no number). Overflow wraps, as in the kernel.
pub fn simple_strtoul(s: &str) -> (u64, usize) {
    let b = s.as_bytes();
    let (radix, skip) = radix_of(b);
    let mut v: u64 = 0;
    let mut n = skip;
    while let Some(d) = b.get(n).and_then(|&c| (c as char).to_digit(radix)) {
        v = v.wrapping_mul(radix as u64).wrapping_add(d as u64);
        n += 1;
    }
    if n == skip && skip == 2 {
        // "0x" without digits: the kernel parses the "0".
        return (0, 1);
    }
    (v, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kstrtoul_takes_c_base_zero() {
        assert_eq!(kstrtoul("10"), Ok(10));
        assert_eq!(kstrtoul("0x10"), Ok(16));
        assert_eq!(kstrtoul("0X1f\n"), Ok(31));
        assert_eq!(kstrtoul("010"), Ok(8));
        assert_eq!(kstrtoul("0"), Ok(0));
        assert_eq!(kstrtoul("+5"), Ok(5));
    }

    #[test]
    fn kstrtoul_rejects_junk_with_einval_and_overflow_with_erange() {
        assert_eq!(kstrtoul(""), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("\n"), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("abc"), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("12 "), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("08"), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("-1"), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("0x"), Err(CNumError::Invalid));
        assert_eq!(kstrtoul("99999999999999999999999"), Err(CNumError::Range));
        assert_eq!(kstrtoul("18446744073709551616"), Err(CNumError::Range));
        assert_eq!(kstrtoul("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn simple_strtoul_parses_a_prefix() {
        assert_eq!(simple_strtoul("12-14"), (12, 2));
        assert_eq!(simple_strtoul("0x0a,"), (10, 4));
        assert_eq!(simple_strtoul("017"), (15, 3));
        assert_eq!(simple_strtoul(",1"), (0, 0));
    }
}
