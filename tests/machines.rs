//! The example machine files in `hack/machines/` parse as `Machine` (unknown fields are refused)
//! and say what their comment headers claim.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cryptopass::ap::Mask;
use cryptopass::sim::Profile;
use cryptopass::sim::machine::{Machine, Mode};

fn machines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/machines")
}

/// Every `*.yaml` of hack/machines, by file stem.
fn load_all() -> BTreeMap<String, Machine> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(machines_dir()).expect("hack/machines exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let m: Machine = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.insert(path.file_stem().unwrap().to_string_lossy().into_owned(), m);
    }
    out
}

fn ids(m: &Mask) -> Vec<u8> {
    (0..=255u8).filter(|i| m.get(*i)).collect()
}

fn machine(all: &BTreeMap<String, Machine>, name: &str) -> Machine {
    all.get(name).unwrap_or_else(|| panic!("hack/machines/{name}.yaml is missing")).clone()
}

#[test]
fn every_machine_file_parses_and_is_consistent() {
    let all = load_all();
    for name in ["z16-cca", "z16-b", "z15-cex7", "z16-v1", "z14-base", "z16-override"] {
        machine(&all, name);
    }
    let mut hostnames = Vec::new();
    for (name, m) in &all {
        assert!(!m.cards.is_empty(), "{name}: no cards");
        assert!(!m.usage_domains.0.is_empty(), "{name}: no usage domains");
        hostnames.push(m.hostname.clone().unwrap_or_else(|| panic!("{name}: no hostname")));

        let mut card_ids = Vec::new();
        for c in &m.cards {
            assert!(c.id <= m.max_adapter_id, "{name}: card {:#04x} above maxAdapterId", c.id);
            assert!((10..=14).contains(&c.raw_type.0), "{name}: card {:#04x} has no type vfio_ap binds", c.id);
            card_ids.push(c.id);
        }
        let mut unique = card_ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), card_ids.len(), "{name}: duplicate card ids");
        for a in ids(&m.extra_adapters.0) {
            assert!(a <= m.max_adapter_id && !card_ids.contains(&a), "{name}: extra adapter {a:#04x}");
        }

        let domains = [Some(&m.usage_domains), m.control_domains.as_ref()];
        for d in domains.into_iter().flatten().flat_map(|l| ids(&l.0)) {
            assert!(d <= m.max_domain_id, "{name}: domain {d:#04x} above maxDomainId");
        }
        for q in &m.queues {
            assert!(card_ids.contains(&q.apqn.apid), "{name}: queue {} on a missing card", q.apqn);
            assert!(m.usage_domains.0.get(q.apqn.apqi), "{name}: queue {} outside the usage domains", q.apqn);
        }
        for mask in [&m.apmask, &m.aqmask].into_iter().flatten() {
            Mask::parse_absolute(mask).unwrap_or_else(|e| panic!("{name}: mask {mask:?}: {e:?}"));
        }
        for md in &m.mdevs {
            assert!(!md.adapters.0.is_empty() && !md.domains.0.is_empty(), "{name}: mdev {} is empty", md.uuid);
            assert!(ids(&md.adapters.0).iter().all(|a| *a <= m.max_adapter_id), "{name}: mdev adapters");
            assert!(ids(&md.domains.0).iter().all(|d| *d <= m.max_domain_id), "{name}: mdev domains");
            if md.migratable.is_some() {
                assert_eq!(m.kernel.profile, Profile::MigV1, "{name}: per-mdev migratable exists on v1 kernels only");
            }
        }
    }
    let n = hostnames.len();
    hostnames.sort();
    hostnames.dedup();
    assert_eq!(hostnames.len(), n, "hostnames must differ between machine files");
}

#[test]
fn the_machines_are_what_their_headers_say() {
    let all = load_all();

    let a = machine(&all, "z16-cca");
    assert_eq!(a.kernel.profile, Profile::MigLatest);
    assert_eq!(a.max_domain_id, 84);
    assert_eq!(ids(&a.usage_domains.0), (0..=84).collect::<Vec<u8>>());
    assert!(a.cards.iter().all(|c| c.raw_type.0 == 14), "z16: CEX8 cards only");
    for mode in [Mode::Cca, Mode::Ep11, Mode::Accel] {
        assert!(a.cards.iter().any(|c| c.mode == Some(mode)), "z16-cca lacks a {mode:?} card");
    }

    // z16-b is z16-cca under another name: the two ends of the migration demo.
    let mut b = machine(&all, "z16-b");
    assert_ne!(a.hostname, b.hostname);
    b.hostname = a.hostname.clone();
    assert_eq!(a, b, "z16-b must be equivalent to z16-cca");

    // z15: the same layout with an older AP type.
    let z15 = machine(&all, "z15-cex7");
    assert_eq!(z15.kernel, a.kernel);
    assert!(z15.cards.iter().all(|c| c.raw_type.0 == 13), "z15: CEX7 cards only");
    let layout = |m: &Machine| m.cards.iter().map(|c| (c.id, c.mode, c.functions())).collect::<Vec<_>>();
    assert_eq!(layout(&z15), layout(&a));
    assert_eq!((&z15.usage_domains, &z15.aqmask), (&a.usage_domains, &a.aqmask));

    let v1 = machine(&all, "z16-v1");
    assert_eq!(v1.kernel.profile, Profile::MigV1);
    assert_eq!(v1.mdevs.len(), 1);
    assert_eq!(v1.mdevs[0].migratable, Some(true));
    // Its queues are left to vfio_ap by the aqmask (bit clear), as an assigned mdev's must be.
    let aqmask = Mask::parse_absolute(v1.aqmask.as_deref().expect("z16-v1 sets aqmask")).unwrap();
    assert!(ids(&v1.mdevs[0].domains.0).iter().all(|d| !aqmask.get(*d)));

    let z14 = machine(&all, "z14-base");
    assert_eq!(z14.kernel.profile, Profile::Base);
    assert!(z14.cards.iter().all(|c| c.raw_type.0 == 12), "z14: CEX6 cards only");

    let ovr = machine(&all, "z16-override");
    assert_eq!(ovr.kernel.profile, Profile::Override);
    assert_eq!((&ovr.apmask, &ovr.aqmask), (&None, &None), "override hosts keep both masks all ones");
    let overrides: Vec<_> = ovr.queues.iter().filter(|q| q.driver_override.is_some()).collect();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].driver_override.as_deref(), Some("vfio_ap"));
}
