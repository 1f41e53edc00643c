//! Durable timers. Lateness: workflows that each sleep once on three
//! durable sidecar nodes, how long after its deadline each timer's firing
//! committed (log time, from the histories). Scale: many workflows sleeping
//! at once on one durable node, its RSS before and after, the restart to
//! serving with them pending, and that every one of them fires after the
//! restart.

use std::path::Path;
use std::time::{Duration, Instant};

use raftoral_client::proto::sidecar::v1::{HistoryEntryKind, ListWorkflowsRequest};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use serde::Serialize;

use crate::stats::{Latency, Recorder};
use crate::workflows::{Bench, Mode, Shape};

/// Starts (and result waits) in flight.
const IN_FLIGHT: usize = 128;

/// The lateness of timers fired under load.
#[derive(Debug, Serialize)]
pub struct LatenessRow {
    /// Nodes.
    pub nodes: u64,
    /// Workflows, one sleep each.
    pub workflows: u64,
    /// Each sleep, ms.
    pub sleep_ms: u64,
    /// Starts per second while the workflows were started.
    pub starts_per_s: f64,
    /// From deadline to the firing's commit (log time).
    pub lateness: Latency,
}

/// Many timers pending at once on one node.
#[derive(Debug, Serialize)]
pub struct ScaleRow {
    /// Workflows sleeping at once.
    pub pending: u64,
    /// The sidecar's RSS before they started, MiB.
    pub rss_before_mib: f64,
    /// With all of them pending, MiB.
    pub rss_pending_mib: f64,
    /// SIGKILL, restart on the same storage, until a start is acknowledged.
    pub restart_to_serving_ms: f64,
    /// Pending timers the restarted node reported (all of them, or the
    /// restart lost some).
    pub pending_after_restart: u64,
    /// Workflows that completed after the restart (all of them).
    pub completed: u64,
    /// From deadline to the firing's commit, after the restart.
    pub lateness: Latency,
}

/// Both measurements.
#[derive(Debug, Serialize)]
pub struct Timers {
    /// Lateness under load.
    pub lateness: LatenessRow,
    /// Pending timers at scale.
    pub scale: ScaleRow,
}

/// Runs both.
pub async fn run(raftoral_bin: &Path, workflows: u64, pending: u64) -> anyhow::Result<Timers> {
    let lateness = lateness(raftoral_bin, workflows, 5_000).await?;
    println!(
        "lateness: {} workflows sleeping {} ms on {} nodes (started at {:.0}/s): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lateness.workflows,
        lateness.sleep_ms,
        lateness.nodes,
        lateness.starts_per_s,
        lateness.lateness.p50_ms,
        lateness.lateness.p90_ms,
        lateness.lateness.p99_ms,
        lateness.lateness.max_ms
    );
    let scale = scale(raftoral_bin, pending).await?;
    println!(
        "scale: {} pending timers on 1 node: RSS {:.1} -> {:.1} MiB, restart to serving {:.0} ms, {} pending after it, {} completed, lateness p50 {:.1} ms p99 {:.1} ms",
        scale.pending,
        scale.rss_before_mib,
        scale.rss_pending_mib,
        scale.restart_to_serving_ms,
        scale.pending_after_restart,
        scale.completed,
        scale.lateness.p50_ms,
        scale.lateness.p99_ms
    );
    Ok(Timers { lateness, scale })
}

fn durable(nodes: u64) -> Shape {
    Shape {
        nodes,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    }
}

/// Starts `n` `sleep` workflows of `ms` through `client`, `IN_FLIGHT` at a
/// time; their ids and the starts per second.
async fn start_sleepers(
    client: &RaftoralClient,
    n: u64,
    ms: u64,
) -> anyhow::Result<(Vec<String>, f64)> {
    let started = Instant::now();
    let per_task = n.div_ceil(IN_FLIGHT as u64);
    let tasks: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..per_task {
                    if t * per_task + i >= n {
                        break;
                    }
                    let handle = client.start_workflow("sleep", 1, &ms).await?;
                    ids.push(handle.workflow_id().to_owned());
                }
                anyhow::Ok(ids)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n as usize);
    for task in futures::future::join_all(tasks).await {
        ids.extend(task??);
    }
    Ok((ids, n as f64 / started.elapsed().as_secs_f64()))
}

/// Waits for every workflow of `ids` to complete; the lateness of their
/// timers, read from their histories.
async fn finish_and_measure(
    client: &RaftoralClient,
    ids: Vec<String>,
) -> anyhow::Result<(u64, Latency)> {
    let chunks: Vec<Vec<String>> = ids
        .chunks(ids.len().div_ceil(IN_FLIGHT).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                for id in chunk {
                    let done: bool = client.workflow_handle(&id).result().await?;
                    anyhow::ensure!(done, "workflow {id} did not sleep");
                    let history = client.get_workflow_history(&id).await?;
                    let fired = history
                        .iter()
                        .find(|e| e.kind() == HistoryEntryKind::TimerFired)
                        .ok_or_else(|| anyhow::anyhow!("workflow {id} has no fired timer"))?;
                    late.push(fired.committed_at_ms.saturating_sub(fired.fire_at_ms));
                }
                anyhow::Ok(late)
            })
        })
        .collect();
    let mut recorder = Recorder::new();
    let mut completed = 0;
    for task in futures::future::join_all(tasks).await {
        for ms in task?? {
            completed += 1;
            recorder.record(Duration::from_millis(ms));
        }
    }
    Ok((completed, recorder.summary()))
}

async fn lateness(
    raftoral_bin: &Path,
    workflows: u64,
    sleep_ms: u64,
) -> anyhow::Result<LatenessRow> {
    let bench = Bench::start(durable(3), raftoral_bin).await?;
    let (ids, starts_per_s) = start_sleepers(&bench.client, workflows, sleep_ms).await?;
    let (_, lateness) = finish_and_measure(&bench.client, ids).await?;
    bench.stop().await;
    Ok(LatenessRow {
        nodes: 3,
        workflows,
        sleep_ms,
        starts_per_s,
        lateness,
    })
}

/// The `raftoral_timers_pending` gauge of node 1.
async fn pending_timers(bench: &Bench) -> u64 {
    let metrics = crate::joining::scrape(&bench.raft_addrs[&1]).await;
    crate::joining::gauge(&metrics, "raftoral_timers_pending").unwrap_or(0.0) as u64
}

async fn wait_pending(bench: &Bench, n: u64, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        let now = pending_timers(bench).await;
        if now >= n || Instant::now() > deadline {
            return Ok(now);
        }
        poll.tick().await;
    }
}

async fn scale(raftoral_bin: &Path, pending: u64) -> anyhow::Result<ScaleRow> {
    let mut bench = Bench::start(durable(1), raftoral_bin).await?;
    // Warm up: the first workflows allocate what every later one reuses.
    for _ in 0..100 {
        let handle = bench.client.start_workflow("ping_pong", 1, "ping").await?;
        let _: String = handle.result().await?;
    }
    let rss_before_mib = bench.rss_mib(1).unwrap_or(0.0);
    // Long enough to outlast the starts and the restart: they all fire
    // after it.
    let sleep_ms = 60_000 + pending / 2;
    let (ids, _) = start_sleepers(&bench.client, pending, sleep_ms).await?;
    let reached = wait_pending(&bench, pending, Duration::from_secs(120)).await?;
    anyhow::ensure!(
        reached == pending,
        "only {reached} of {pending} timers started"
    );
    let rss_pending_mib = bench.rss_mib(1).unwrap_or(0.0);
    let restart_to_serving_ms = crate::growth::restart(&mut bench, raftoral_bin).await?;
    let pending_after_restart = pending_timers(&bench).await;
    // The restarted sidecar serves apps on a new port: a worker there.
    let client = RaftoralClient::connect(&bench.urls[&1]).await?;
    client.register_workflow("sleep", 1).await?;
    let worker = {
        let client = client.clone();
        tokio::spawn(async move { client.handle_workflows(crate::workflows::handler).await })
    };
    let (completed, lateness) = finish_and_measure(&client, ids).await?;
    let running = client
        .list_workflows(ListWorkflowsRequest {
            status: WorkflowStatus::Running as i32,
            ..Default::default()
        })
        .await?
        .workflows
        .len();
    anyhow::ensure!(running == 0, "{running} workflows still running");
    client.shutdown().await;
    let _ = worker.await;
    bench.stop().await;
    Ok(ScaleRow {
        pending,
        rss_before_mib,
        rss_pending_mib,
        restart_to_serving_ms,
        pending_after_restart,
        completed,
        lateness,
    })
}
