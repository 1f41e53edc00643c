//! Node configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::consensus::storage::StorageOptions;
use crate::error::EngineError;

/// Settings of a [`crate::Node`]. The defaults suit a local cluster.
///
/// ```
/// use raftoral::NodeConfig;
/// let config = NodeConfig { node_id: 2, ..NodeConfig::default() };
/// assert_eq!(config.node_id, 2);
/// ```
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft node id; must not be 0 (raft-rs reserves it).
    pub node_id: u64,
    /// Interval of a Raft tick.
    pub tick_interval: Duration,
    /// Ticks without a heartbeat before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Longest wait for a proposal to commit.
    pub proposal_timeout: Duration,
    /// Largest checkpoint value, input or result, in bytes.
    pub max_value_bytes: usize,
    /// Events buffered per subscriber before a slow one is dropped (it then
    /// resynchronises from the state).
    pub event_buffer: usize,
    /// Proposals queued for the Raft loop before proposers wait.
    pub proposal_queue: usize,
    /// Initial members (id → node-to-node address, this node included) of a
    /// new cluster. Every node listed starts with the same membership, so
    /// nodes started at once form exactly one cluster. Empty: a cluster of
    /// this node alone. Ignored once the storage holds data.
    pub peers: BTreeMap<u64, String>,
    /// Start outside any membership and wait to be added (`JoinCluster`).
    pub join: bool,
    /// This node's node-to-node address as others reach it.
    pub advertise: String,
    /// Directory of the Raft log and snapshots; `None` keeps them in memory.
    pub storage_path: Option<PathBuf>,
    /// On-disk log tuning.
    pub storage: StorageOptions,
    /// Applied entries between state-machine snapshots.
    pub snapshot_entries: u64,
    /// Entries kept behind a snapshot for followers that lag a little.
    pub snapshot_keep_entries: u64,
    /// On the leader, the log is kept back to the slowest healthy follower
    /// (heard from within `owner_timeout`), so a short hiccup does not cost
    /// it a whole snapshot, but never more than this many entries behind
    /// a snapshot.
    pub snapshot_max_retained_entries: u64,
    /// Largest node-to-node gRPC message, both ways. Snapshots travel in
    /// chunks of [`NodeConfig::snapshot_chunk_bytes`], so their size has no
    /// bound.
    pub max_frame_bytes: usize,
    /// Bytes of snapshot state per chunk of a transfer; below
    /// `max_frame_bytes`.
    pub snapshot_chunk_bytes: usize,
    /// An owner node the leader has not heard from this long has its
    /// workflows moved to another node. Must be above the longest election
    /// timeout (twice [`NodeConfig::election_timeout`]).
    pub owner_timeout: Duration,
    /// An owner whose app has been disconnected this long has its workflows
    /// moved to another node.
    pub app_timeout: Duration,
    /// Finished workflows are removed this long after they finished (decided
    /// by the leader through Raft, so every node removes the same ones);
    /// `None` keeps them forever.
    pub retention: Option<Duration>,
    /// Most finished workflows one retention purge removes; a backlog
    /// (retention enabled over millions of finished workflows) goes in
    /// chunks of this size, one log entry each, so applying a purge never
    /// stalls a node's Raft loop for long. At least 1.
    pub purge_chunk: usize,
    /// Mutual TLS on the node-to-node port: this node's certificate and
    /// key, and the CA every peer's certificate must chain to (required
    /// here). `None` serves and dials plaintext.
    pub tls: Option<crate::consensus::tls::TlsFiles>,
    /// How often the TLS files are checked for a rotation.
    pub tls_reload_interval: Duration,
    /// How long a cancelled running workflow's code may clean up (run
    /// compensation steps) before it is cancelled whatever it does, when
    /// the cancel gives no window of its own. Zero cancels at once.
    pub cancel_cleanup: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            tick_interval: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            proposal_timeout: Duration::from_secs(10),
            max_value_bytes: 4 * 1024 * 1024,
            event_buffer: 65_536,
            proposal_queue: 4096,
            peers: BTreeMap::new(),
            join: false,
            advertise: String::new(),
            storage_path: None,
            storage: StorageOptions::default(),
            snapshot_entries: 10_000,
            snapshot_keep_entries: 1_000,
            snapshot_max_retained_entries: 50_000,
            max_frame_bytes: crate::consensus::transport::MAX_FRAME,
            snapshot_chunk_bytes: 1024 * 1024,
            owner_timeout: Duration::from_millis(1500),
            app_timeout: Duration::from_secs(5),
            retention: Some(DEFAULT_RETENTION),
            purge_chunk: 4096,
            tls: None,
            tls_reload_interval: crate::consensus::tls::DEFAULT_RELOAD_INTERVAL,
            cancel_cleanup: DEFAULT_CANCEL_CLEANUP,
        }
    }
}

/// The cleanup window of a cancel by default: 30 s. Long enough for a few
/// compensation steps (each a commit of milliseconds, plus the call it
/// makes), short enough that a workflow whose code ignores the
/// cancellation, or whose app hangs, still ends soon. Temporal leaves it
/// unbounded (a workflow may ignore a cancel forever); a bound keeps the
/// promise that a cancel ends the workflow.
pub const DEFAULT_CANCEL_CLEANUP: Duration = Duration::from_secs(30);

/// How long finished workflows stay queryable by default: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl NodeConfig {
    /// The base election timeout (`tick_interval` x `election_ticks`);
    /// raft-rs randomises the real one between this and twice this.
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval * self.election_ticks as u32
    }

    /// Checks the settings; the message says which one is wrong.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::Config(m.to_owned()));
        if self.node_id == 0 {
            return bad("node_id must be at least 1");
        }
        if self.tick_interval.is_zero() {
            return bad("tick_interval must be positive");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(
                "election_ticks must be greater than heartbeat_ticks, which must be at least 1",
            );
        }
        if self.purge_chunk == 0 {
            return bad("purge_chunk must be at least 1");
        }
        if self.proposal_timeout.is_zero() {
            return bad("proposal_timeout must be positive");
        }
        if self.event_buffer == 0 || self.proposal_queue == 0 {
            return bad("event_buffer and proposal_queue must be positive");
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            return bad("the peer list must include this node's own id");
        }
        if self.peers.contains_key(&0) {
            return bad("peer ids must be at least 1");
        }
        if self.join && !self.peers.is_empty() {
            return bad(
                "a joining node takes no initial peer list: it learns the members from the cluster",
            );
        }
        if let Some(tls) = &self.tls
            && tls.ca.is_none()
        {
            return bad(
                "node-to-node TLS needs the CA bundle that signs every node's certificate (RAFTORAL_TLS_CA): without it peers cannot be checked",
            );
        }
        if self.tls.is_some() && self.tls_reload_interval.is_zero() {
            return bad("tls_reload_interval must be positive");
        }
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes + 1024 > self.max_frame_bytes
        {
            return bad(
                "snapshot_chunk_bytes must be positive and at least 1 KiB below max_frame_bytes",
            );
        }
        if self.snapshot_entries == 0 {
            return bad("snapshot_entries must be positive");
        }
        // A leader elected after a crash has heard from nobody yet; owners
        // it has not heard from within the owner timeout lose their
        // workflows, so that timeout must outlast the longest election
        // (raft-rs randomises it up to twice the base).
        let longest_election = self.election_timeout() * 2;
        if self.owner_timeout <= longest_election {
            return Err(EngineError::Config(format!(
                "the owner timeout (--owner-timeout-ms) of {} ms must be above the longest election timeout, 2 x election ticks x tick interval = {} ms: raise it or shorten the election timeout",
                self.owner_timeout.as_millis(),
                longest_election.as_millis()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_timeout_within_the_longest_election_is_refused() {
        let ok = NodeConfig::default();
        assert!(ok.validate().is_ok());
        // 2 x 10 ticks x 50 ms = 1 s: equal is not above.
        let config = NodeConfig {
            owner_timeout: Duration::from_millis(1000),
            ..NodeConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("owner timeout"), "{e}");
        assert!(e.contains("1000 ms"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let faster = NodeConfig {
            tick_interval: Duration::from_millis(20),
            ..config
        };
        assert!(faster.validate().is_ok());
    }

    #[test]
    fn a_purge_chunk_of_zero_is_refused() {
        let config = NodeConfig {
            purge_chunk: 0,
            ..NodeConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("purge_chunk must be at least 1"), "{e}");
    }
}
