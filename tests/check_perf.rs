//! The controller judges every candidate node against the active one on each reconcile: 100
//! targets × 1,024 APQNs must verdict in under 10 ms (release build; debug gets a loose bound).

use std::time::{Duration, Instant};

use cryptopass::ap::inventory::{Mdev, VFIO_AP_DRIVER};
use cryptopass::ap::{ApFunctions, Apqn, Card, Inventory, KernelInfo, Mask, Matrix, Queue};
use cryptopass::compat::{RuleChoice, verdict};

const UUID: &str = "4b1d3c2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

/// 32 adapters × 32 domains, all bound to vfio_ap and assigned to the mdev; `v1` adds the
/// per-mdev `migratable` attribute.
fn host(v1: bool, raw: u8) -> Inventory {
    let ids = Mask::from_ids(0..32);
    let mut inv = Inventory {
        kernel: KernelInfo {
            matrix_features: Some(vec!["guest_matrix".into(), "ap_config".into(), "migratable".into()]),
            ..Default::default()
        },
        max_adapter_id: 255,
        max_domain_id: 255,
        ..Default::default()
    };
    for a in 0..32u8 {
        inv.cards.insert(
            a,
            Card {
                id: a,
                type_name: "CEX8C".into(),
                hwtype: 14,
                raw_hwtype: raw,
                functions: ApFunctions(0x9280_0000),
                online: true,
                config: true,
                chkstop: false,
                depth: Some(8),
                driver: None,
            },
        );
        for d in 0..32u8 {
            let apqn = Apqn::new(a, d);
            inv.queues.insert(
                apqn,
                Queue {
                    apqn,
                    driver: Some(VFIO_AP_DRIVER.into()),
                    functions: Some(ApFunctions(0x9280_0000)),
                    online: None,
                    config: true,
                    chkstop: false,
                    status: None,
                    driver_override: None,
                },
            );
        }
    }
    let matrix = Matrix::new(ids, ids, ids);
    let mdev = Mdev {
        uuid: UUID.into(),
        matrix,
        guest_matrix: matrix,
        migratable: v1.then_some(true),
        in_use: false,
        iommu_group: None,
    };
    inv.mdevs.insert(UUID.into(), mdev);
    inv
}

fn best_of_three(source: &Inventory, targets: &[Inventory]) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut compatible = 0;
    for _ in 0..3 {
        let start = Instant::now();
        compatible = targets.iter().filter(|t| verdict(source, t, UUID, RuleChoice::Auto).compatible).count();
        best = best.min(start.elapsed());
    }
    (best, compatible)
}

#[test]
fn hundred_targets_of_1024_apqns_verdict_within_10_ms() {
    let budget = if cfg!(debug_assertions) { Duration::from_millis(1500) } else { Duration::from_millis(10) };
    for v1 in [false, true] {
        let source = host(v1, 14);
        let targets: Vec<_> = (0..100).map(|_| host(v1, 14)).collect();
        let (took, compatible) = best_of_three(&source, &targets);
        assert_eq!(compatible, 100);
        assert!(took < budget, "v1={v1}: 100 compatible verdicts took {took:?} (budget {budget:?})");
    }
}

#[test]
fn incompatible_targets_stay_fast_enough() {
    // Every APQN incompatible: messages are built per offending queue, which costs more.
    let source = host(false, 15);
    let targets: Vec<_> = (0..100).map(|_| host(false, 14)).collect();
    let (took, compatible) = best_of_three(&source, &targets);
    assert_eq!(compatible, 0);
    let budget = if cfg!(debug_assertions) { Duration::from_secs(10) } else { Duration::from_millis(500) };
    assert!(took < budget, "100 incompatible verdicts took {took:?}");
}
