//! In-process clusters: N engine nodes in one process, talking the real
//! node-to-node gRPC protocol over loopback (ports from port 0).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use raftoral::{Node, NodeConfig};
use tokio::net::TcpListener;

/// Nodes of one cluster; dropped when the value is.
pub struct LocalCluster {
    /// The nodes, by id.
    pub nodes: BTreeMap<u64, Node>,
    /// Storage directories, kept alive as long as the cluster.
    _dirs: Vec<tempfile::TempDir>,
}

impl LocalCluster {
    /// Starts `n` nodes; `durable` puts each log in a temp directory (fsync).
    pub async fn start(n: u64, durable: bool) -> anyhow::Result<LocalCluster> {
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
        }
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
            .collect::<anyhow::Result<_>>()?;
        let mut nodes = BTreeMap::new();
        let mut dirs = Vec::new();
        for (id, listener) in listeners {
            let storage_path = if durable {
                let dir = tempfile::tempdir()?;
                let path = dir.path().to_path_buf();
                dirs.push(dir);
                Some(path)
            } else {
                None
            };
            let config = NodeConfig {
                node_id: id,
                tick_interval: Duration::from_millis(20),
                peers: if n > 1 {
                    peers.clone()
                } else {
                    BTreeMap::new()
                },
                advertise: peers[&id].clone(),
                storage_path,
                ..NodeConfig::default()
            };
            let node = Node::start(config).await.context("start node")?;
            let service = node.cluster_service();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(service)
                    .serve_with_incoming(raftoral::consensus::transport::nodelay_incoming(
                        listener,
                    )),
            );
            nodes.insert(id, node);
        }
        let cluster = LocalCluster { nodes, _dirs: dirs };
        cluster.leader().await?;
        Ok(cluster)
    }

    /// Waits for a leader and returns it.
    pub async fn leader(&self) -> anyhow::Result<Node> {
        let first = self.nodes.values().next().expect("a node");
        if !first
            .wait_status(Duration::from_secs(20), |s| s.leader_id != 0)
            .await
        {
            bail!("no leader elected within 20 s");
        }
        let id = first.raft_status().leader_id;
        Ok(self.nodes[&id].clone())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}
