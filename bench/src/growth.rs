//! Growth: one durable sidecar node taken from 0 to N finished `ping_pong`
//! workflows at 64 in flight. Per tenth of N: throughput, sidecar RSS and
//! the size of the state store; over the whole run, workflow latency with
//! and without a flush or a snapshot being written. At the end: the full
//! node's throughput against a new, empty node's in alternated rounds, the
//! time from a SIGKILL restart to serving again, then a second node joining
//! (`joining.rs`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftoral_client::RaftoralClient;
use serde::Serialize;

use crate::sidecars;
use crate::stats::{Latency, Recorder};
use crate::workflows::{Bench, Mode, Shape, concurrently};

/// Workflows in flight.
const IN_FLIGHT: usize = 64;

/// Start and end of each workflow run, shared by the tasks that run them.
type Spans = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// One tenth of the run.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Finished workflows at the end of the step.
    pub finished: u64,
    /// Workflows per second during the step.
    pub throughput: f64,
    /// Sidecar resident memory at the end of the step, MiB.
    pub rss_mib: f64,
    /// Size of the state machine's store (`state/`), bytes.
    pub store_bytes: u64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Growth {
    /// Per tenth of the run.
    pub steps: Vec<Step>,
    /// Workflow latency (start to result) while no flush to the state store
    /// and no snapshot was being written.
    pub outside_flush: Latency,
    /// Workflow latency of workflows that overlapped a flush or a snapshot
    /// write.
    pub during_flush: Latency,
    /// The full node's throughput against an empty node's, measured in the
    /// same minutes.
    pub against_empty: AgainstEmpty,
    /// SIGKILL, restart, until a start is acknowledged, ms.
    pub restart_to_serving_ms: f64,
    /// A second node joining the node that holds them all.
    pub join: crate::joining::Join,
}

/// Intervals during which a flush to the state store was being written
/// (`raftoral_state_flush_in_progress`) or a snapshot (a `.tmp` file in
/// `snapshots/`), as seen by polling every 2 ms.
#[derive(Default)]
struct Writes {
    spans: Vec<(Instant, Instant)>,
    open: Option<Instant>,
}

impl Writes {
    fn overlaps(&self, start: Instant, end: Instant) -> bool {
        self.spans.iter().any(|(s, e)| *s <= end && *e >= start)
            || self.open.is_some_and(|s| s <= end)
    }
}

fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    })
}

fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum()
    })
}

/// Runs the growth measurement to `total` finished workflows.
pub async fn run(raftoral_bin: &Path, total: u64) -> anyhow::Result<Growth> {
    let shape = Shape {
        nodes: 1,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    };
    let mut bench = Bench::start(shape, raftoral_bin).await?;
    let snapshots = bench.dir().join("n1").join("snapshots");
    let store = bench.dir().join("n1").join("state");
    let writes = Arc::new(Mutex::new(Writes::default()));
    let poller = {
        let (writes, snapshots) = (writes.clone(), snapshots.clone());
        let raft_addr = bench.raft_addrs[&1].clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let metrics = crate::joining::scrape(&raft_addr).await;
                let flushing = crate::joining::gauge(&metrics, "raftoral_state_flush_in_progress")
                    == Some(1.0);
                let busy = flushing || writing(&snapshots);
                let mut w = writes.lock().expect("writes lock");
                match (busy, w.open) {
                    (true, None) => w.open = Some(now),
                    (false, Some(start)) => {
                        w.spans.push((start, now));
                        w.open = None;
                    }
                    _ => {}
                }
            }
        })
    };
    let latencies: Spans = Arc::default();
    let mut steps = Vec::new();
    let per_step = (total / 10).max(IN_FLIGHT as u64);
    let mut finished = 0;
    for _ in 0..10 {
        let (done, throughput) = drive(&bench.client, per_step, Some(&latencies)).await?;
        finished += done;
        let step = Step {
            finished,
            throughput,
            rss_mib: bench.rss_mib(1).unwrap_or(0.0),
            store_bytes: store_bytes(&store),
        };
        println!(
            "{:>10} finished  {:>8.0} wf/s  RSS {:>7.1} MiB  store {:>6.1} MB",
            step.finished,
            step.throughput,
            step.rss_mib,
            step.store_bytes as f64 / 1e6
        );
        steps.push(step);
    }
    poller.abort();
    let (mut outside, mut during) = (Recorder::new(), Recorder::new());
    {
        let writes = writes.lock().expect("writes lock");
        for (start, end) in latencies.lock().expect("latencies lock").iter() {
            if writes.overlaps(*start, *end) {
                during.record(*end - *start);
            } else {
                outside.record(*end - *start);
            }
        }
    }
    let against_empty = against_empty(&bench, raftoral_bin).await?;
    println!(
        "alternated with an empty node: {:.0} vs {:.0} wf/s ({:.2})",
        against_empty.full_wf_s, against_empty.empty_wf_s, against_empty.ratio
    );
    let restart_to_serving_ms = restart(&mut bench, raftoral_bin).await?;
    let join = crate::joining::measure(
        raftoral_bin,
        bench.dir(),
        &bench.raft_addrs[&1],
        &bench.urls[&1],
    )
    .await?;
    bench.stop().await;
    Ok(Growth {
        steps,
        outside_flush: outside.summary(),
        during_flush: during.summary(),
        against_empty,
        restart_to_serving_ms,
        join,
    })
}

/// Workflows per round of [`against_empty`], for each node.
const ROUND: u64 = 20_000;

/// Rounds of [`against_empty`].
const ROUNDS: usize = 3;

/// The full node against an empty one, alternated.
#[derive(Debug, Serialize)]
pub struct AgainstEmpty {
    /// wf/s of the node holding the run's workflows, over its rounds.
    pub full_wf_s: f64,
    /// wf/s of a new, empty durable node, over its rounds.
    pub empty_wf_s: f64,
    /// `full_wf_s / empty_wf_s`: the goal is at least 0.8.
    pub ratio: f64,
}

/// Throughput of the full node against a new, empty one (same shape, its
/// own worker), in alternated rounds of [`ROUND`] workflows. The first
/// tenth of the run stands for the empty node in the steps, but it ran
/// minutes earlier: on a shared machine whose speed drifts by 15% from one
/// minute to the next, only a comparison made in the same minutes holds.
async fn against_empty(full: &Bench, raftoral_bin: &Path) -> anyhow::Result<AgainstEmpty> {
    let shape = Shape {
        nodes: 1,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    };
    let empty = Bench::start(shape, raftoral_bin).await?;
    let (mut full_secs, mut empty_secs) = (0.0, 0.0);
    let mut done = (0, 0);
    for _ in 0..ROUNDS {
        let (n, rate) = drive(&full.client, ROUND, None).await?;
        done.0 += n;
        full_secs += n as f64 / rate;
        let (n, rate) = drive(&empty.client, ROUND, None).await?;
        done.1 += n;
        empty_secs += n as f64 / rate;
    }
    empty.stop().await;
    let (full_wf_s, empty_wf_s) = (done.0 as f64 / full_secs, done.1 as f64 / empty_secs);
    Ok(AgainstEmpty {
        full_wf_s,
        empty_wf_s,
        ratio: full_wf_s / empty_wf_s,
    })
}

/// Runs about `count` ping_pongs at [`IN_FLIGHT`]; returns how many ran and
/// the workflows per second, and records each one's start and end in
/// `spans` when given.
async fn drive(
    client: &RaftoralClient,
    count: u64,
    spans: Option<&Spans>,
) -> anyhow::Result<(u64, f64)> {
    let per_task = count / IN_FLIGHT as u64;
    let (client, spans) = (client.clone(), spans.cloned());
    let rate = concurrently(IN_FLIGHT, per_task, move || {
        let (client, spans) = (client.clone(), spans.clone());
        async move {
            let started = Instant::now();
            let handle = client.start_workflow("ping_pong", 1, "ping").await?;
            handle.result_raw().await?;
            if let Some(spans) = spans {
                let span = (started, Instant::now());
                spans.lock().expect("spans lock").push(span);
            }
            anyhow::Ok(())
        }
    })
    .await?;
    Ok((per_task * IN_FLIGHT as u64, rate))
}

/// SIGKILLs node 1 and starts it again on its storage; the time until a
/// new client's start is acknowledged.
pub async fn restart(bench: &mut Bench, raftoral_bin: &Path) -> anyhow::Result<f64> {
    let mut child = bench.processes.remove(&1).expect("node 1 runs");
    child.kill().await?;
    let started = Instant::now();
    let dir = bench.dir().to_path_buf();
    let _ = std::fs::remove_file(dir.join("addr1.json"));
    let sidecars = sidecars::spawn(raftoral_bin, &dir, &bench.raft_addrs, &[1], true, None).await?;
    let url = sidecars.urls[&1].clone();
    bench.urls.insert(1, url.clone());
    bench.processes.extend(sidecars.processes);
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    loop {
        if let Ok(client) = RaftoralClient::connect(&url).await
            && client
                .start_workflow("nobody_runs_this", 1, "x")
                .await
                .is_ok()
        {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "node 1 did not serve within 120 s of its restart"
        );
        poll.tick().await;
    }
}
