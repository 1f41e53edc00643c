//! `raftoral`: the Raftoral sidecar and its command-line client.

mod app_api;
mod cli_cluster;
mod cli_workflow;
mod config;
mod faults;
mod http_api;
mod join;
mod server;
mod workflow_api;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Raftoral: durable workflows replicated by Raft, served to your app on
/// localhost.
#[derive(Debug, Parser)]
#[command(name = "raftoral", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a sidecar node.
    Serve(Box<config::ServeArgs>),
    /// Start, inspect, wait for and cancel workflows.
    Workflow(cli_workflow::WorkflowArgs),
    /// Inspect and change the cluster membership.
    Cluster(cli_cluster::ClusterArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftoral: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => server::serve(*args).await,
            Command::Workflow(args) => cli_workflow::run(args).await,
            Command::Cluster(args) => cli_cluster::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, with the causes, instead of a backtrace.
            eprintln!("raftoral: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
