//! The seeded randomized fault run (see `raftoral_conformance::fault_run`):
//! a short one in every `cargo test`, a long one with `make fault-run`.
//! `FAULT_SEED=n` repeats a run's schedule; `FAULT_MINUTES` sets the long
//! run's length.

use std::time::Duration;

use raftoral_conformance::fault_run::{FaultRunConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_random_faults_loses_nothing_and_runs_no_committed_step_again()
-> anyhow::Result<()> {
    let config = FaultRunConfig::from_env(Duration::from_secs(50))?;
    run(config).await?.verdict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with `make fault-run` (FAULT_MINUTES, FAULT_SEED)"]
async fn long_fault_run() -> anyhow::Result<()> {
    let minutes: f64 = match std::env::var("FAULT_MINUTES") {
        Ok(m) => m
            .parse()
            .map_err(|e| anyhow::anyhow!("FAULT_MINUTES={m:?} is not a number: {e}"))?,
        Err(_) => 10.0,
    };
    let config = FaultRunConfig::from_env(Duration::from_secs_f64(minutes * 60.0))?;
    run(config).await?.verdict()
}
