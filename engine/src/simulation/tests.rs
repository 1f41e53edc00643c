//! The seeds `make test` runs, and the replay of one.
//!
//! `RAFTORAL_SIM_SEEDS=N` sets how many (default 1000),
//! `RAFTORAL_SIM_FIRST=S` where they start (default: a fixed base, so CI
//! runs the same seeds every time), `RAFTORAL_SIM_SEED=S` runs one seed
//! with its trace.

use raft::prelude::ConfChangeType;

use super::{Scenario, World, run_seed};

const FIRST_SEED: u64 = 0x5eed_0000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        let v = v.trim();
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
    })
}

/// Runs the `half`-th half of the seeds (two tests, so both cores work).
fn seeds(half: u64) {
    if let Some(seed) = env_u64("RAFTORAL_SIM_SEED") {
        if half == 0 {
            eprintln!("scenario: {:?}", Scenario::of(seed));
            match run_seed(seed, true) {
                Ok(outcome) => eprintln!("seed {seed:#x}: ok {outcome:?}"),
                Err(e) => panic!("seed {seed:#x}: {e}"),
            }
        }
        return;
    }
    let all = env_u64("RAFTORAL_SIM_SEEDS").unwrap_or(1000);
    let first = env_u64("RAFTORAL_SIM_FIRST").unwrap_or(FIRST_SEED) + half * (all / 2);
    let count = if half == 0 { all / 2 } else { all - all / 2 };
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let (mut events, mut crashes, mut sim_ms, mut terms, mut commits) = (0, 0, 0, 0, 0);
    let mut snapshots = 0;
    for seed in first..first + count {
        match run_seed(seed, false) {
            Ok(outcome) => {
                events += outcome.events;
                crashes += outcome.crashes;
                sim_ms += outcome.sim_ms;
                terms += outcome.terms;
                commits += outcome.committed;
                snapshots += outcome.snapshots;
            }
            Err(e) => {
                eprintln!(
                    "seed {seed:#x} failed: {e}\n  replay: RAFTORAL_SIM_SEED={seed:#x} cargo test -p raftoral --lib simulation -- --nocapture"
                );
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "{count} seeds from {first:#x} in {:.1} s: {:.0} simulated s, {events} events, \
         {commits} entries, {terms} terms, {crashes} crashes, {snapshots} snapshots received; \
         {} failed",
        started.elapsed().as_secs_f64(),
        sim_ms as f64 / 1000.0,
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:x?}");
}

#[test]
fn seeds_hold_every_invariant_first_half() {
    seeds(0);
}

#[test]
fn seeds_hold_every_invariant_second_half() {
    seeds(1);
}

#[test]
fn a_seed_replays_exactly() {
    let seed = FIRST_SEED + 7;
    let a = run_seed(seed, false);
    let b = run_seed(seed, false);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert!(a.is_ok_and(|o| o.events > 1000), "the run did work");
}

#[test]
fn a_leader_that_applies_its_own_removal_steps_down_and_the_others_go_on() {
    // The hand-over before a removal makes this rare in a process: the
    // removal is proposed here with no hand-over, as when leadership moves
    // to the node after the check. Before the step-down, the removed
    // leader's loop panicked at the next append response.
    let mut world = World::with_scenario(11, Scenario::quiet(), false).expect("world");
    let leader = world.run_until(10_000, World::leader).expect("a leader");
    let other = (1..=3).find(|id| *id != leader).expect("another node");
    world
        .propose_conf(leader, leader, ConfChangeType::RemoveNode)
        .expect("proposed");
    world
        .run_until(10_000, |w| {
            (!w.voters(leader).contains(&leader)).then_some(())
        })
        .expect("the leader applies its removal");
    assert_ne!(world.leader(), Some(leader), "a removed node does not lead");
    let next = world
        .run_until(10_000, |w| w.leader().filter(|l| *l != leader))
        .expect("the others elect a leader");
    assert!(world.voters(other).iter().all(|v| *v != leader));
    let before = world.committed(next);
    world
        .run_until(10_000, |w| (w.committed(next) > before).then_some(()))
        .expect("the cluster commits again");
    assert_ne!(world.leader(), Some(leader));
}
