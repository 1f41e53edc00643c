//! `raftoral-bench`: Raftoral's benchmark harness (`make bench`). Prints a
//! table and writes the figures as JSON.

mod children;
mod cluster;
mod commit;
mod failover;
mod floors;
mod growth;
mod joining;
mod language_thread;
mod sdks;
mod sidecars;
mod signals;
mod stats;
mod timers;
mod workflows;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "raftoral-bench", about = "Raftoral benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw Raft commit latency and throughput: 1 and 3 nodes, memory and disk.
    Commit {
        /// Sequential samples after 200 warm-up commits.
        #[arg(long, default_value_t = 2000)]
        samples: u64,
        /// Commits per throughput measurement.
        #[arg(long, default_value_t = 20_000)]
        ops: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Workflow latency and throughput through the SDK, embedded vs sidecar,
    /// plus sidecar memory and leader and owner failover times.
    Workflows {
        /// Sequential runs per workload after 50 warm-ups.
        #[arg(long, default_value_t = 500)]
        runs: u64,
        /// Workflows per throughput measurement (a tenth at concurrency 1).
        #[arg(long, default_value_t = 2000)]
        workflows: u64,
        /// Kills of each kind (leader, owner) for the failover figures.
        #[arg(long, default_value_t = 5)]
        kills: u32,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The machine's floors: one fsync of an appended record, one round trip
    /// between two processes over loopback.
    Floors {
        /// Samples of each.
        #[arg(long, default_value_t = 5000)]
        samples: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The SDKs side by side: ping_pong and steps-10 on 1 and 3 sidecar
    /// nodes with a Rust, Python and Node worker in turn, and each worker's
    /// memory with workflows held open.
    Sdks {
        /// Python interpreter with the `raftoral-client` wheel installed
        /// (`make bench` builds a release wheel into target/bench/python).
        #[arg(long)]
        python: Option<PathBuf>,
        /// npm project with the `@raftoral/client` tarballs installed and
        /// bench/workers/worker.mjs copied in (`make bench` makes
        /// target/bench/node).
        #[arg(long)]
        node_project: Option<PathBuf>,
        /// Sequential runs per workload after 50 warm-ups.
        #[arg(long, default_value_t = 500)]
        runs: u64,
        /// Workflows per throughput measurement (a tenth at concurrency 1).
        #[arg(long, default_value_t = 2000)]
        workflows: u64,
        /// Workflows held open for the worker memory figure.
        #[arg(long, default_value_t = 10_000)]
        hold: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Growth: one durable sidecar node from 0 to N finished ping_pong
    /// workflows (64 in flight): throughput, RSS and snapshot size per
    /// tenth, latency with and without a snapshot being written, restart to
    /// serving.
    Growth {
        /// Finished workflows at the end.
        #[arg(long, default_value_t = 1_000_000)]
        workflows: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The cost of mutual TLS between the nodes: 3 durable sidecar nodes,
    /// steps-10, per-checkpoint latency and checkpoints/s at 256 in flight,
    /// plaintext and mTLS alternated in the same run.
    Tls {
        /// Sequential runs per row after 50 warm-ups.
        #[arg(long, default_value_t = 500)]
        runs: u64,
        /// Workflows per throughput measurement.
        #[arg(long, default_value_t = 2000)]
        workflows: u64,
        /// Plaintext/mTLS pairs of rows.
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Events: a signal's round trip to a waiting workflow's result against
    /// one commit on 1 and 3 durable nodes, and many workflows waiting at
    /// once on one node, then one event each (events/s, RSS).
    Signals {
        /// Round trips (and commits) measured per cluster shape.
        #[arg(long, default_value_t = 300)]
        samples: u64,
        /// Workflows waiting at once in the scale measurement.
        #[arg(long, default_value_t = 10_000)]
        waiting: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Child workflows: a parent awaiting N `ping_pong` children against
    /// one `ping_pong` alternated, on 1 and 3 durable nodes.
    Children {
        /// Parents measured per cluster shape.
        #[arg(long, default_value_t = 30)]
        samples: u64,
        /// Children per parent.
        #[arg(long, default_value_t = 100)]
        children: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Durable timers: lateness of workflows each sleeping 5 s on three
    /// durable nodes, and many timers pending at once on one node (RSS,
    /// restart to serving, all of them fired after the restart).
    Timers {
        /// Workflows of the lateness measurement.
        #[arg(long, default_value_t = 10_000)]
        workflows: u64,
        /// Timers pending at once in the scale measurement.
        #[arg(long, default_value_t = 100_000)]
        pending: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The Rust bench worker (internal; `sdks` starts it): serves the bench
    /// workflows on the sidecar at RAFTORAL_SIDECAR_URL.
    #[command(hide = true)]
    Worker {
        /// Run the workflow functions on threads of their own, as the
        /// bindings do (the `rust-thread` control rows).
        #[arg(long)]
        language_thread: bool,
    },
    /// The other process of the round-trip floor (internal).
    #[command(hide = true)]
    Echo,
    /// Failover time alone: SIGKILL the leader or a workflow owner under load,
    /// on a fresh 3-node sidecar cluster per kill.
    Failover {
        /// Which node to kill.
        #[arg(long, value_enum)]
        kind: failover::Kind,
        /// Kills (each on a fresh cluster).
        #[arg(long, default_value_t = 5)]
        kills: u32,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The SDK's reconnect warnings are expected: failover kills the
            // sidecar under a worker, which retries until the bench stops it.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,raftoral_client::stream=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Commit { samples, ops, out } => {
            let run = commit::CommitRun {
                samples,
                throughput_ops: ops,
                concurrency: vec![1, 64, 256],
            };
            let mut rows = Vec::new();
            println!(
                "{:<6} {:<13} {:>9} {:>9} {:>9} {:>12} {:>12} {:>12}",
                "nodes", "storage", "p50 ms", "p90 ms", "p99 ms", "c=1 /s", "c=64 /s", "c=256 /s"
            );
            for (nodes, durable) in [(1, false), (1, true), (3, false), (3, true)] {
                let row = commit::run(nodes, durable, &run).await?;
                let tp: Vec<String> = row
                    .throughput
                    .iter()
                    .map(|(_, t)| format!("{t:>12.0}"))
                    .collect();
                println!(
                    "{:<6} {:<13} {:>9.3} {:>9.3} {:>9.3} {}",
                    row.nodes,
                    row.storage,
                    row.latency.p50_ms,
                    row.latency.p90_ms,
                    row.latency.p99_ms,
                    tp.join(" ")
                );
                rows.push(row);
            }
            if let Some(out) = out {
                write_json(&out, &rows)?;
            }
        }
        Command::Workflows {
            runs,
            workflows: total,
            kills,
            out,
        } => {
            run_workflows(runs, total, kills, out).await?;
        }
        Command::Floors { samples, out } => {
            let floors = floors::measure(samples).await?;
            println!(
                "fsync of an appended {} B record: p50 {:.3} ms, p99 {:.3} ms",
                floors::PAYLOAD,
                floors.fsync.p50_ms,
                floors.fsync.p99_ms
            );
            println!(
                "round trip to another process over loopback TCP: p50 {:.3} ms, p99 {:.3} ms",
                floors.process_round_trip.p50_ms, floors.process_round_trip.p99_ms
            );
            if let Some(out) = out {
                write_json(&out, &floors)?;
            }
        }
        Command::Echo => floors::echo().await?,
        Command::Sdks {
            python,
            node_project,
            runs,
            workflows: total,
            hold,
            out,
        } => {
            let mut sdks = vec![sdks::Sdk::Rust, sdks::Sdk::RustThread];
            sdks.extend(python.map(sdks::Sdk::Python));
            sdks.extend(node_project.map(sdks::Sdk::Node));
            let run = sdks::run(&sidecars::raftoral_binary()?, &sdks, runs, total, hold).await?;
            if let Some(out) = out {
                write_json(&out, &run)?;
            }
        }
        Command::Worker {
            language_thread: false,
        } => workflows::serve_worker(workflows::handler).await?,
        // On the bindings' runtime, driven from a thread off this one's.
        Command::Worker {
            language_thread: true,
        } => tokio::task::spawn_blocking(language_thread::serve).await??,
        Command::Tls {
            runs,
            workflows,
            rounds,
            out,
        } => {
            let rows = tls_cost(runs, workflows, rounds).await?;
            if let Some(out) = out {
                write_json(&out, &rows)?;
            }
        }
        Command::Timers {
            workflows,
            pending,
            out,
        } => {
            let timers = timers::run(&sidecars::raftoral_binary()?, workflows, pending).await?;
            if let Some(out) = out {
                write_json(&out, &timers)?;
            }
        }
        Command::Signals {
            samples,
            waiting,
            out,
        } => {
            let signals = signals::run(&sidecars::raftoral_binary()?, samples, waiting).await?;
            if let Some(out) = out {
                write_json(&out, &signals)?;
            }
        }
        Command::Children {
            samples,
            children,
            out,
        } => {
            let rows = children::run(&sidecars::raftoral_binary()?, samples, children).await?;
            if let Some(out) = out {
                write_json(&out, &rows)?;
            }
        }
        Command::Growth { workflows, out } => {
            let growth = growth::run(&sidecars::raftoral_binary()?, workflows).await?;
            for (name, l) in [
                ("no flush or snapshot being written", &growth.outside_flush),
                (
                    "overlapping a flush or a snapshot write",
                    &growth.during_flush,
                ),
            ] {
                println!(
                    "workflow latency, {name}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    l.count, l.p50_ms, l.p99_ms, l.max_ms
                );
            }
            println!(
                "restart (SIGKILL) to serving: {:.0} ms",
                growth.restart_to_serving_ms
            );
            let j = &growth.join;
            println!(
                "a node joining: caught up as a voter in {:.0} ms; {} commits and {} refused meanwhile; leader lost in {} samples; joiner RSS {:.0} MiB",
                j.caught_up_ms,
                j.commits_during,
                j.refused_during,
                j.leader_lost_samples,
                j.joiner_rss_mib
            );
            for (name, l) in [
                ("before the join", &j.start_before),
                ("during the join", &j.start_during),
            ] {
                println!(
                    "a start (one commit) {name}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    l.count, l.p50_ms, l.p99_ms, l.max_ms
                );
            }
            if let Some(out) = out {
                write_json(&out, &growth)?;
            }
        }
        Command::Failover { kind, kills, out } => {
            let series = failover::series(kind, &sidecars::raftoral_binary()?, kills).await?;
            if let Some(out) = out {
                write_json(&out, &serde_json::json!({ kind.key(): series }))?;
            }
        }
    }
    Ok(())
}

/// Plaintext and mTLS rows, alternated so that both see the same machine
/// load; prints each row and the mTLS/plaintext ratio of each pair.
async fn tls_cost(
    runs: u64,
    total: u64,
    rounds: u32,
) -> anyhow::Result<Vec<workflows::WorkflowRow>> {
    use std::sync::Arc;
    use workflows::{Bench, Mode, Shape, Workload};
    let bin = sidecars::raftoral_binary()?;
    println!(
        "{:<6} {:<10} {:>14} {:>14} {:>12}",
        "round", "transport", "cp p50 ms", "cp p99 ms", "c=256 cp/s"
    );
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let mut pair = Vec::new();
        for tls in [false, true] {
            let shape = Shape {
                nodes: 3,
                durable: true,
                mode: Mode::Sidecar,
                tls,
            };
            let bench = Arc::new(Bench::start(shape, &bin).await?);
            let row = bench
                .measure(shape, "rust", Workload::Steps(10), runs, total)
                .await?;
            let cp = row.checkpoint.clone().unwrap_or_default();
            let at_256 = row.throughput.last().map(|t| t.2).unwrap_or_default();
            println!(
                "{:<6} {:<10} {:>14.3} {:>14.3} {:>12.0}",
                round,
                if tls { "mTLS" } else { "plaintext" },
                cp.p50_ms,
                cp.p99_ms,
                at_256
            );
            pair.push((cp.p50_ms, at_256));
            rows.push(row);
            if let Ok(bench) = Arc::try_unwrap(bench) {
                bench.stop().await;
            }
        }
        println!(
            "round {round}: mTLS / plaintext checkpoint p50 {:.3}, c=256 checkpoints/s {:.3}",
            pair[1].0 / pair[0].0,
            pair[1].1 / pair[0].1
        );
    }
    Ok(rows)
}

/// Writes `value` as pretty JSON to `out`, creating its directory.
fn write_json(out: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(value)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

async fn run_workflows(
    runs: u64,
    total: u64,
    kills: u32,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use workflows::{Bench, Mode, Shape, Workload};
    let bin = sidecars::raftoral_binary()?;
    let mut rows = Vec::new();
    println!(
        "{:<5} {:<6} {:<9} {:<10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "nodes",
        "disk",
        "mode",
        "workload",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "c=1 wf/s",
        "c=64 wf/s",
        "c=256 wf/s",
        "c=256 cp/s"
    );
    for (nodes, durable) in [(1, true), (3, true)] {
        for mode in [Mode::Embedded, Mode::Sidecar] {
            let shape = Shape {
                nodes,
                durable,
                mode,
                tls: false,
            };
            let bench = Arc::new(Bench::start(shape, &bin).await?);
            for workload in [
                Workload::PingPong,
                Workload::Steps(10),
                Workload::Parallel(10),
                Workload::FlakyOnce,
            ] {
                let row = bench.measure(shape, "rust", workload, runs, total).await?;
                println!(
                    "{:<5} {:<6} {:<9} {:<10} {:>8.3} {:>8.3} {:>8.3} {:>10.0} {:>10.0} {:>10.0} {:>12.0}",
                    nodes,
                    durable,
                    format!("{mode:?}"),
                    row.workload,
                    row.latency.p50_ms,
                    row.latency.p90_ms,
                    row.latency.p99_ms,
                    row.throughput[0].1,
                    row.throughput[1].1,
                    row.throughput[2].1,
                    row.throughput[2].2
                );
                rows.push(row);
            }
            if let Ok(bench) = Arc::try_unwrap(bench) {
                bench.stop().await;
            }
        }
    }
    for r in &rows {
        if let Some(c) = &r.checkpoint {
            println!(
                "checkpoint as the workflow sees it, {} nodes, {:?}, {}: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
                r.shape.nodes, r.shape.mode, r.workload, c.p50_ms, c.p90_ms, c.p99_ms
            );
        }
    }
    // Issue 26's goals, measured in this run: 10 steps awaited together
    // against the same 10 in sequence, and a step that fails once.
    let p50 = |shape: &workflows::Shape, name: &str| {
        rows.iter()
            .find(|r| {
                r.shape.nodes == shape.nodes && r.shape.mode == shape.mode && r.workload == name
            })
            .map(|r| r.latency.p50_ms)
    };
    for r in rows.iter().filter(|r| r.workload == "steps-10") {
        if let (Some(seq), Some(par), Some(flaky), Some(plain)) = (
            p50(&r.shape, "steps-10"),
            p50(&r.shape, "parallel-10"),
            p50(&r.shape, "flaky_once"),
            p50(&r.shape, "ping_pong"),
        ) {
            println!(
                "{} nodes, {:?}: steps-10 / parallel-10 p50 {:.2} (goal >= 4); flaky_once / ping_pong p50 {:.2} (goal <= 2)",
                r.shape.nodes,
                r.shape.mode,
                seq / par,
                flaky / plain
            );
        }
    }
    // Sidecar / embedded latency ratios, same shape and workload.
    let mut ratios = Vec::new();
    for r in rows.iter().filter(|r| r.shape.mode == Mode::Sidecar) {
        if let Some(e) = rows.iter().find(|e| {
            e.shape.mode == Mode::Embedded
                && e.shape.nodes == r.shape.nodes
                && e.workload == r.workload
        }) {
            let ratio = r.latency.p50_ms / e.latency.p50_ms;
            println!(
                "sidecar/embedded p50 ratio, {} nodes, {}: {ratio:.2}",
                r.shape.nodes, r.workload
            );
            ratios.push(serde_json::json!({"nodes": r.shape.nodes, "workload": r.workload, "p50_ratio": ratio}));
        }
    }
    // Memory: sidecar RSS idle, then with 10,000 running workflows.
    let shape = Shape {
        nodes: 3,
        durable: true,
        mode: Mode::Sidecar,
        tls: false,
    };
    let bench = Bench::start(shape, &bin).await?;
    let idle = bench.rss_mib(1).unwrap_or(0.0);
    for _ in 0..10_000 {
        bench.client.start_workflow("hold", 1, &()).await?;
    }
    let busy = bench.rss_mib(1).unwrap_or(0.0);
    println!(
        "sidecar RSS (node 1 of 3, disk): idle {idle:.1} MiB, 10,000 running workflows {busy:.1} MiB"
    );
    bench.stop().await;
    // Failover: leader, then owner SIGKILL under load.
    let leader = failover::series(failover::Kind::Leader, &bin, kills).await?;
    let owner = failover::series(failover::Kind::Owner, &bin, kills).await?;
    if let Some(out) = out {
        let json = serde_json::json!({
            "workflows": rows,
            "ratios": ratios,
            "memory_mib": {"idle": idle, "running_10000": busy},
            failover::Kind::Leader.key(): leader,
            failover::Kind::Owner.key(): owner,
        });
        write_json(&out, &json)?;
    }
    Ok(())
}
