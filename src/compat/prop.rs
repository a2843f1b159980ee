//! Random hosts: the engine never panics and its answer is self-consistent.

use proptest::prelude::*;

use crate::ap::functions::{FACILITIES, SE_STATE};
use crate::ap::inventory::{HOST_QUEUE_DRIVER, VFIO_AP_DRIVER};
use crate::ap::{ApFunctions, Apqn, Card, Inventory, Mask, Matrix, Queue, kmsg};

use super::testkit::{OTHER, UUID, mdev};
use super::*;

/// xorshift64*: a whole host from one seed, small id spaces so that hosts overlap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn mask(&mut self) -> Mask {
        Mask::from_ids((0..6u8).filter(|_| self.chance(40)))
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn functions(&mut self) -> ApFunctions {
        let mut f = 0u32;
        for fac in &FACILITIES {
            if self.chance(30) {
                f |= fac.mask;
            }
        }
        if self.chance(10) {
            f |= 0x0008_0000; // an unnamed bit
        }
        if self.chance(15) {
            f |= SE_STATE & (self.next() as u32);
        }
        ApFunctions(f)
    }
    fn matrix(&mut self) -> Matrix {
        Matrix::new(self.mask(), self.mask(), self.mask())
    }
}

fn host(seed: u64) -> Inventory {
    let mut r = Rng(seed | 1);
    let mut inv = Inventory::default();
    let mut features = vec!["guest_matrix".to_string(), "ap_config".into()];
    if r.chance(85) {
        features.push("migratable".into());
    }
    inv.kernel.matrix_features = r.chance(95).then_some(features);
    inv.kernel.se_guest = [None, Some(false), Some(true)][r.below(3) as usize];
    inv.kernel.release = r.chance(70).then(|| r.pick(&["6.20.0", "6.21.0"]).to_string());
    inv.kernel.vfio_ap_stream = r.chance(40).then(|| r.pick(&["v1", "v4", "v5"]).to_string());
    inv.max_adapter_id = if r.chance(80) { 255 } else { 3 };
    inv.max_domain_id = if r.chance(80) { 84 } else { 3 };
    inv.apmask = r.mask();
    inv.aqmask = r.mask();
    inv.config.control_domains = r.chance(70).then(|| r.mask());
    for a in 0..6u8 {
        if r.chance(70) {
            let raw = 10 + r.below(7) as u8;
            let functions = r.functions().card_visible();
            let card = Card {
                id: a,
                type_name: "CEX8C".into(),
                hwtype: raw.min(14),
                raw_hwtype: raw,
                functions,
                online: true,
                config: true,
                chkstop: false,
                depth: None,
                driver: None,
            };
            inv.cards.insert(a, card);
        }
        for d in 0..6u8 {
            if r.chance(75) {
                let apqn = Apqn::new(a, d);
                let queue = Queue {
                    apqn,
                    driver: [Some(VFIO_AP_DRIVER.to_string()), Some(HOST_QUEUE_DRIVER.into()), None]
                        [r.below(3) as usize]
                        .clone(),
                    functions: r.chance(85).then(|| r.functions()),
                    online: None,
                    config: r.chance(90),
                    chkstop: r.chance(10),
                    status: None,
                    driver_override: r
                        .chance(30)
                        .then(|| r.pick(&["", "\n", VFIO_AP_DRIVER, HOST_QUEUE_DRIVER]).to_string()),
                };
                inv.queues.insert(apqn, queue);
            }
        }
    }
    for uuid in [UUID, OTHER] {
        if r.chance(if uuid == UUID { 85 } else { 40 }) {
            let mut m = mdev(uuid, r.matrix(), [None, Some(false), Some(true)][r.below(3) as usize]);
            if r.chance(30) {
                m.guest_matrix = r.matrix();
            }
            inv.mdevs.insert(uuid.to_string(), m);
        }
    }
    inv
}

fn consistent(v: &Verdict) -> Result<(), TestCaseError> {
    prop_assert_eq!(v.compatible, v.reasons.is_empty());
    if v.compatible {
        prop_assert!(v.errno.is_none() && v.kernel_log.is_empty() && v.console.is_none(), "{:#?}", v);
    }
    if let Some(e) = v.errno {
        prop_assert_eq!(v.console.clone(), Some(kmsg::console_load_failed(e)));
    }
    if !v.kernel_log.is_empty() {
        prop_assert!(v.errno.is_some());
    }
    let warning = |c: ReasonCode| matches!(c, ReasonCode::KernelReleasesDiffer | ReasonCode::MasterKeyMismatch);
    prop_assert!(v.reasons.iter().all(|r| !warning(r.code)));
    prop_assert!(v.warnings.iter().all(|r| warning(r.code)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_hosts_never_panic_and_compatible_means_no_reason(a in any::<u64>(), b in any::<u64>()) {
        let (s, t) = (host(a), host(b));
        for choice in [RuleChoice::Auto, RuleChoice::V1, RuleChoice::Latest] {
            consistent(&verdict(&s, &t, UUID, choice))?;
            consistent(&verdict(&t, &s, UUID, choice))?;
        }
        prop_assert_eq!(equivalent(&s, &t, UUID), equivalent(&t, &s, UUID));
        let upper = verdict(&s, &t, &UUID.to_uppercase(), RuleChoice::Auto);
        prop_assert_eq!(upper, verdict(&s, &t, UUID, RuleChoice::Auto));
    }

    #[test]
    fn a_host_with_usable_queues_migrates_to_its_own_copy(a in any::<u64>()) {
        let mut h = host(a);
        // Make the copy a clean, migratable, non-SE latest host whose guest queues are usable.
        h.kernel.matrix_features = Some(vec!["migratable".into()]);
        h.kernel.se_guest = Some(false);
        h.apmask = Mask::empty();
        h.config.control_domains = None;
        h.max_adapter_id = 255;
        h.max_domain_id = 84;
        h.mdevs.retain(|u, _| u == UUID);
        if let Some(m) = h.mdevs.get_mut(UUID) {
            m.migratable = None;
            m.guest_matrix = m.matrix;
            for q in m.matrix.apqns() {
                let queue = h.queues.entry(q).or_insert_with(|| super::testkit::vfio_queue(q, ApFunctions(0)));
                queue.driver = Some(VFIO_AP_DRIVER.into());
                queue.driver_override = None;
                let f = queue.functions.unwrap_or_default();
                queue.functions = Some(ApFunctions(f.0 & !SE_STATE));
            }
            let v = verdict(&h, &h, UUID, RuleChoice::Auto);
            prop_assert!(v.compatible, "{:#?}", v);
        }
    }
}
