//! AP types by number and name.

/// Raw AP types and their names (kernel-ap.md §4).
pub const AP_TYPES: [(u8, &str); 13] = [
    (0, "none"),
    (3, "PCICC"),
    (4, "PCICA"),
    (5, "PCIXCC"),
    (6, "CEX2A"),
    (7, "CEX2C"),
    (8, "CEX3A"),
    (9, "CEX3C"),
    (10, "CEX4"),
    (11, "CEX5"),
    (12, "CEX6"),
    (13, "CEX7"),
    (14, "CEX8"),
];

/// Lowest and highest type that zcrypt's cex4 drivers and vfio_ap bind.
pub const MIN_BOUND_TYPE: u8 = 10;
pub const MAX_KNOWN_TYPE: u8 = 14;

pub fn type_name(raw: u8) -> String {
    AP_TYPES.iter().find(|(n, _)| *n == raw).map(|(_, s)| s.to_string()).unwrap_or_else(|| format!("type{raw}"))
}

/// Parses `CEX8`, `cex8`, `14`.
pub fn parse_type(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    AP_TYPES.iter().find(|(_, name)| name.eq_ignore_ascii_case(s)).map(|(n, _)| *n)
}

/// The compatible type zcrypt reports in `hwtype`: newer hardware than the kernel knows is
/// mapped to the newest known type.
pub fn compatible_hwtype(raw: u8) -> u8 {
    raw.min(MAX_KNOWN_TYPE)
}

/// Whether the cex4 zcrypt drivers and vfio_ap bind queues of this (compatible) type.
pub fn is_bindable(hwtype: u8) -> bool {
    (MIN_BOUND_TYPE..=MAX_KNOWN_TYPE).contains(&hwtype)
}

/// The zcrypt card name, e.g. `CEX8C`: `CEX<n>` plus the mode suffix.
pub fn zcrypt_name(hwtype: u8, suffix: Option<char>) -> String {
    if is_bindable(hwtype) { format!("CEX{}{}", hwtype - 6, suffix.unwrap_or('?')) } else { type_name(hwtype) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(type_name(14), "CEX8");
        assert_eq!(parse_type("cex7"), Some(13));
        assert_eq!(parse_type("12"), Some(12));
        assert_eq!(zcrypt_name(14, Some('C')), "CEX8C");
        assert_eq!(compatible_hwtype(15), 14);
        assert!(!is_bindable(9));
    }
}
