//! `raftoral-bench`: Raftoral's benchmark harness (`make bench`). Prints a
//! table and writes the figures as JSON.

mod cluster;
mod commit;
mod stats;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
                println!("wrote {}", out.display());
            }
        }
    }
    Ok(())
}
