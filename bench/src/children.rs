//! Child workflows: a parent that starts N `ping_pong` children and awaits
//! them together, against one `ping_pong` measured alternated in the same
//! run, on 1 and 3 durable sidecar nodes (the caller and the worker on
//! node 1). Goal: the parent of 100 children at most 5x one `ping_pong`.
//! Beside them, the same work without a parent: the client starts 100
//! `ping_pong`s at once and awaits them all.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::stats::{Latency, Recorder};
use crate::workflows::{Bench, Mode, Shape};

/// One cluster shape.
#[derive(Debug, Serialize)]
pub struct FanOutRow {
    /// Nodes.
    pub nodes: u64,
    /// Children per parent.
    pub children: u64,
    /// Start of the parent to its result.
    pub parent: Latency,
    /// One `ping_pong`, start to result, alternated with the parents.
    pub ping_pong: Latency,
    /// The same children's work without a parent: the client starts as
    /// many `ping_pong`s at once and awaits them all, alternated too.
    pub client_fan_out: Latency,
    /// parent p50 / ping_pong p50 (goal: at most 5 for 100 children).
    pub ratio: f64,
}

/// Runs the fan-out on 1 and 3 nodes.
pub async fn run(
    raftoral_bin: &Path,
    samples: u64,
    children: u64,
) -> anyhow::Result<Vec<FanOutRow>> {
    let mut rows = Vec::new();
    for nodes in [1, 3] {
        let row = fan_out(raftoral_bin, nodes, samples, children).await?;
        println!(
            "{} children on {} node(s): parent p50 {:.2} ms, p99 {:.2} ms; one ping_pong p50 {:.2} ms; ratio {:.2} (goal <= 5); the client's own fan-out of as many p50 {:.2} ms",
            row.children,
            row.nodes,
            row.parent.p50_ms,
            row.parent.p99_ms,
            row.ping_pong.p50_ms,
            row.ratio,
            row.client_fan_out.p50_ms
        );
        rows.push(row);
    }
    Ok(rows)
}

async fn fan_out(
    raftoral_bin: &Path,
    nodes: u64,
    samples: u64,
    children: u64,
) -> anyhow::Result<FanOutRow> {
    let shape = Shape {
        nodes,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    };
    let bench = Bench::start(shape, raftoral_bin).await?;
    let client = bench.client.clone();
    let (mut parents, mut pings, mut fans) = (Recorder::new(), Recorder::new(), Recorder::new());
    for n in 0..(samples + 3) {
        let t = Instant::now();
        let done: usize = client
            .start_workflow("fanout", 1, &children)
            .await?
            .result()
            .await?;
        let parent = t.elapsed();
        anyhow::ensure!(done as u64 == children, "the parent saw {done} children");
        let t = Instant::now();
        let pong: String = client
            .start_workflow("ping_pong", 1, &"ping")
            .await?
            .result()
            .await?;
        let ping = t.elapsed();
        anyhow::ensure!(pong == "pong", "ping_pong answered {pong}");
        let t = Instant::now();
        let starts = (0..children).map(|_| client.start_workflow("ping_pong", 1, &"ping"));
        let handles = futures::future::try_join_all(starts).await?;
        let results = handles.iter().map(|h| h.result::<String>());
        futures::future::try_join_all(results).await?;
        let fan = t.elapsed();
        if n >= 3 {
            parents.record(parent);
            pings.record(ping);
            fans.record(fan);
        }
    }
    bench.stop().await;
    let (parent, ping_pong, client_fan_out) = (parents.summary(), pings.summary(), fans.summary());
    Ok(FanOutRow {
        nodes,
        children,
        ratio: parent.p50_ms / ping_pong.p50_ms,
        parent,
        ping_pong,
        client_fan_out,
    })
}
