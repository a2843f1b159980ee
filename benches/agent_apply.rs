//! Agent benchmark (issue 4): configure a 16-APQN mdev (4 adapters × 4 domains, one aqmask edit,
//! create, one `ap_config` write) from scratch on the simulator through FUSE, in process and as
//! the `cryptopass` binary; and, for comparison, the real `mdevctl start` of the same mdev from
//! its definition on the same simulator (create + 8 assign writes), when `CRYPTOPASS_MDEVCTL`
//! names the binary. Goal: the in-process apply < 50 ms.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::Mounted;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use cryptopass::agent::{ApplyOptions, Desired, DesiredMdev, MaskMode, OwnershipStore, RootDir, apply, mdevctl};
use cryptopass::ap::Mask;
use cryptopass::sim::{self, Kernel};

const U: &str = "4b1d0000-0000-4000-8000-00000000be4c";

fn host() -> Kernel {
    let cards: String = (0..4).map(|i| format!("  - {{ id: {i}, type: CEX8, mode: CCA }}\n")).collect();
    let yaml = format!("kernel: {{ profile: mig-latest, release: 6.19.0 }}\nusageDomains: [\"0-15\"]\ncards:\n{cards}");
    Kernel::from_yaml(&yaml, None, "bench").expect("machine")
}

fn desired() -> Desired {
    Desired::new(vec![DesiredMdev::new(U, &[0, 1, 2, 3], &[0, 1, 2, 3], &[0], false)])
}

fn reset(m: &Mounted, k: &Kernel, state: &Path) {
    sim::lock(&m.sim).kernel = k.clone();
    let _ = std::fs::remove_file(state.join("ownership.json"));
}

fn bench(c: &mut Criterion) {
    let fresh = host();
    let m = Mounted::new(fresh.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let d = desired();
    let opts = ApplyOptions { mode: MaskMode::Manage, dry_run: false, mdevctl_dir: None };
    let mut g = c.benchmark_group("agent");
    g.sample_size(30);

    // What one pass spends reading the host, and planning (the rest is writes and the record).
    g.bench_function("read the inventory of the same host (FUSE)", |b| {
        b.iter(|| cryptopass::sysfs::read_inventory(m.root()).expect("inventory"))
    });
    let inv = cryptopass::sysfs::read_inventory(m.root()).expect("inventory");
    g.bench_function("plan the 16-APQN mdev (pure)", |b| {
        b.iter(|| cryptopass::agent::plan(&d, &inv, &Default::default(), MaskMode::Manage))
    });

    g.bench_function("apply 16-APQN mdev from scratch (in process, FUSE)", |b| {
        b.iter_batched(
            || reset(&m, &fresh, &state),
            |()| {
                let r = apply(&RootDir::new(m.root()), &OwnershipStore::new(&state), &d, &opts).expect("apply");
                assert_eq!(r.exit_code(), 0);
            },
            BatchSize::PerIteration,
        )
    });

    let file = dir.path().join("desired.json");
    std::fs::write(&file, serde_json::to_string(&d).expect("json")).expect("desired");
    g.bench_function("apply 16-APQN mdev from scratch (cryptopass binary)", |b| {
        b.iter_batched(
            || reset(&m, &fresh, &state),
            |()| {
                let st = Command::new(env!("CARGO_BIN_EXE_cryptopass"))
                    .args(["agent", "apply", "--sysfs-root"])
                    .arg(m.root())
                    .arg("--desired")
                    .arg(&file)
                    .arg("--state-dir")
                    .arg(&state)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run");
                assert!(st.success());
            },
            BatchSize::PerIteration,
        )
    });

    match std::env::var_os("CRYPTOPASS_MDEVCTL") {
        None => eprintln!("CRYPTOPASS_MDEVCTL is not set: skipping the mdevctl start comparison"),
        Some(bin) => {
            // The same mdev from its definition: the queues already belong to vfio_ap (as after
            // a boot with ap.aqmask= on the kernel command line).
            let mut ready = fresh.clone();
            ready.aqmask = Mask::full().and_not(&Mask::from_ids(0..4));
            let root = dir.path().join("root");
            for s in ["etc/mdevctl.d/scripts.d/callouts", "etc/mdevctl.d/scripts.d/notifiers"] {
                std::fs::create_dir_all(root.join(s)).expect("dirs");
            }
            for s in ["usr/lib/mdevctl/scripts.d/callouts", "usr/lib/mdevctl/scripts.d/notifiers"] {
                std::fs::create_dir_all(root.join(s)).expect("dirs");
            }
            std::os::unix::fs::symlink(m.root(), root.join("sys")).expect("link");
            let def = mdevctl::definition(&d.mdevs[0].matrix(), None);
            mdevctl::write(&root.join("etc/mdevctl.d"), U, &def).expect("definition");
            g.bench_function("mdevctl start of the same mdev (real mdevctl)", |b| {
                b.iter_batched(
                    || sim::lock(&m.sim).kernel = ready.clone(),
                    |()| {
                        let out = Command::new(&bin)
                            .args(["start", "-u", U])
                            .env("MDEVCTL_ENV_ROOT", &root)
                            .output()
                            .expect("mdevctl");
                        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
    let k = sim::lock(&m.sim).kernel.clone();
    assert!(k.mdevs.get(U).is_some_and(|x| x.matrix.apqns().len() == 16), "the last run made the mdev");
}

criterion_group!(benches, bench);
criterion_main!(benches);
