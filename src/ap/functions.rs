//! TAPQ facility bits as printed in `ap_functions` (`0x%08X`), lszcrypt letters and mode.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The 32-bit `ap_functions` value; the MSB is TAPQ bit 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApFunctions(pub u32);

/// A named facility bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility {
    pub mask: u32,
    pub letter: char,
    /// The name the latest migration code logs (kernel-ap.md §6.2).
    pub kernel_name: &'static str,
    /// `true` when the kernel says `available`/`not available` instead of `installed`.
    pub says_available: bool,
}

pub const APSC: u32 = 0x8000_0000;
pub const AP4KM: u32 = 0x4000_0000;
pub const AP4KC: u32 = 0x2000_0000;
pub const CCA: u32 = 0x1000_0000;
pub const ACCEL: u32 = 0x0800_0000;
pub const EP11: u32 = 0x0400_0000;
pub const APXA: u32 = 0x0200_0000;
pub const SLCF: u32 = 0x0100_0000;
pub const FULL: u32 = 0x0080_0000;
pub const STATELESS: u32 = 0x0040_0000;
/// SE bind/associate state, TAPQ bits 16..17.
pub const SE_STATE: u32 = 0x0000_C000;
/// The card attribute never shows bits 16..31.
pub const CARD_VISIBLE: u32 = 0xFFFF_0000;

const fn fac(mask: u32, letter: char, kernel_name: &'static str, says_available: bool) -> Facility {
    Facility { mask, letter, kernel_name, says_available }
}

/// The ten facilities in lszcrypt's order `S M C D A X N H F R`.
pub const FACILITIES: [Facility; 10] = [
    fac(APSC, 'S', "APSC facility", false),
    fac(AP4KM, 'M', "mex4k facility", false),
    fac(AP4KC, 'C', "crt4k facility", false),
    fac(CCA, 'D', "Coprocessor-mode facility", false),
    fac(ACCEL, 'A', "Accelerator-mode facility", false),
    fac(EP11, 'X', "XCP-mode facility", false),
    fac(APXA, 'N', "AP-extended-addressing (APXA) facility", false),
    fac(SLCF, 'H', "Stateless-command-filtering (SLCF)", true),
    fac(FULL, 'F', "Full native card function", true),
    fac(STATELESS, 'R', "Only stateless functions", true),
];

/// The eight facilities whose equality the latest rules require (§6.2 rule 3).
pub const COMPARED_LATEST: [Facility; 8] = [
    FACILITIES[0],
    FACILITIES[1],
    FACILITIES[2],
    FACILITIES[3],
    FACILITIES[4],
    FACILITIES[5],
    FACILITIES[6],
    FACILITIES[7],
];

impl ApFunctions {
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask != 0
    }
    /// `S--D--N-F-` as lszcrypt prints it.
    pub fn letters(self) -> String {
        FACILITIES.iter().map(|f| if self.has(f.mask) { f.letter } else { '-' }).collect()
    }
    /// lszcrypt's mode column.
    pub fn mode(self) -> &'static str {
        if self.has(CCA) {
            "CCA-Coproc"
        } else if self.has(ACCEL) {
            "Accelerator"
        } else if self.has(EP11) {
            "EP11-Coproc"
        } else {
            "Unknown"
        }
    }
    /// The zcrypt type suffix: `C` CCA, `A` accelerator, `P` EP11.
    pub fn type_suffix(self) -> Option<char> {
        if self.has(CCA) {
            Some('C')
        } else if self.has(ACCEL) {
            Some('A')
        } else if self.has(EP11) {
            Some('P')
        } else {
            None
        }
    }
    /// SE bind/associate state (0 usable, 1 bound not associated, 2 available for binding, 3 unusable).
    pub fn se_state(self) -> u8 {
        ((self.0 & SE_STATE) >> 14) as u8
    }
    /// What the card attribute shows.
    pub fn card_visible(self) -> ApFunctions {
        ApFunctions(self.0 & CARD_VISIBLE)
    }
    /// Parses `0x%08X` (case-insensitive, optional `0x`, optional newline).
    pub fn parse(s: &str) -> Option<ApFunctions> {
        let t = s.trim_end_matches('\n');
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        if t.is_empty() || t.len() > 8 {
            return None;
        }
        u32::from_str_radix(t, 16).ok().map(ApFunctions)
    }
}

impl fmt::Display for ApFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

impl fmt::Debug for ApFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} ({})", self.letters())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lszcrypt_letters_and_mode() {
        let f = ApFunctions(0x9280_0000);
        assert_eq!(f.letters(), "S--D--N-F-");
        assert_eq!(f.mode(), "CCA-Coproc");
        assert_eq!(f.to_string(), "0x92800000");
        assert_eq!(ApFunctions(0x0A00_0000).mode(), "Accelerator");
        assert_eq!(ApFunctions(0x0480_0000).mode(), "EP11-Coproc");
        assert_eq!(ApFunctions::parse("0x92800000\n"), Some(f));
        assert_eq!(ApFunctions::parse("0xZZ"), None);
    }

    #[test]
    fn se_state_is_hidden_on_the_card() {
        let q = ApFunctions(0x9280_8000);
        assert_eq!(q.se_state(), 2);
        assert_eq!(q.card_visible(), ApFunctions(0x9280_0000));
    }
}
