//! `raftoral serve` settings: each a flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use raftoral::NodeConfig;

/// Settings of `raftoral serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the app API (app stream and client API). Keep it on
    /// loopback: apps reach their sidecar on localhost.
    #[arg(
        long,
        env = "RAFTORAL_SIDECAR_LISTEN",
        default_value = "127.0.0.1:9001"
    )]
    pub sidecar_listen: SocketAddr,

    /// Address for node-to-node traffic (Raft messages between sidecars).
    #[arg(long, env = "RAFTORAL_LISTEN", default_value = "0.0.0.0:7001")]
    pub listen: SocketAddr,

    /// Raft node id of this sidecar (at least 1, unique in the cluster).
    #[arg(long, env = "RAFTORAL_NODE_ID", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,

    /// Directory for the Raft log and snapshots. Without it the node keeps
    /// everything in memory and loses it when it stops.
    #[arg(long, env = "RAFTORAL_STORAGE_PATH")]
    pub storage_path: Option<PathBuf>,

    /// Largest checkpoint value, workflow input or result, in bytes.
    #[arg(long, env = "RAFTORAL_MAX_VALUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_value_bytes: usize,

    /// Raft tick interval in milliseconds.
    #[arg(long, env = "RAFTORAL_TICK_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub tick_ms: u64,

    /// Longest wait for a proposal to commit, in milliseconds.
    #[arg(long, env = "RAFTORAL_PROPOSAL_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub proposal_timeout_ms: u64,

    /// Write the bound addresses as JSON to this file once serving
    /// (useful with port 0).
    #[arg(long, env = "RAFTORAL_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The engine configuration these settings describe.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            node_id: self.node_id,
            tick_interval: Duration::from_millis(self.tick_ms),
            proposal_timeout: Duration::from_millis(self.proposal_timeout_ms),
            max_value_bytes: self.max_value_bytes,
            ..NodeConfig::default()
        }
    }
}
