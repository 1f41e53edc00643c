//! A seeded randomized fault run: a 3-node cluster on storage, one worker
//! per node, a steady load of `steps` workflows, and faults one at a time
//! (SIGKILL, SIGSTOP/SIGCONT and SIGTERM of nodes and workers, once a
//! whole-cluster SIGKILL), then strict checks once everything settled.
//!
//! The seed fixes the fault schedule and the workload; the processes'
//! timing does not repeat exactly, so a seed reproduces the same run, not
//! necessarily the same interleaving. `FAULT_SEED=n` picks the seed.

pub mod checks;
pub mod faults;
pub mod load;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cluster::Cluster;
use faults::{APP_TIMEOUT_MS, Fault, OWNER_TIMEOUT_MS};
use load::{LoadShape, Nodes};
use rng::Rng;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct FaultRunConfig {
    /// Seed of the fault schedule and the workload.
    pub seed: u64,
    /// How long the load and the faults go on.
    pub duration: Duration,
    /// The workload.
    pub load: LoadShape,
    /// Shortest and longest quiet time between two faults, in milliseconds.
    pub gap_ms: (u64, u64),
}

impl FaultRunConfig {
    /// A run of `duration`, seeded by `FAULT_SEED` or else the clock.
    pub fn from_env(duration: Duration) -> anyhow::Result<Self> {
        let seed = match std::env::var("FAULT_SEED") {
            Ok(s) => s
                .parse()
                .map_err(|e| anyhow::anyhow!("FAULT_SEED={s:?} is not a number: {e}"))?,
            Err(_) => rng::clock_seed(),
        };
        Ok(FaultRunConfig {
            seed,
            duration,
            load: LoadShape {
                every: Duration::from_millis(100),
                steps: (3, 20),
                step_delay_ms: (20, 200),
            },
            gap_ms: (500, 2500),
        })
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Starts the load made.
    pub starts: usize,
    /// Of those, acknowledged.
    pub acknowledged: usize,
    /// The last error of the first start not acknowledged, if any.
    pub first_unacknowledged: Option<String>,
    /// Workflows that exist at the end (unacknowledged starts may exist too).
    pub workflows: usize,
    /// Committed steps over all workflows.
    pub steps: u64,
    /// Faults done, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Re-computations of steps.
    pub recomputations: checks::Recomputations,
    /// Start to finish of completed workflows (leader's clock), in ms:
    /// median, 99th percentile, longest.
    pub complete_ms: (u64, u64, u64),
    /// From the end of the load until nothing was pending or running.
    pub settle: Duration,
    /// Snapshots installed from the leader, as the nodes' logs tell (a log
    /// starts again with its process, so this is a lower bound).
    pub snapshot_installs: usize,
    /// Where the logs and storage were kept, when a check failed.
    pub kept: Option<std::path::PathBuf>,
    /// Everything a check found; empty when the run passed.
    pub violations: Vec<String>,
}

impl Report {
    /// Err with the report when any check failed.
    pub fn verdict(&self) -> anyhow::Result<()> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "the fault run failed {} checks (FAULT_SEED={}); the report above lists them",
                self.violations.len(),
                self.seed
            )
        }
    }
}

/// Violations printed in full; the rest are counted.
const SHOWN: usize = 40;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed                {}", self.seed)?;
        writeln!(
            f,
            "workflows           {} started, {} acknowledged, {} exist, {} steps committed",
            self.starts, self.acknowledged, self.workflows, self.steps
        )?;
        if let Some(first) = &self.first_unacknowledged {
            writeln!(f, "  first not acknowledged: {first}")?;
        }
        let total: usize = self.faults.values().sum();
        writeln!(f, "faults              {total}")?;
        for (kind, n) in &self.faults {
            writeln!(f, "  {kind:<26}{n}")?;
        }
        writeln!(
            f,
            "re-computations     {} of {} step computations; of committed steps: {} ({} surely after the commit)",
            self.recomputations.total,
            self.recomputations.computations,
            self.recomputations.after_commit,
            self.recomputations.surely_after_commit
        )?;
        let (p50, p99, max) = self.complete_ms;
        writeln!(
            f,
            "time to complete    p50 {p50} ms, p99 {p99} ms, max {max} ms"
        )?;
        writeln!(f, "settled after load  {:?}", self.settle)?;
        writeln!(
            f,
            "snapshot installs   {} (at least)",
            self.snapshot_installs
        )?;
        writeln!(f, "violations          {}", self.violations.len())?;
        if let Some(dir) = &self.kept {
            writeln!(
                f,
                "  logs, storage, effects and violations.txt kept in {}",
                dir.display()
            )?;
        }
        for v in self.violations.iter().take(SHOWN) {
            writeln!(f, "  {v}")?;
        }
        if self.violations.len() > SHOWN {
            writeln!(f, "  ... and {} more", self.violations.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Runs the fault run and its checks. Err only when the harness itself
/// could not go on (a process that does not start again); what the checks
/// find is in the report.
pub async fn run(config: FaultRunConfig) -> anyhow::Result<Report> {
    tracing::info!(seed = config.seed, "fault run");
    eprintln!(
        "fault run: FAULT_SEED={} for {:?}",
        config.seed, config.duration
    );
    let (owner_timeout, app_timeout) = (OWNER_TIMEOUT_MS.to_string(), APP_TIMEOUT_MS.to_string());
    let mut cluster = Cluster::start(
        3,
        true,
        &[
            "--owner-timeout-ms",
            &owner_timeout,
            "--app-timeout-ms",
            &app_timeout,
            // Frequent snapshots and a short log behind them: a node that
            // was down even briefly catches up by snapshot install, so the
            // run covers installs under load too.
            "--snapshot-entries",
            "100",
            "--snapshot-keep-entries",
            "20",
            // Nor kept back for a node that is down (it is heard from again
            // within the owner timeout only after a short pause).
            "--snapshot-max-retained-entries",
            "20",
        ],
    )
    .await?;
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    cluster.wait_agreement(&ids, &ids).await?;
    let mut apps = faults::start_workers(&cluster).await?;
    let urls: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .map(|(id, n)| (*id, n.url.clone()))
        .collect();
    let nodes = Nodes::new(&urls)?;

    let mut rng = Rng::new(config.seed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = tokio::spawn(load::run(
        nodes.clone(),
        config.seed,
        rng.fork(),
        config.load,
        stop_rx,
    ));

    let mut report = Report {
        seed: config.seed,
        ..Default::default()
    };
    let began = Instant::now();
    // Once per run, somewhere in the middle.
    let whole_cluster_at = config.duration.mul_f64(rng.range(30, 70) as f64 / 100.0);
    let mut whole_cluster_done = false;
    let mut seen_reports = BTreeMap::new();
    loop {
        let gap = Duration::from_millis(rng.range(config.gap_ms.0, config.gap_ms.1));
        // The quiet time between faults, not a wait for a condition.
        tokio::time::sleep(gap).await;
        poll_reports(&cluster, &mut seen_reports).await;
        if began.elapsed() >= config.duration {
            break;
        }
        let fault = if !whole_cluster_done && began.elapsed() >= whole_cluster_at {
            whole_cluster_done = true;
            Fault::WholeCluster
        } else {
            Fault::pick(&mut rng, &ids)
        };
        eprintln!("fault run: {:>6.1}s {fault}", began.elapsed().as_secs_f64());
        let complaints = faults::apply(fault, &mut cluster, &mut apps, &nodes).await?;
        report.violations.extend(complaints);
        *report.faults.entry(fault.kind()).or_default() += 1;
        // One fault at a time: the next one waits for a leader every node
        // agrees on.
        cluster.wait_agreement(&ids, &ids).await?;
    }
    if !whole_cluster_done {
        // A run too short to reach its scheduled point still does it once.
        faults::apply(Fault::WholeCluster, &mut cluster, &mut apps, &nodes).await?;
        *report.faults.entry(Fault::WholeCluster.kind()).or_default() += 1;
        cluster.wait_agreement(&ids, &ids).await?;
    }

    let _ = stop_tx.send(true);
    let started = load.await?;
    let load_end = Instant::now();
    eprintln!("fault run: load stopped, settling");
    let all = checks::settle(&nodes).await?;
    report.settle = load_end.elapsed();
    report.starts = started.len();
    report.acknowledged = started.iter().filter(|s| s.acknowledged).count();
    report.first_unacknowledged = started.iter().find(|s| !s.acknowledged).map(|s| {
        format!(
            "{}: {}",
            s.workflow_id,
            s.last_error.as_deref().unwrap_or("")
        )
    });
    report.workflows = all.len();
    report.steps = all.iter().map(|w| w.checkpoint_count).sum();
    report.complete_ms = completion_times(&all);

    checks::results(&started, &all, &mut report.violations);
    let commit_times = checks::histories(&nodes, &started, &all, &mut report.violations).await?;
    let paths: Vec<_> = apps.effects.values().cloned().collect();
    report.recomputations = checks::recomputations(
        &checks::effects(&paths),
        &commit_times,
        &mut report.violations,
    );
    report.snapshot_installs = cluster
        .nodes
        .keys()
        .map(|id| {
            cluster
                .log(*id)
                .matches("installed a snapshot from the leader")
                .count()
        })
        .sum();
    poll_reports(&cluster, &mut seen_reports).await;
    checks::nondeterminism(&cluster, &seen_reports, &mut report.violations).await?;
    if !report.violations.is_empty() {
        // Keep the logs, storage and effects files for a look afterwards.
        cluster.dir.disable_cleanup(true);
        report.kept = Some(cluster.dir.path().to_owned());
        // The report shows the first few; the file has them all.
        std::fs::write(
            cluster.dir.path().join("violations.txt"),
            report.violations.join("\n") + "\n",
        )?;
    }
    eprintln!("fault run: done\n{report}");
    Ok(report)
}

/// Remembers the highest non-determinism count each node reported: the
/// counter starts again at 0 when the process restarts.
async fn poll_reports(cluster: &Cluster, seen: &mut BTreeMap<u64, u64>) {
    for id in cluster.nodes.keys() {
        if let Ok(status) = cluster.status(*id).await {
            let max = seen.entry(*id).or_default();
            *max = (*max).max(status.nondeterminism_reports);
        }
    }
}

/// Median, 99th percentile and longest start-to-finish time of the
/// completed workflows, in ms.
fn completion_times(all: &[raftoral_client::WorkflowInfo]) -> (u64, u64, u64) {
    let mut times: Vec<u64> = all
        .iter()
        .filter(|w| w.status() == raftoral_client::WorkflowStatus::Completed)
        .map(|w| w.updated_at_ms.saturating_sub(w.created_at_ms))
        .collect();
    if times.is_empty() {
        return (0, 0, 0);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), *times.last().expect("not empty"))
}
