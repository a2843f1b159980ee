//! Foundation benchmarks (issue 3): verdicts for 100 targets × 1,024 APQNs, inventory of a
//! 16-card × 85-domain host from a tree and through FUSE, and a FUSE read/write round trip.

use std::hint::black_box;
use std::io::{Read, Seek, Write};

use criterion::{Criterion, criterion_group, criterion_main};
use cryptopass::ap::{Mask, Matrix};
use cryptopass::compat::{self, RuleChoice};
use cryptopass::sim::{self, Kernel, Sim};

const U: &str = "4b1d0000-0000-4000-8000-00000000be4c";

/// A 16-card × 85-domain z16 with every queue given to vfio_ap.
fn big_host(profile: &str, with_mdev: bool, domains: u8) -> Kernel {
    let cards: String = (0..16).map(|i| format!("  - {{ id: {i}, type: CEX8, mode: CCA }}\n")).collect();
    let yaml = format!(
        "kernel: {{ profile: {profile}, release: 6.19.0 }}\nmaxDomainId: 84\nusageDomains: [\"0-84\"]\napmask: \"0x0000\"\ncards:\n{cards}"
    );
    let mut k = Kernel::from_yaml(&yaml, None, "bench").expect("machine");
    if with_mdev {
        k.store_create(U).expect("create");
        let m = Matrix::new(Mask::from_ids(0..16), Mask::from_ids(0..domains), Mask::from_ids(0..domains));
        k.store_ap_config(U, &m.ap_config_string()).expect("ap_config");
    }
    k
}

fn verdicts(c: &mut Criterion) {
    // 16 adapters × 64 domains = 1,024 APQNs
    let src = big_host("mig-latest", true, 64);
    let tgt = big_host("mig-latest", true, 64);
    let dir = tempfile::tempdir().expect("tmp");
    sim::dump::dump(&src, &dir.path().join("s")).expect("dump");
    sim::dump::dump(&tgt, &dir.path().join("t")).expect("dump");
    let s = cryptopass::sysfs::read_inventory(&dir.path().join("s")).expect("inv");
    let t = cryptopass::sysfs::read_inventory(&dir.path().join("t")).expect("inv");
    let targets: Vec<_> = (0..100).map(|_| t.clone()).collect();
    c.bench_function("verdicts 100 targets x 1024 APQNs", |b| {
        b.iter(|| {
            for t in &targets {
                black_box(compat::verdict(&s, t, U, RuleChoice::Auto));
            }
        })
    });
}

fn inventory(c: &mut Criterion) {
    let k = big_host("mig-latest", true, 85);
    let dir = tempfile::tempdir().expect("tmp");
    let tree = dir.path().join("tree");
    sim::dump::dump(&k, &tree).expect("dump");
    c.bench_function("inventory 16 cards x 85 domains from a tree", |b| {
        b.iter(|| black_box(cryptopass::sysfs::read_inventory(&tree).expect("inv")))
    });
    let mnt = tempfile::tempdir().expect("tmp");
    let session = sim::fuse::mount(Sim::new(k).shared(), mnt.path()).expect("mount");
    c.bench_function("inventory 16 cards x 85 domains through FUSE", |b| {
        b.iter(|| black_box(cryptopass::sysfs::read_inventory(mnt.path()).expect("inv")))
    });
    drop(session);
}

fn fuse_round_trip(c: &mut Criterion) {
    let k = big_host("mig-latest", true, 4);
    let mnt = tempfile::tempdir().expect("tmp");
    let session = sim::fuse::mount(Sim::new(k).shared(), mnt.path()).expect("mount");
    let path = mnt.path().join(format!("devices/vfio_ap/matrix/{U}/assign_control_domain"));
    let read = mnt.path().join("bus/ap/apmask");
    c.bench_function("FUSE write round trip (assign_control_domain)", |b| {
        b.iter(|| {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
            f.write_all(b"5").expect("write");
        })
    });
    c.bench_function("FUSE read round trip (apmask)", |b| {
        let mut f = std::fs::File::open(&read).expect("open");
        let mut s = String::new();
        b.iter(|| {
            s.clear();
            f.rewind().expect("seek");
            f.read_to_string(&mut s).expect("read");
            black_box(&s);
        })
    });
    drop(session);
}

criterion_group!(benches, verdicts, inventory, fuse_round_trip);
criterion_main!(benches);
