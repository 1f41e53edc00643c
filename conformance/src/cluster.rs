//! Multi-node harness: N `raftoral serve` processes forming one cluster over
//! loopback, with kill, restart and status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use raftoral_client::proto::cluster::v1::{
    ClusterStatusRequest, ClusterStatusResponse, cluster_service_client::ClusterServiceClient,
};
use tokio::process::{Child, Command};

use crate::{DEADLINE, bin_dir};

/// One node of a [`Cluster`].
pub struct ClusterNode {
    /// Raft node id.
    pub id: u64,
    /// Node-to-node address.
    pub raft_addr: String,
    /// App API URL (kept across restarts, so apps reconnect by themselves).
    pub url: String,
    /// The plain HTTP probe address (`--probe-listen`), when the node has one.
    pub probe_addr: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: PathBuf,
}

/// A cluster of real sidecar processes.
pub struct Cluster {
    /// Nodes by id.
    pub nodes: BTreeMap<u64, ClusterNode>,
    /// Working directory (logs, storage).
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
    /// TLS for the harness's own admin calls ([`Cluster::status`]) to nodes
    /// serving mutual TLS.
    pub admin_tls: Option<tonic::transport::ClientTlsConfig>,
}

/// A free loopback port for a node that must be named in its peers' lists
/// before it starts. Picked at run time below the kernel's ephemeral range
/// (32768 and up on Linux): a port the OS handed out with port 0 and that we
/// released could be taken again at once by any outbound connection of a
/// parallel test, while ports below that range are only ever bound on purpose.
fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 20)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut x = seed | 1;
    for _ in 0..200 {
        // xorshift: a cheap spread over the range, no dependency needed.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port found between 20000 and 32000")
}

impl Cluster {
    /// Starts `n` nodes at once with the same peer list. `storage` puts each
    /// node's log on disk; `extra` flags go to every node, with `{id}`
    /// replaced by the node's id (e.g. per-node certificate files).
    pub async fn start(n: u64, storage: bool, extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            addrs.insert(id, format!("127.0.0.1:{}", free_port()?));
        }
        let peers: Vec<String> = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            admin_tls: None,
        };
        for (id, addr) in &addrs {
            let mut args = vec!["--peers".to_string(), peers.join(",")];
            if storage {
                args.push("--storage-path".into());
                args.push(
                    cluster
                        .dir
                        .path()
                        .join(format!("data{id}"))
                        .display()
                        .to_string(),
                );
            }
            cluster.spawn(*id, addr.clone(), args)?;
        }
        for id in 1..=n {
            cluster.wait_serving(id).await?;
        }
        Ok(cluster)
    }

    /// Starts a new node that joins through `via`'s node-to-node address.
    pub async fn join(&mut self, id: u64, via: u64, storage: bool) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec!["--join".to_string(), self.nodes[&via].raft_addr.clone()];
        if storage {
            args.push("--storage-path".into());
            args.push(
                self.dir
                    .path()
                    .join(format!("data{id}"))
                    .display()
                    .to_string(),
            );
        }
        self.spawn(id, addr, args)?;
        self.wait_serving(id).await
    }

    fn spawn(&mut self, id: u64, raft_addr: String, args: Vec<String>) -> anyhow::Result<()> {
        self.spawn_with(id, raft_addr, args, Vec::new())
    }

    /// Starts node `id` listening for node-to-node traffic on `raft_addr`
    /// (`HOST:PORT`; a host address other than loopback where a test needs
    /// one) with `args` and `env`, without waiting for it.
    pub fn spawn_with(
        &mut self,
        id: u64,
        raft_addr: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let node_dir = self.dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut node = ClusterNode {
            id,
            raft_addr,
            url: String::new(),
            probe_addr: None,
            args,
            env,
            child: None,
            dir: node_dir,
        };
        node.child = Some(self.command(&node)?);
        self.nodes.insert(id, node);
        Ok(())
    }

    fn command(&self, node: &ClusterNode) -> anyhow::Result<Child> {
        let _ = std::fs::remove_file(node.dir.join("addr.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("sidecar.log"))?;
        Command::new(bin_dir().join("raftoral"))
            .arg("serve")
            .args(["--node-id", &node.id.to_string()])
            .args([
                "--listen",
                &node.raft_addr,
                "--sidecar-listen",
                sidecar_listen(&node.url),
            ])
            .args(["--tick-ms", "20", "--proposal-timeout-ms", "3000"])
            .arg("--addr-file")
            .arg(node.dir.join("addr.json"))
            .args(&node.args)
            .args(
                self.extra
                    .iter()
                    .map(|a| a.replace("{id}", &node.id.to_string())),
            )
            .env("RUST_LOG", "info,raftoral=debug")
            .env("RAFTORAL_FAULT_FILE", node.dir.join("faults"))
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn raftoral serve")
    }

    /// A cluster with no node yet: nodes come as pods ([`Cluster::spawn_pod`]).
    pub fn empty(extra: &[&str]) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            nodes: BTreeMap::new(),
            dir: tempfile::tempdir()?,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            admin_tls: None,
        })
    }

    /// Starts node `id` with `args` and `env` on a port picked now, without
    /// waiting for it (a discovering node serves only once it has decided
    /// how to start); returns its node-to-node port.
    pub fn spawn_pod(
        &mut self,
        id: u64,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<u16> {
        let port = free_port()?;
        self.spawn_with(id, format!("127.0.0.1:{port}"), args, env)?;
        Ok(port)
    }

    /// A port for a pod whose address is published before its process
    /// starts ([`Cluster::spawn_with`]).
    pub fn pick_port() -> anyhow::Result<u16> {
        free_port()
    }

    /// Stops node `id` gracefully (SIGTERM) and forgets it, as when its pod
    /// is deleted.
    pub async fn remove(&mut self, id: u64) -> anyhow::Result<()> {
        if self.nodes[&id].child.is_some() {
            self.terminate(id).await?;
        }
        self.nodes.remove(&id);
        Ok(())
    }

    /// Waits until node `id` has written its address file (it serves).
    pub async fn wait_serving(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).expect("node");
        let file = node.dir.join("addr.json");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            if let Ok(text) = std::fs::read_to_string(&file) {
                let v: serde_json::Value = serde_json::from_str(&text)?;
                node.url = format!("http://{}", v["sidecar"].as_str().unwrap_or_default());
                node.probe_addr = v["probe"].as_str().map(str::to_owned);
                return Ok(());
            }
            if let Some(child) = node.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("node {id} exited with {status}:\n{}", node.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node {id} did not serve within {DEADLINE:?}");
            }
        }
    }

    /// SIGKILLs a node.
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes.get_mut(&id).expect("node").child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Sends a signal by name to a node (`STOP` pauses it with its
    /// connections open, `CONT` resumes it).
    pub async fn signal(&self, id: u64, name: &str) -> anyhow::Result<()> {
        let child = self.nodes[&id].child.as_ref().context("node not running")?;
        crate::signal(child, name).await
    }

    /// SIGTERM: the node must shut down gracefully and exit 0.
    pub async fn terminate(&mut self, id: u64) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self
            .nodes
            .get_mut(&id)
            .expect("node")
            .child
            .take()
            .context("node not running")?;
        crate::terminate(&mut child).await
    }

    /// Starts a killed node again with its original arguments and storage.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let child = self.command(&self.nodes[&id])?;
        self.nodes.get_mut(&id).expect("node").child = Some(child);
        self.wait_serving(id).await
    }

    /// A node's cluster status.
    pub async fn status(&self, id: u64) -> anyhow::Result<ClusterStatusResponse> {
        let addr = &self.nodes[&id].raft_addr;
        let endpoint = match &self.admin_tls {
            Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?
                .tls_config(tls.clone())?,
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
        };
        let mut client = ClusterServiceClient::connect(endpoint).await?;
        Ok(client
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Waits until every listed node sees the same leader and the members
    /// `expected`; returns the leader.
    pub async fn wait_agreement(&self, nodes: &[u64], expected: &[u64]) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut last = String::new();
        loop {
            tick.tick().await;
            let mut leaders = Vec::new();
            let mut agreed = true;
            for id in nodes {
                match self.status(*id).await {
                    Ok(s) => {
                        let members: Vec<u64> = s.members.iter().map(|m| m.node_id).collect();
                        agreed &= members == expected && s.leader_id != 0;
                        leaders.push(s.leader_id);
                        last = format!("node {id}: leader {} members {members:?}", s.leader_id);
                    }
                    Err(e) => {
                        agreed = false;
                        last = format!("node {id}: {e}");
                    }
                }
            }
            if agreed && leaders.windows(2).all(|w| w[0] == w[1]) {
                return Ok(leaders[0]);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no agreement on leader and members {expected:?} within {DEADLINE:?}; last: {last}"
                );
            }
        }
    }

    /// Cuts the network between `side` and every other node (both
    /// directions); an empty `side` heals all partitions.
    pub fn partition(&self, side: &[u64]) -> anyhow::Result<()> {
        for (id, node) in &self.nodes {
            let blocked: Vec<String> = if side.is_empty() {
                Vec::new()
            } else if side.contains(id) {
                self.nodes
                    .keys()
                    .filter(|k| !side.contains(k))
                    .map(|k| k.to_string())
                    .collect()
            } else {
                side.iter().map(|k| k.to_string()).collect()
            };
            let tmp = node.dir.join("faults.tmp");
            std::fs::write(&tmp, blocked.join(" "))?;
            std::fs::rename(&tmp, node.dir.join("faults"))?;
        }
        Ok(())
    }

    /// Cuts node `id` off from every other node and waits until it has lost
    /// its leader (the fault file is picked up asynchronously), so nothing
    /// the others commit from now on can reach it.
    pub async fn cut_off(&self, id: u64) -> anyhow::Result<()> {
        self.partition(&[id])?;
        crate::eventually_async(DEADLINE, "the cut-off node to lose its leader", || async {
            Ok(self.status(id).await?.leader_id == 0)
        })
        .await
    }

    /// Makes node `id`'s Raft loop panic (the `crash-raft-loop` word of the
    /// fault file), as a bug would.
    pub fn crash_raft_loop(&self, id: u64) -> anyhow::Result<()> {
        let dir = &self.nodes[&id].dir;
        std::fs::write(dir.join("faults.tmp"), "crash-raft-loop")?;
        std::fs::rename(dir.join("faults.tmp"), dir.join("faults"))?;
        Ok(())
    }

    /// Waits until node `id`'s process exits by itself; its exit status.
    pub async fn wait_exit(&mut self, id: u64) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self
            .nodes
            .get_mut(&id)
            .expect("node")
            .child
            .take()
            .context("node not running")?;
        Ok(tokio::time::timeout(DEADLINE, child.wait())
            .await
            .with_context(|| format!("node {id} did not exit within {DEADLINE:?}"))??)
    }

    /// A node's log.
    pub fn log(&self, id: u64) -> String {
        self.nodes[&id].log()
    }
}

/// Port 0 the first time, then the address the node got.
fn sidecar_listen(url: &str) -> &str {
    if url.is_empty() {
        "127.0.0.1:0"
    } else {
        url.trim_start_matches("http://")
    }
}

impl ClusterNode {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sidecar.log")).unwrap_or_default()
    }
}

/// Lines of each node's log shown when a cluster is dropped.
const LOG_TAIL_LINES: usize = 40;

impl Drop for Cluster {
    /// Prints the tail of every node's log. The test harness captures it and
    /// shows it only for a failing test, where the logs (in a temporary
    /// directory) would otherwise be gone with the cluster.
    fn drop(&mut self) {
        for (id, node) in &self.nodes {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!("--- node {id}: last {} lines of its log ---", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}
