//! Random writes never panic the simulated kernel and never break its invariants: no APQN in two
//! mdevs' matrices, no mdev APQN owned by the host, failed writes change nothing.

use cryptopass::sim::Kernel;
use proptest::prelude::*;

const U1: &str = "4b1d0000-0000-4000-8000-000000000001";
const U2: &str = "4b1d0000-0000-4000-8000-000000000002";

fn machine() -> Kernel {
    Kernel::from_yaml(
        "kernel: { profile: mig-v1 }\nmaxAdapterId: 15\nmaxDomainId: 15\nusageDomains: [\"0-7\"]\ncards:\n  - { id: 0, type: CEX8 }\n  - { id: 1, type: CEX7 }\n  - { id: 3, type: CEX8, mode: EP11 }\n",
        None,
        "t",
    )
    .unwrap()
}

fn paths() -> Vec<String> {
    let mut v = vec![
        "bus/ap/apmask".to_string(),
        "bus/ap/aqmask".into(),
        "devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create".into(),
        "bus/ap/features".into(),
        "devices/ap/card00/online".into(),
    ];
    for u in [U1, U2] {
        for a in [
            "assign_adapter",
            "assign_domain",
            "assign_control_domain",
            "unassign_adapter",
            "unassign_domain",
            "ap_config",
            "migratable",
            "remove",
        ] {
            v.push(format!("devices/vfio_ap/matrix/{u}/{a}"));
        }
    }
    v
}

fn data() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..20).prop_map(|n| n.to_string()),
        (0u8..20).prop_map(|n| format!("{n:#x}")),
        Just(U1.to_string()),
        Just(U2.to_string()),
        (0u8..16, 0u8..16).prop_map(|(a, b)| format!("-{}-{}", a.min(b), a.max(b))),
        (0u8..16).prop_map(|a| format!("+{a}")),
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(a, d, c)| format!("0x{a:04x},0x{d:04x},0x{c:04x}")),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn random_writes_keep_the_kernel_consistent(ops in proptest::collection::vec((0usize..21, data()), 1..60)) {
        let mut k = machine();
        let paths = paths();
        for (i, d) in ops {
            let before = k.clone();
            let r = k.write(&paths[i % paths.len()], &d);
            if r.is_err() {
                let mut b = before.clone();
                b.log = k.log.clone(); // failures may log, nothing else changes
                prop_assert_eq!(&k, &b, "failed write {} {:?} changed state", paths[i % paths.len()], d);
            }
            let mdevs: Vec<_> = k.mdevs.iter().collect();
            for (i, (ua, a)) in mdevs.iter().enumerate() {
                for q in a.matrix.apqns() {
                    prop_assert!(!k.host_owned(q), "{} holds host-owned {}", ua, q);
                    for (ub, b) in &mdevs[i + 1..] {
                        prop_assert!(!b.matrix.contains(q), "{} shared by {} and {}", q, ua, ub);
                    }
                }
            }
        }
    }

    #[test]
    fn machine_file_parsing_never_panics(s in "\\PC{0,200}") {
        let _ = Kernel::from_yaml(&s, None, "fuzz");
    }

    #[test]
    fn mutated_machine_files_never_panic(cut in 0usize..300, junk in "[ -~]{0,10}") {
        let base = "kernel: { profile: mig-latest }\nmaxDomainId: 15\nusageDomains: [\"0-7\"]\ncards:\n  - { id: 0, type: CEX8 }\nqueues:\n  - { apqn: \"00.0001\", seState: 2 }\nmdevs:\n  - { uuid: 4b1d0000-0000-4000-8000-000000000001, adapters: [0], domains: [1] }\n";
        let at = cut.min(base.len());
        let s = format!("{}{}{}", &base[..at], junk, &base[at..]);
        let _ = Kernel::from_yaml(&s, None, "fuzz");
    }
}
