//! A seeded, deterministic simulation of a whole cluster (tests only).
//!
//! N nodes of the real engine code (the Raft loop with raft-rs, the log
//! store and its write-ahead log, the state machine and its store, the
//! startup code that reopens a node after a crash) run in one thread under
//! one queue of events in simulated time. What the nodes cannot decide
//! themselves comes from the seed through the loop's seams
//! (`consensus/environment.rs`): each node's clock (skews, jumps), the
//! network (delay, reordering, loss, duplication, partitions, one-way
//! links), and power losses that keep none, all or a torn part of what
//! was written since the last fsync; the background threads (flushes,
//! snapshot receives) move between pause points (`consensus/pause.rs`)
//! when the seed says (`lanes.rs`). What a seed draws is its scenario
//! (`scenario.rs`); `world.rs` runs it. The users are simulated too (`workload.rs`): clients that
//! start workflows and retry with the same ids, and an app per node that
//! runs the workflows its node owns, step by step. Every check of
//! `invariants.rs` runs during the run and at its end.
//!
//! A failing seed prints the command that replays it; docs/TESTING.md says
//! how to read its trace. `make simulate SEEDS=N` runs many.

mod children;
mod choices;
mod invariants;
mod lanes;
mod node;
mod rng;
mod scenario;
#[cfg(test)]
mod tests;
mod workload;
mod world;

pub(crate) use scenario::Scenario;
pub(crate) use world::{Outcome, World};

/// Runs one seed: Ok with what happened, or the violated invariant (a
/// panic in the engine counts as one).
pub(crate) fn run_seed(seed: u64, trace: bool) -> Result<Outcome, String> {
    let run = std::panic::catch_unwind(|| World::new(seed, trace).and_then(World::run));
    match run {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}
