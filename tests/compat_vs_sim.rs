//! The verdict engine agrees with the simulated destination kernel: for random machine pairs and
//! mdevs, under both rule sets, `compat::verdict` (from the hosts' sysfs trees) is compatible
//! exactly when `sim::migrate` succeeds, and predicts its errno and kernel log lines.

use cryptopass::ap::{ApFunctions, Apqn, Mask, Matrix};
use cryptopass::compat::{self, RuleChoice};
use cryptopass::sim::{self, Kernel, Profile};
use proptest::prelude::*;

const U: &str = "4b1d0000-0000-4000-8000-0000000000dd";
const OTHER: &str = "4b1d0000-0000-4000-8000-0000000000ee";

const FUNCS: [u32; 6] = [0x9280_0000, 0x9240_0000, 0x8680_0000, 0xEA00_0000, 0x1280_0000, 0x9380_0000];

#[derive(Debug, Clone)]
struct HostSpec {
    types: [u8; 3],
    funcs: [usize; 3],
    vfio_adapters: u8, // bitmask of adapters 0..2 given to vfio_ap
    chkstop: Option<(u8, u8)>,
    se: Option<(u8, u8, u8)>,
    control_missing: Option<u8>,
    mdev: Option<(u8, u8, u8)>, // adapters bits, domains bits, control bits
    other: Option<(u8, u8)>,
    migratable: bool,
    stream: Option<&'static str>,
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (
        proptest::array::uniform3(12u8..15),
        proptest::array::uniform3(prop_oneof![4 => Just(0usize), 1 => 0usize..6]),
        prop_oneof![3 => Just(7u8), 1 => 0u8..8],
        proptest::option::weighted(0.15, (0u8..3, 0u8..4)),
        proptest::option::weighted(0.1, (0u8..3, 0u8..4, 1u8..4)),
        proptest::option::weighted(0.1, 0u8..4),
        proptest::option::weighted(0.9, (1u8..8, 1u8..16, 0u8..16)),
        proptest::option::weighted(0.15, (1u8..8, 1u8..16)),
        prop_oneof![5 => Just(true), 1 => Just(false)],
        prop_oneof![4 => Just(None), 1 => Just(Some("v4")), 1 => Just(Some("v5"))],
    )
        .prop_map(
            |(types, funcs, vfio_adapters, chkstop, se, control_missing, mdev, other, migratable, stream)| HostSpec {
                types,
                funcs,
                vfio_adapters,
                chkstop,
                se,
                control_missing,
                mdev,
                other,
                migratable,
                stream,
            },
        )
}

fn bits(b: u8, n: u8) -> Mask {
    Mask::from_ids((0..n).filter(|i| b & (1 << i) != 0))
}

fn build(profile: Profile, h: &HostSpec) -> Kernel {
    let mut k = Kernel::new(profile);
    k.vfio_ap_stream = h.stream.map(String::from);
    k.max_domain_id = 15;
    k.cfg_usage = Mask::from_ids(0..4);
    k.cfg_control = Mask::from_ids(0..4);
    if let Some(d) = h.control_missing {
        k.cfg_control.set(d, false);
    }
    for a in 0..3u8 {
        k.cards.insert(
            a,
            sim::kernel::SimCard {
                raw_type: h.types[a as usize],
                hwtype: h.types[a as usize],
                functions: ApFunctions(FUNCS[h.funcs[a as usize]]),
                online: true,
                config: true,
                chkstop: false,
                depth: 8,
            },
        );
    }
    k.cfg_adapters = Mask::from_ids(0..3);
    k.apmask = Mask::full().and_not(&bits(h.vfio_adapters, 3));
    if let Some((a, d)) = h.chkstop {
        k.queues.entry(Apqn::new(a, d)).or_default().chkstop = Some(true);
    }
    if let Some((a, d, s)) = h.se {
        let f = FUNCS[h.funcs[a as usize]] | (u32::from(s) << 14);
        k.queues.entry(Apqn::new(a, d)).or_default().functions = Some(ApFunctions(f));
    }
    if let Some((oa, od)) = h.other {
        k.store_create(OTHER).unwrap();
        let _ = k.store_ap_config(OTHER, &Matrix::new(bits(oa, 3), bits(od, 4), Mask::empty()).ap_config_string());
    }
    if let Some((a, d, c)) = h.mdev {
        k.store_create(U).unwrap();
        let _ = k.store_ap_config(U, &Matrix::new(bits(a, 3), bits(d, 4), bits(c, 4)).ap_config_string());
        if profile == Profile::MigV1 && h.migratable {
            k.store_migratable(U, "1").unwrap();
        }
    }
    k
}

/// Trees on tmpfs when the machine has one: the property runs hundreds of dumps.
fn shm() -> std::path::PathBuf {
    let p = std::path::Path::new("/dev/shm");
    if p.is_dir() { p.to_path_buf() } else { std::env::temp_dir() }
}

fn inventory(k: &Kernel) -> cryptopass::ap::Inventory {
    let dir = tempfile::Builder::new().tempdir_in(shm()).unwrap();
    let tree = dir.path().join("t");
    sim::dump::dump(k, &tree).unwrap();
    cryptopass::sysfs::read_inventory(&tree).unwrap()
}

/// `same`: the target's mdev gets the source's matrix (the usual case: we prepared it).
fn agree(profile: Profile, s: &HostSpec, t: &HostSpec, same: bool) -> Result<(), TestCaseError> {
    let mut t = t.clone();
    if same && t.mdev.is_some() {
        t.mdev = s.mdev;
    }
    let t = &t;
    let src = build(profile, s);
    let mut tgt = build(profile, t);
    let v = compat::verdict(&inventory(&src), &inventory(&tgt), U, RuleChoice::Auto);
    let r = sim::migrate(&src, &mut tgt, U);
    if std::env::var_os("CRYPTOPASS_PROPTEST_STATS").is_some() {
        eprintln!(
            "STAT {:?} {:?} {:?}",
            r.errno,
            r.console.as_deref().map(|c| &c[..20.min(c.len())]),
            v.reasons.first().map(|r| r.code)
        );
    }
    prop_assert_eq!(v.compatible, r.is_ok(), "verdict {:#?}\nkernel {:#?}", v, r);
    if r.errno.is_some() {
        prop_assert_eq!(v.errno, r.errno, "verdict {:#?}\nkernel {:#?}", v, r);
        prop_assert_eq!(&v.kernel_log, &r.kernel_log);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("CRYPTOPASS_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96)))]

    #[test]
    fn compat_agrees_with_the_v1_kernel(s in host_spec(), t in host_spec(), same in any::<bool>()) {
        agree(Profile::MigV1, &s, &t, same)?;
    }

    #[test]
    fn compat_agrees_with_the_latest_kernel(s in host_spec(), t in host_spec(), same in any::<bool>()) {
        agree(Profile::MigLatest, &s, &t, same)?;
    }

    #[test]
    fn a_host_agrees_with_itself(s in host_spec()) {
        agree(Profile::MigLatest, &s, &s, true)?;
    }
}
