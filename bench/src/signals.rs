//! Events sent to waiting workflows. Round trip: a client signals a
//! workflow that waits for the event and returns its payload, and waits for
//! that result (the event's commit, its delivery to the app, the result's
//! commit), against one client-visible commit (a start of a workflow type
//! nobody runs) measured alternated in the same run, on 1 and 3 durable
//! sidecar nodes. Scale: many workflows waiting at once on one durable
//! node, then one event each at 256 in flight: events/s and RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use raftoral_client::RaftoralClient;
use serde::Serialize;

use crate::stats::{Latency, Recorder};
use crate::workflows::{Bench, Mode, Shape};

/// Events (and result waits) in flight in the scale measurement.
const IN_FLIGHT: usize = 256;

/// Round trips on one cluster shape.
#[derive(Debug, Serialize)]
pub struct RoundTripRow {
    /// Nodes (durable sidecars; the caller and the worker on node 1).
    pub nodes: u64,
    /// Signal to result.
    pub round_trip: Latency,
    /// One client-visible commit, alternated with the round trips.
    pub commit: Latency,
    /// round_trip p50 / commit p50 (goal: at most 2).
    pub ratio: f64,
}

/// Many waiting workflows, then one event each.
#[derive(Debug, Serialize)]
pub struct ScaleRow {
    /// Workflows waiting at once.
    pub waiting: u64,
    /// The sidecar's RSS before they started, MiB.
    pub rss_before_mib: f64,
    /// With all of them waiting, MiB.
    pub rss_waiting_mib: f64,
    /// Events acknowledged (committed) per second, 256 in flight.
    pub events_per_s: f64,
    /// Workflows completed with their event's payload.
    pub completed: u64,
}

/// Both measurements.
#[derive(Debug, Serialize)]
pub struct Signals {
    /// Round trips on 1 and 3 nodes.
    pub round_trips: Vec<RoundTripRow>,
    /// Waiting workflows at scale.
    pub scale: ScaleRow,
}

/// Runs both.
pub async fn run(raftoral_bin: &Path, samples: u64, waiting: u64) -> anyhow::Result<Signals> {
    let mut round_trips = Vec::new();
    for nodes in [1, 3] {
        let row = round_trip(raftoral_bin, nodes, samples).await?;
        println!(
            "signal round trip on {} node(s): p50 {:.2} ms, p99 {:.2} ms; one commit p50 {:.2} ms; ratio {:.2} (goal <= 2)",
            row.nodes, row.round_trip.p50_ms, row.round_trip.p99_ms, row.commit.p50_ms, row.ratio
        );
        round_trips.push(row);
    }
    let scale = scale(raftoral_bin, waiting).await?;
    println!(
        "scale: {} workflows waiting on 1 node: RSS {:.1} -> {:.1} MiB, {:.0} events/s at {IN_FLIGHT} in flight, {} completed",
        scale.waiting,
        scale.rss_before_mib,
        scale.rss_waiting_mib,
        scale.events_per_s,
        scale.completed
    );
    Ok(Signals { round_trips, scale })
}

fn durable(nodes: u64) -> Shape {
    Shape {
        nodes,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    }
}

/// Starts an `echo` workflow and waits (untimed) until its wait committed.
async fn waiting_echo(client: &RaftoralClient) -> anyhow::Result<String> {
    let id = client
        .start_workflow("echo", 1, &())
        .await?
        .workflow_id()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(1));
    while client.get_workflow(&id).await?.event_waits.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "workflow {id} never waited");
        poll.tick().await;
    }
    Ok(id)
}

/// Signals `id` with `n` and waits for the result; the result's wait is
/// sent beside the signal, as a caller that wants the answer would.
async fn signal_and_wait(client: &RaftoralClient, id: &str, n: u64) -> anyhow::Result<()> {
    let handle = client.workflow_handle(id);
    let (_, got) = tokio::try_join!(
        client.signal_workflow(id, "ping", &n, None),
        handle.result::<Option<u64>>()
    )?;
    anyhow::ensure!(got == Some(n), "workflow {id} echoed {got:?}, not {n}");
    Ok(())
}

async fn round_trip(raftoral_bin: &Path, nodes: u64, samples: u64) -> anyhow::Result<RoundTripRow> {
    let bench = Bench::start(durable(nodes), raftoral_bin).await?;
    let client = bench.client.clone();
    let (mut trips, mut commits) = (Recorder::new(), Recorder::new());
    // Warm up, then alternate one round trip and one commit, so both
    // meet the same machine.
    for n in 0..(samples + 20) {
        let id = waiting_echo(&client).await?;
        let t = Instant::now();
        signal_and_wait(&client, &id, n).await?;
        let trip = t.elapsed();
        let t = Instant::now();
        client
            .start_workflow_raw(&format!("commit-{n}"), "nobody-runs-this", 1, "null".into())
            .await?;
        let commit = t.elapsed();
        if n >= 20 {
            trips.record(trip);
            commits.record(commit);
        }
    }
    bench.stop().await;
    let (round_trip, commit) = (trips.summary(), commits.summary());
    Ok(RoundTripRow {
        nodes,
        ratio: round_trip.p50_ms / commit.p50_ms,
        round_trip,
        commit,
    })
}

async fn scale(raftoral_bin: &Path, waiting: u64) -> anyhow::Result<ScaleRow> {
    let bench = Bench::start(durable(1), raftoral_bin).await?;
    let client = bench.client.clone();
    for n in 0..100 {
        let id = waiting_echo(&client).await?;
        signal_and_wait(&client, &id, n).await?;
    }
    let rss_before_mib = bench.rss_mib(1).unwrap_or(0.0);
    let per_task = waiting.div_ceil(IN_FLIGHT as u64);
    let starts: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (t * per_task)..((t + 1) * per_task).min(waiting) {
                    ids.push((i, waiting_echo(&client).await?));
                }
                anyhow::Ok(ids)
            })
        })
        .collect();
    let mut batches = Vec::new();
    for task in futures::future::join_all(starts).await {
        batches.push(task??);
    }
    let rss_waiting_mib = bench.rss_mib(1).unwrap_or(0.0);
    let started = Instant::now();
    let sends: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let client = client.clone();
            tokio::spawn(async move {
                for (n, id) in batch {
                    client.signal_workflow(&id, "ping", &n, None).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in futures::future::join_all(sends).await {
        task??;
    }
    let events_per_s = waiting as f64 / started.elapsed().as_secs_f64();
    let results: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                for (n, id) in batch {
                    let got: Option<u64> = client.workflow_handle(&id).result().await?;
                    anyhow::ensure!(got == Some(n), "workflow {id} echoed {got:?}, not {n}");
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut completed = 0;
    for task in futures::future::join_all(results).await {
        completed += task??;
    }
    bench.stop().await;
    Ok(ScaleRow {
        waiting,
        rss_before_mib,
        rss_waiting_mib,
        events_per_s,
        completed,
    })
}
