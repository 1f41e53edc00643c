//! `raftoral serve` settings: each a flag and an environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
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

    /// Address other nodes use to reach this one (host:port). Default: the
    /// listen address, with POD_IP (or 127.0.0.1) when it listens on all
    /// interfaces.
    #[arg(long, env = "RAFTORAL_ADVERTISE")]
    pub advertise: Option<String>,

    /// Initial members of a new cluster as ID=HOST:PORT,... including this
    /// node. Every listed node starts with this same membership, so nodes
    /// started at once form exactly one cluster. Ignored on restart.
    #[arg(long, env = "RAFTORAL_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Number of initial members expected in --peers; a mismatch stops the
    /// node (guards against a half-edited peer list).
    #[arg(long, env = "RAFTORAL_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,

    /// Join a running cluster through this member's node-to-node address
    /// (host:port). The node starts empty and is added as a voter.
    #[arg(long, env = "RAFTORAL_JOIN", conflicts_with = "peers")]
    pub join: Option<String>,

    /// Directory for the Raft log and snapshots. Without it the node keeps
    /// everything in memory and loses it when it stops.
    #[arg(long, env = "RAFTORAL_STORAGE_PATH")]
    pub storage_path: Option<PathBuf>,

    /// Applied entries between state-machine snapshots (the log is compacted
    /// behind each).
    #[arg(long, env = "RAFTORAL_SNAPSHOT_ENTRIES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_entries: u64,

    /// Entries kept in the log behind a snapshot for followers that lag a
    /// little; one that lags more is sent the snapshot.
    #[arg(long, env = "RAFTORAL_SNAPSHOT_KEEP_ENTRIES", default_value_t = 1_000)]
    pub snapshot_keep_entries: u64,

    /// On the leader, the log is kept back to the slowest follower heard
    /// from within the owner timeout (so a short hiccup does not cost it a
    /// whole snapshot), but never more than this many entries behind a
    /// snapshot.
    #[arg(
        long,
        env = "RAFTORAL_SNAPSHOT_MAX_RETAINED_ENTRIES",
        default_value_t = 50_000
    )]
    pub snapshot_max_retained_entries: u64,

    /// Size at which a log segment is closed; compaction deletes whole
    /// segments, so this bounds the disk a compacted log keeps.
    #[arg(long, env = "RAFTORAL_LOG_SEGMENT_BYTES", default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    pub log_segment_bytes: u64,

    /// Milliseconds without Raft contact after which an owner node's
    /// workflows move to another node.
    #[arg(long, env = "RAFTORAL_OWNER_TIMEOUT_MS", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..))]
    pub owner_timeout_ms: u64,

    /// Milliseconds an owner's app may stay disconnected before its
    /// workflows move to another node.
    #[arg(long, env = "RAFTORAL_APP_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub app_timeout_ms: u64,

    /// Milliseconds a cancelled running workflow's code may clean up (run
    /// compensation steps) when the cancel gives no window; 0 cancels at
    /// once.
    #[arg(long, env = "RAFTORAL_CANCEL_CLEANUP_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(0..=31_622_400_000))]
    pub cancel_cleanup_ms: u64,

    /// Raft ticks without a leader before a follower campaigns.
    #[arg(long, env = "RAFTORAL_ELECTION_TICKS", default_value_t = 10)]
    pub election_ticks: usize,

    /// Raft ticks between leader heartbeats.
    #[arg(long, env = "RAFTORAL_HEARTBEAT_TICKS", default_value_t = 2)]
    pub heartbeat_ticks: usize,

    /// Largest checkpoint value, workflow input or result, in bytes.
    #[arg(long, env = "RAFTORAL_MAX_VALUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_value_bytes: usize,

    /// Raft tick interval in milliseconds. With the default 10 election ticks
    /// a follower campaigns 0.5-1 s after the leader goes silent.
    #[arg(long, env = "RAFTORAL_TICK_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub tick_ms: u64,

    /// Longest wait for a proposal to commit, in milliseconds.
    #[arg(long, env = "RAFTORAL_PROPOSAL_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub proposal_timeout_ms: u64,

    /// How long finished workflows stay queryable: a number with a unit
    /// (`7d`, `12h`, `30m`, `45s`, `500ms`), or `off` to keep them forever.
    /// Removal is decided by the leader through Raft: every node removes the
    /// same ones, and GetWorkflow then answers NOT_FOUND with the reason.
    #[arg(long, env = "RAFTORAL_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Retention,

    #[command(flatten)]
    pub tls: crate::tls_args::NodeTlsArgs,

    /// Milliseconds between checks of the TLS files for a rotation.
    #[arg(long, env = "RAFTORAL_TLS_RELOAD_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_ms: u64,

    /// Plain HTTP address for /health, /ready and /metrics. Required with
    /// node-to-node TLS (the kubelet and Prometheus present no client
    /// certificate); without TLS these are also served on --listen.
    #[arg(long, env = "RAFTORAL_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,

    /// Certificate (PEM) of the app API; with --app-tls-key the app API
    /// serves TLS. Needed to bind --sidecar-listen beyond loopback.
    #[arg(long, env = "RAFTORAL_APP_TLS_CERT", requires = "app_tls_key")]
    pub app_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --app-tls-cert.
    #[arg(long, env = "RAFTORAL_APP_TLS_KEY", requires = "app_tls_cert")]
    pub app_tls_key: Option<PathBuf>,

    /// CA bundle (PEM) for app client certificates: when set, apps must
    /// present a certificate signed by it.
    #[arg(long, env = "RAFTORAL_APP_TLS_CA", requires = "app_tls_cert")]
    pub app_tls_ca: Option<PathBuf>,

    /// Bearer token every app stream and client call must carry
    /// (`authorization: Bearer <token>`); calls without it get
    /// UNAUTHENTICATED.
    #[arg(long, env = "RAFTORAL_APP_TOKEN", hide_env_values = true)]
    pub app_token: Option<crate::app_auth::AppToken>,

    /// Serve the app API in plaintext even on a non-loopback
    /// --sidecar-listen (anyone who reaches it can start and cancel
    /// workflows).
    #[arg(long, env = "RAFTORAL_APP_INSECURE")]
    pub app_insecure: bool,

    /// Serve the app API without authentication (no --app-token, no
    /// --app-tls-ca) on a non-loopback --sidecar-listen: anyone who
    /// reaches the port can register as a worker, start and cancel
    /// workflows.
    #[arg(long, env = "RAFTORAL_APP_UNAUTHENTICATED")]
    pub app_unauthenticated: bool,

    /// On SIGTERM, leave the cluster before stopping: hand leadership over,
    /// then have the leader remove this node (its running workflows move
    /// to the others). For members that never come back under the same
    /// id, such as a Kubernetes Deployment's pods; not for a node that
    /// restarts from its storage (a StatefulSet's pods).
    #[arg(long, env = "RAFTORAL_LEAVE_ON_STOP")]
    pub leave_on_stop: bool,

    /// Longest a leave may take before the node stops anyway (`20s`);
    /// keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "RAFTORAL_LEAVE_TIMEOUT", default_value = "20s", value_parser = crate::discovery::parse_duration)]
    pub leave_timeout: Duration,

    /// Write the bound addresses as JSON to this file once serving
    /// (useful with port 0).
    #[arg(long, env = "RAFTORAL_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Peer discovery (static or Kubernetes).
    #[command(flatten)]
    pub discovery: crate::discovery::DiscoveryArgs,
}

impl ServeArgs {
    /// The engine configuration these settings describe; `advertise` is the
    /// resolved node-to-node address.
    pub fn node_config(&self, advertise: String) -> anyhow::Result<NodeConfig> {
        let peers = parse_peers(&self.peers)?;
        if let Some(expect) = self.bootstrap_expect
            && !peers.is_empty()
            && expect != peers.len()
        {
            bail!(
                "RAFTORAL_BOOTSTRAP_EXPECT is {expect} but RAFTORAL_PEERS lists {} nodes; list every initial member",
                peers.len()
            );
        }
        let config = NodeConfig {
            node_id: self.node_id,
            tick_interval: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            proposal_timeout: Duration::from_millis(self.proposal_timeout_ms),
            max_value_bytes: self.max_value_bytes,
            peers,
            join: self.join.is_some(),
            advertise,
            storage_path: self.storage_path.clone(),
            snapshot_entries: self.snapshot_entries,
            snapshot_keep_entries: self.snapshot_keep_entries,
            snapshot_max_retained_entries: self.snapshot_max_retained_entries,
            owner_timeout: Duration::from_millis(self.owner_timeout_ms),
            app_timeout: Duration::from_millis(self.app_timeout_ms),
            cancel_cleanup: Duration::from_millis(self.cancel_cleanup_ms),
            retention: self.retention.0,
            tls: self.tls.files()?,
            tls_reload_interval: Duration::from_millis(self.tls_reload_ms),
            storage: raftoral::consensus::storage::StorageOptions {
                segment_bytes: self.log_segment_bytes,
            },
            ..NodeConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The app API's TLS files, when it serves TLS.
    pub fn app_tls(&self) -> Option<raftoral::consensus::tls::TlsFiles> {
        Some(raftoral::consensus::tls::TlsFiles {
            cert: self.app_tls_cert.clone()?,
            key: self.app_tls_key.clone()?,
            ca: self.app_tls_ca.clone(),
            server_name: None,
        })
    }

    /// Refuses listener settings that would expose the app API, or leave
    /// the probes unreachable, before anything is bound.
    pub fn check_listeners(&self) -> anyhow::Result<()> {
        if !self.sidecar_listen.ip().is_loopback()
            && self.app_tls_cert.is_none()
            && !self.app_insecure
        {
            bail!(
                "--sidecar-listen {} is not a loopback address and the app API has no TLS: set --app-tls-cert and --app-tls-key (RAFTORAL_APP_TLS_CERT, RAFTORAL_APP_TLS_KEY), listen on 127.0.0.1, or pass --app-insecure (RAFTORAL_APP_INSECURE=true) to serve it in plaintext anyway",
                self.sidecar_listen
            );
        }
        if !self.sidecar_listen.ip().is_loopback()
            && !self.app_authenticated()
            && !self.app_unauthenticated
        {
            bail!(
                "--sidecar-listen {} is not a loopback address and the app API asks callers for no credentials: set --app-token (RAFTORAL_APP_TOKEN) or --app-tls-ca (RAFTORAL_APP_TLS_CA, client certificates), listen on 127.0.0.1, or pass --app-unauthenticated (RAFTORAL_APP_UNAUTHENTICATED=true) to let anyone who reaches the port run workflows",
                self.sidecar_listen
            );
        }
        if self.tls.files()?.is_some() && self.probe_listen.is_none() {
            bail!(
                "with node-to-node TLS, /health, /ready and /metrics need a plain HTTP port of their own (probes and Prometheus present no client certificate): set --probe-listen (RAFTORAL_PROBE_LISTEN), e.g. 0.0.0.0:7002"
            );
        }
        Ok(())
    }

    /// True when app API callers must prove who they are: a bearer token,
    /// or a client certificate signed by --app-tls-ca.
    pub fn app_authenticated(&self) -> bool {
        self.app_token.is_some() || (self.app_tls_cert.is_some() && self.app_tls_ca.is_some())
    }

    /// The address other nodes reach this one at.
    pub fn advertise_for(&self, bound: SocketAddr) -> String {
        if let Some(a) = &self.advertise {
            return a.clone();
        }
        if bound.ip().is_unspecified() {
            let host = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into());
            return format!("{host}:{}", bound.port());
        }
        bound.to_string()
    }
}

/// A retention period; `None` keeps finished workflows forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// Parses `7d`, `12h`, `30m`, `45s`, `500ms` or `off`.
fn parse_retention(value: &str) -> Result<Retention, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(Retention(None));
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("'{value}' has no unit: write e.g. 7d, 12h, 30m, 45s, 500ms or off")
    })?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{value}' does not start with a number: write e.g. 7d or off"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{value}': use ms, s, m, h or d"
            ));
        }
    };
    if number == 0 {
        return Err("a retention of 0 would remove workflows as they finish; write 'off' to keep them forever".into());
    }
    Ok(Retention(Some(Duration::from_millis(
        number.saturating_mul(millis),
    ))))
}

/// Parses `ID=HOST:PORT` items.
fn parse_peers(items: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("peer '{item}' is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("peer '{item}': the id is not a number"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            bail!("peer '{item}': the address must be HOST:PORT");
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            bail!("peer id {id} appears twice in RAFTORAL_PEERS");
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_a_unit_or_off() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_retention("7d"), Ok(Retention(Some(day * 7))));
        assert_eq!(
            parse_retention("500ms"),
            Ok(Retention(Some(Duration::from_millis(500))))
        );
        assert_eq!(parse_retention("off"), Ok(Retention(None)));
        for bad in ["7", "d", "7w", "0s", "-1h"] {
            assert!(parse_retention(bad).is_err(), "{bad} accepted");
        }
    }
}
