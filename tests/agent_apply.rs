//! The agent's promises through the FUSE simulator: random hosts converge to the desired mdevs,
//! foreign state is untouched, conflicts are refused with the kernel's errno, a second pass
//! writes nothing.

mod agent_common;
mod common;

use agent_common::*;
use common::*;
use cryptopass::agent::report::State;
use cryptopass::agent::{Code, Desired, DesiredMdev, MaskMode};
use cryptopass::ap::Mask;
use cryptopass::sim::Kernel;
use proptest::prelude::*;

fn machine(profile: &str, cards: &[u8], online: bool) -> Kernel {
    let cards: Vec<String> =
        cards.iter().map(|c| format!("  - {{ id: {c}, type: CEX8, mode: CCA, online: {online} }}")).collect();
    let y = format!(
        "kernel: {{ profile: {profile} }}\nmaxAdapterId: 15\nmaxDomainId: 15\nusageDomains: [\"0-7\"]\ncards:\n{}\n",
        cards.join("\n")
    );
    Kernel::from_yaml(&y, None, "test").expect("machine")
}

/// `small_machine` with every host queue offline: mask edits may move them (no online collateral).
fn quiet_machine(profile: &str) -> Mounted {
    let mut k = Kernel::from_yaml(&small_machine(profile), None, "test").expect("machine");
    k.cards.values_mut().for_each(|c| c.online = false);
    Mounted::new(k)
}

#[test]
fn two_desired_mdevs_wanting_one_apqn_one_wins_the_other_is_refused_with_eaddrinuse() {
    let m = quiet_machine("mig-latest");
    let state = tempfile::tempdir().unwrap();
    let d = Desired::new(vec![
        DesiredMdev::new(U1, &[0, 1], &[5], &[], false),
        DesiredMdev::new(U2, &[1], &[5, 6], &[], false),
    ]);
    let r = apply_in(&m, state.path(), &d, MaskMode::Manage);
    assert_eq!(r.mdevs[0].state, State::Synced);
    let reason = r.mdevs[1].reason.clone().expect("a reason");
    assert_eq!(
        (r.mdevs[1].state, reason.code, reason.errno.as_deref()),
        (State::Refused, Code::ApqnConflict, Some("EADDRINUSE"))
    );
    assert_eq!(reason.apqns, vec![apqn(1, 5)]);
    assert_eq!(r.exit_code(), 1);
    let k = kernel(&m);
    assert!(!k.mdevs.contains_key(U2), "the loser is not created");
    assert_eq!(k.mdevs[U1].matrix, mx(&[0, 1], &[5], &[]));
}

#[test]
fn a_second_apply_performs_zero_writes() {
    for profile in ["base", "mig-v1", "mig-latest"] {
        let m = quiet_machine(profile);
        let state = tempfile::tempdir().unwrap();
        let d = Desired::new(vec![
            DesiredMdev::new(U1, &[0, 1], &[5, 6], &[5], true),
            DesiredMdev::new(U2, &[2], &[0x20], &[], false),
        ]);
        let first = apply_in(&m, state.path(), &d, MaskMode::Manage);
        assert_eq!(first.exit_code(), 0, "{profile}: {}", first.text());
        let n = writes(&m);
        assert!(n > 0);
        let again = apply_in(&m, state.path(), &d, MaskMode::Manage);
        assert_eq!(writes(&m), n, "{profile}: second pass wrote {:?}", again.plan);
        assert!(again.plan.is_empty() && again.exit_code() == 0);
        // the same through the real binary
        assert_eq!(apply_bin(&m, state.path(), &d, MaskMode::Manage), Some(0));
        assert_eq!(writes(&m), n, "{profile}: the binary wrote");
    }
}

#[test]
fn removal_gives_the_bits_back_and_an_mdev_in_use_waits() {
    let m = quiet_machine("mig-latest");
    let state = tempfile::tempdir().unwrap();
    let d = Desired::new(vec![DesiredMdev::new(U1, &[0, 1], &[5], &[], false)]);
    assert_eq!(apply_in(&m, state.path(), &d, MaskMode::Manage).exit_code(), 0);
    let cleared = ownership(state.path());
    assert!(!cleared.apmask_cleared.or(&cleared.aqmask_cleared).is_empty());
    cryptopass::sim::lock(&m.sim).kernel.mdevs.get_mut(U1).unwrap().in_use = true;
    let r = apply_in(&m, state.path(), &Desired::default(), MaskMode::Manage);
    assert_eq!((r.mdevs[0].state, r.exit_code()), (State::Waiting, 1));
    assert!(kernel(&m).mdevs.contains_key(U1));
    cryptopass::sim::lock(&m.sim).kernel.mdevs.get_mut(U1).unwrap().in_use = false;
    let r = apply_in(&m, state.path(), &Desired::default(), MaskMode::Manage);
    assert_eq!((r.mdevs[0].state, r.exit_code()), (State::Removed, 0));
    let k = kernel(&m);
    assert!(k.apmask.is_full() && k.aqmask.is_full(), "bits given back");
    assert_eq!(ownership(state.path()), Default::default());
}

#[test]
fn override_hosts_use_driver_override_and_give_it_back() {
    let m = Mounted::yaml(&small_machine("override"));
    let state = tempfile::tempdir().unwrap();
    let d = Desired::new(vec![DesiredMdev::new(U1, &[0, 1], &[5], &[5], true)]);
    let r = apply_in(&m, state.path(), &d, MaskMode::Override);
    assert_eq!(r.exit_code(), 0, "{}", r.text());
    let k = kernel(&m);
    assert!(k.apmask.is_full() && k.aqmask.is_full(), "masks never written");
    assert_eq!(k.driver_override(apqn(1, 5)), "vfio_ap");
    apply_in(&m, state.path(), &Desired::default(), MaskMode::Override);
    let k = kernel(&m);
    assert!(k.mdevs.is_empty() && !k.any_override());
}

#[derive(Debug, Clone)]
struct Case {
    profile: &'static str,
    mode: MaskMode,
    cards: Vec<u8>,
    online: bool,
    apmask_clear: Vec<u8>,
    aqmask_clear: Vec<u8>,
    foreign: Vec<(Vec<u8>, Vec<u8>, bool)>,
    first: Vec<DesiredMdev>,
    in_use: Vec<bool>,
    second: Vec<DesiredMdev>,
}

fn ids(max: u8, n: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::btree_set(0..=max, 0..=n).prop_map(|s| s.into_iter().collect())
}

fn desired() -> impl Strategy<Value = Vec<DesiredMdev>> {
    proptest::collection::vec((1u8..=5, ids(9, 3), ids(17, 3), ids(9, 2), any::<bool>()), 0..=4)
        .prop_map(|v| v.into_iter().map(|(n, a, d, c, mig)| DesiredMdev::new(&uuid(n), &a, &d, &c, mig)).collect())
}

fn case() -> impl Strategy<Value = Case> {
    let profile = prop_oneof![Just("base"), Just("mig-v1"), Just("mig-latest"), Just("override")];
    (
        profile,
        any::<bool>(),
        ids(7, 5),
        any::<bool>(),
        ids(7, 2),
        ids(7, 2),
        proptest::collection::vec((ids(7, 2), ids(7, 2), any::<bool>()), 0..=2),
        desired(),
        proptest::collection::vec(any::<bool>(), 5),
        desired(),
    )
        .prop_map(|(profile, observe, cards, online, apc, aqc, foreign, first, in_use, second)| {
            let mode = match (profile, observe) {
                ("override", _) => MaskMode::Override,
                (_, true) => MaskMode::Observe,
                _ => MaskMode::Manage,
            };
            let (apmask_clear, aqmask_clear) = if profile == "override" { (vec![], vec![]) } else { (apc, aqc) };
            Case { profile, mode, cards, online, apmask_clear, aqmask_clear, foreign, first, in_use, second }
        })
}

/// The starting host: masks, foreign mdevs (with their queues handed over the way the host's
/// profile does it), nothing of ours.
fn start(c: &Case) -> Kernel {
    let mut k = machine(c.profile, &c.cards, c.online);
    k.apmask = Mask::full().and_not(&Mask::from_ids(c.apmask_clear.iter().copied()));
    k.aqmask = Mask::full().and_not(&Mask::from_ids(c.aqmask_clear.iter().copied()));
    for (i, (a, d, in_use)) in c.foreign.iter().enumerate() {
        let mut mtx = mx(a, d, &[]);
        if c.profile == "override" {
            // only existing queues can be overridden
            mtx.adapters = mtx.adapters.and(&Mask::from_ids(c.cards.iter().copied()));
            mtx.domains = mtx.domains.and(&k.cfg_usage);
        }
        if k.mdevs.values().any(|o| mtx.apqns().iter().any(|q| o.matrix.contains(*q))) {
            continue;
        }
        for q in mtx.apqns() {
            if c.profile == "override" {
                k.queues.entry(q).or_default().driver_override = "vfio_ap".into();
            } else if k.host_owned(q) {
                k.apmask.set(q.apid, false);
            }
        }
        add_foreign(&mut k, &uuid(0xf0 + i as u8), mtx, *in_use);
    }
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_hosts_converge_to_every_satisfiable_mdev_and_leave_the_rest_alone(c in case()) {
        let m = Mounted::new(start(&c));
        let state = tempfile::tempdir().unwrap();
        let mut last_own = ownership(state.path());
        for (round, d) in [c.first.clone(), c.second.clone()].into_iter().enumerate() {
            let d = Desired::new(d);
            let before = kernel(&m);
            let r = apply_in(&m, state.path(), &d, c.mode);
            let after = kernel(&m);
            let own = ownership(state.path());
            let ctx = || format!("round {round}\n{}", r.text());
            prop_assert!(r.errors.is_empty(), "{}", ctx());
            let mut either = own.clone();
            either.mdevs.extend(last_own.mdevs.iter().cloned());
            check_report(&after, &before, &either, &d, &r).map_err(|e| TestCaseError::fail(format!("{e}\n{}", ctx())))?;
            no_held_queue_is_host_owned(&after).map_err(TestCaseError::fail)?;
            ours_exact_or_absent(&after, &before, &own, &d, Some(&r)).map_err(|e| TestCaseError::fail(format!("{e}\n{}", ctx())))?;
            only_recorded_bits_changed(&before, &after, &last_own, &own).map_err(TestCaseError::fail)?;
            let n = writes(&m);
            let again = apply_in(&m, state.path(), &d, c.mode);
            prop_assert_eq!(writes(&m), n, "second pass wrote: {}", again.text());
            last_own = own;
            // between rounds a guest may take some of our mdevs
            // (a guest's use shows in sysfs only through the `status` of a queue bound to vfio_ap)
            let mut s = cryptopass::sim::lock(&m.sim);
            let k = s.kernel.clone();
            for (u, md) in s.kernel.mdevs.iter_mut() {
                if last_own.owns_mdev(u) && md.matrix.apqns().iter().any(|q| k.bound_to_vfio(*q)) {
                    md.in_use = c.in_use[u.as_bytes()[35] as usize % 5];
                }
            }
        }
    }
}

#[test]
fn the_cli_exits_0_when_all_is_as_desired_1_on_refusals_2_on_usage_or_read_errors_and_dry_runs_write_nothing() {
    let m = quiet_machine("mig-latest");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cryptopass")).args(args).output().expect("run cryptopass")
    };
    let root = m.root().to_str().unwrap().to_string();
    let st = state.to_str().unwrap().to_string();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ok = file("ok.yaml", &format!("mdevs:\n  - {{ uuid: {U1}, adapters: [0, 1], domains: [5] }}\n"));
    let conflict = file(
        "c.json",
        &format!(
            r#"[{{"uuid":"{U1}","adapters":[0,1],"domains":[5]}},{{"uuid":"{U2}","adapters":[1],"domains":[5]}}]"#
        ),
    );
    let bad = file("bad.yaml", "- { uuid: nope }\n");

    let dry = run(&[
        "agent",
        "apply",
        "--sysfs-root",
        &root,
        "--desired",
        &ok,
        "--state-dir",
        &st,
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_eq!(dry.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!((j["dryRun"].as_bool(), j["plan"].as_array().map(|p| p.len())), (Some(true), Some(3)));
    assert_eq!(j["mdevs"][0]["state"], "planned");
    assert_eq!(writes(&m), 0, "a dry run writes nothing");
    assert!(!state.exists(), "nor the ownership record");

    let out = run(&["agent", "apply", "--sysfs-root", &root, "--desired", &conflict, "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ApqnConflict (EADDRINUSE)"), "{text}");
    let out = run(&["agent", "apply", "--sysfs-root", &root, "--desired", &ok, "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    let out = run(&["agent", "apply", "--sysfs-root", &root, "--desired", &bad, "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"));
    let empty = dir.path().join("no-sysfs");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["agent", "apply", "--sysfs-root", empty.to_str().unwrap(), "--desired", &ok, "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["agent", "apply", "--desired", &ok, "--ap-masks", "sometimes"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}
