//! Fault injection: for representative plans, every write point N is made to fail (with an
//! errno) and, separately, the agent process is SIGKILLed at write N (the real binary, before
//! the write takes effect). Each time the host must stay consistent, and the next pass must
//! converge: every mdev as desired, none half-configured, no queue given back while held, and a
//! pass after that writes nothing.

mod agent_common;
mod common;

use std::path::Path;

use agent_common::*;
use common::*;
use cryptopass::agent::report::State;
use cryptopass::agent::{Desired, DesiredMdev, MaskMode, Ownership};
use cryptopass::sim::{self, FaultAction, Kernel};

struct Scenario {
    name: &'static str,
    kernel: Kernel,
    mode: MaskMode,
    /// Applied first, without faults: what the agent already made.
    before: Desired,
    /// Applied with the fault.
    after: Desired,
}

fn quiet(profile: &str) -> Kernel {
    let mut k = Kernel::from_yaml(&small_machine(profile), None, "test").expect("machine");
    k.cards.values_mut().for_each(|c| c.online = false);
    k
}

const U3: &str = "4b1d0000-0000-4000-8000-000000000003";

fn scenarios() -> Vec<Scenario> {
    let mut with_foreign = quiet("mig-latest");
    with_foreign.apmask.set(2, false);
    add_foreign(&mut with_foreign, "4b1d0000-0000-4000-8000-0000000000f0", mx(&[2], &[9], &[]), true);
    vec![
        Scenario {
            name: "v1: two new mdevs from scratch, one migratable",
            kernel: quiet("mig-v1"),
            mode: MaskMode::Manage,
            before: Desired::default(),
            after: Desired::new(vec![
                DesiredMdev::new(U1, &[0, 1], &[5, 6], &[5], true),
                DesiredMdev::new(U2, &[2], &[0x20], &[], false),
            ]),
        },
        Scenario {
            name: "latest: grow one, add one, remove one, give bits back (foreign mdev beside)",
            kernel: with_foreign,
            mode: MaskMode::Manage,
            before: Desired::new(vec![
                DesiredMdev::new(U1, &[0, 1], &[5], &[], false),
                DesiredMdev::new(U2, &[0], &[7, 8], &[], false),
            ]),
            after: Desired::new(vec![
                DesiredMdev::new(U1, &[0, 1], &[5, 6], &[5], false),
                DesiredMdev::new(U3, &[1], &[7], &[], true),
            ]),
        },
        Scenario {
            name: "override: take a queue from an obsolete mdev, set and clear overrides",
            kernel: quiet("override"),
            mode: MaskMode::Override,
            before: Desired::new(vec![DesiredMdev::new(U1, &[0, 1], &[5], &[], false)]),
            after: Desired::new(vec![DesiredMdev::new(U2, &[0], &[5, 6], &[6], true)]),
        },
    ]
}

/// A fresh host in the state `before` leaves, and the write counter then.
fn prepared(s: &Scenario, state: &Path) -> (Mounted, u64) {
    let m = Mounted::new(s.kernel.clone());
    let r = apply_in(&m, state, &s.before, s.mode);
    assert_eq!(r.exit_code(), 0, "{}: preparing: {}", s.name, r.text());
    let n = writes(&m);
    (m, n)
}

/// The checks after the faulty pass and after the pass that must converge.
fn check(s: &Scenario, m: &Mounted, state: &Path, before: &Kernel, own0: &Ownership) -> Result<(), String> {
    let k = kernel(m);
    no_held_queue_is_host_owned(&k).map_err(|e| format!("after the fault: {e}"))?;
    let r = apply_in(m, state, &s.after, s.mode);
    let k2 = kernel(m);
    let own = ownership(state);
    if r.exit_code() != 0 {
        return Err(format!("the next pass did not converge:\n{}", r.text()));
    }
    let mut either = own.clone();
    either.mdevs.extend(own0.mdevs.iter().cloned());
    check_report(&k2, before, &either, &s.after, &r)?;
    ours_exact_or_absent(&k2, &k, &own, &s.after, None)?;
    no_held_queue_is_host_owned(&k2)?;
    if r.mdevs.iter().any(|x| x.state == State::Failed) {
        return Err("a failure on the converging pass".into());
    }
    let n = writes(m);
    let again = apply_in(m, state, &s.after, s.mode);
    if writes(m) != n {
        return Err(format!("a third pass still wrote:\n{}", again.text()));
    }
    // nothing recorded that is not there, nothing there that is not recorded
    let stale = own.mdevs.iter().any(|u| !k2.mdevs.contains_key(u))
        || !own.apmask_cleared.and(&k2.apmask).is_empty()
        || !own.aqmask_cleared.and(&k2.aqmask).is_empty();
    if stale {
        return Err(format!("stale ownership record: {own:?}"));
    }
    Ok(())
}

#[test]
fn every_write_point_failed_or_killed_converges_on_the_next_pass() {
    let errnos = [libc::EIO, libc::EBUSY, libc::ENODEV];
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let (mut injected, mut converged) = (0, 0);
    for s in scenarios() {
        let dir = tempfile::tempdir().unwrap();
        let (m, base) = prepared(&s, &dir.path().join("baseline"));
        let before = kernel(&m);
        let r = apply_in(&m, &dir.path().join("baseline"), &s.after, s.mode);
        assert_eq!(r.exit_code(), 0, "{}: fault-free: {}", s.name, r.text());
        let points = writes(&m) - base;
        assert!(points >= 4, "{}: a representative plan has several writes", s.name);
        drop(m);
        let (mut inj, mut conv) = (0, 0);
        for n in 1..=points {
            for kill in [false, true] {
                let state = dir.path().join(format!("n{n}-{kill}"));
                let (m, base) = prepared(&s, &state);
                let own0 = ownership(&state);
                let action = if kill { FaultAction::Kill } else { FaultAction::Fail(errnos[n as usize % 3]) };
                sim::lock(&m.sim).faults.push((base + n, action));
                if kill {
                    let code = apply_bin(&m, &state, &s.after, s.mode);
                    assert_eq!(code, None, "{}: the agent was not killed at write {n}", s.name);
                } else {
                    let r = apply_in(&m, &state, &s.after, s.mode);
                    assert!(r.exit_code() == 1, "{}: write {n} failed but the pass says all is well", s.name);
                    // compensation already leaves no half-configured mdev
                    let own = ownership(&state);
                    if let Err(e) = ours_exact_or_absent(&kernel(&m), &before, &own, &s.after, Some(&r)) {
                        failures.push(format!(
                            "{} / fail write {n}: half-configured after compensation: {e}\n{}",
                            s.name,
                            r.text()
                        ));
                    }
                }
                assert!(sim::lock(&m.sim).faults.is_empty(), "{}: the fault at write {n} was not reached", s.name);
                inj += 1;
                match check(&s, &m, &state, &before, &own0) {
                    Ok(()) => conv += 1,
                    Err(e) => {
                        failures.push(format!("{} / {} write {n}: {e}", s.name, if kill { "kill at" } else { "fail" }))
                    }
                }
            }
        }
        lines.push(format!("{}: {points} write points, {inj} injected (fail + kill), {conv} converged", s.name));
        injected += inj;
        converged += conv;
    }
    println!("fault injection coverage:");
    for l in &lines {
        println!("  {l}");
    }
    println!("  total: {injected} injected, {converged} converged");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(injected, converged);
}
