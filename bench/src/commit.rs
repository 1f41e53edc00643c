//! Raw commit latency and throughput: one replicated command (a start of a
//! workflow nobody runs, so nothing but the log and the state machine is
//! involved) proposed on the leader and waited for until applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use raftoral::Node;
use serde::Serialize;

use crate::cluster::LocalCluster;
use crate::stats::{Latency, Recorder};

/// One row of the commit benchmark.
#[derive(Debug, Serialize)]
pub struct CommitRow {
    /// Nodes in the cluster.
    pub nodes: u64,
    /// "memory" or "disk (fsync)".
    pub storage: &'static str,
    /// Sequential commit latency.
    pub latency: Latency,
    /// Commits per second at each concurrency.
    pub throughput: Vec<(usize, f64)>,
}

/// Settings of one run.
pub struct CommitRun {
    /// Sequential samples after warm-up.
    pub samples: u64,
    /// Commits per throughput measurement.
    pub throughput_ops: u64,
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
}

async fn commit_once(node: &Node, n: u64) -> anyhow::Result<()> {
    node.start_workflow(
        Some(format!("bench-{n}")),
        "bench",
        1,
        Bytes::from_static(b"null"),
    )
    .await?;
    Ok(())
}

/// Measures one cluster shape.
pub async fn run(nodes: u64, durable: bool, run: &CommitRun) -> anyhow::Result<CommitRow> {
    let cluster = LocalCluster::start(nodes, durable).await?;
    let leader = cluster.leader().await?;
    let counter = Arc::new(AtomicU64::new(0));
    for _ in 0..200 {
        commit_once(&leader, counter.fetch_add(1, Ordering::Relaxed)).await?;
    }
    // Measured inside a runtime task, like the throughput tasks and like a
    // real caller (a gRPC handler), not on the blocking main thread.
    let samples = run.samples;
    let recorder = tokio::spawn({
        let (leader, counter) = (leader.clone(), counter.clone());
        async move {
            let mut recorder = Recorder::new();
            for _ in 0..samples {
                let t = Instant::now();
                commit_once(&leader, counter.fetch_add(1, Ordering::Relaxed)).await?;
                recorder.record(t.elapsed());
            }
            anyhow::Ok(recorder)
        }
    })
    .await??;
    let mut throughput = Vec::new();
    for &c in &run.concurrency {
        let started = Instant::now();
        let per_task = run.throughput_ops / c as u64;
        let tasks: Vec<_> = (0..c)
            .map(|_| {
                let (leader, counter) = (leader.clone(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        commit_once(&leader, counter.fetch_add(1, Ordering::Relaxed)).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in futures::future::join_all(tasks).await {
            t??;
        }
        let ops = per_task * c as u64;
        throughput.push((c, ops as f64 / started.elapsed().as_secs_f64()));
    }
    cluster.shutdown().await;
    Ok(CommitRow {
        nodes,
        storage: if durable { "disk (fsync)" } else { "memory" },
        latency: recorder.summary(),
        throughput,
    })
}
