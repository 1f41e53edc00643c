//! Helpers shared by the engine's integration tests (each test crate uses
//! a subset, hence the allow).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;

/// Binds `n` loopback listeners on port 0 first, so every node's peer list
/// holds real addresses that are already taken: (listeners, peers by id).
pub async fn bound_peers(
    n: u64,
) -> anyhow::Result<(BTreeMap<u64, TcpListener>, BTreeMap<u64, String>)> {
    let mut listeners = BTreeMap::new();
    for id in 1..=n {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
    }
    let peers = listeners
        .iter()
        .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
        .collect::<anyhow::Result<_>>()?;
    Ok((listeners, peers))
}

/// Polls `check` every 10 ms until it holds; panics after 30 s naming `what`.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tick.tick().await;
    }
}

/// A cluster of `n` in-memory nodes serving `ClusterService` on loopback
/// (default timing), with a leader elected: (nodes by id, their addresses).
pub async fn served_cluster(
    n: u64,
) -> anyhow::Result<(BTreeMap<u64, raftoral::Node>, BTreeMap<u64, String>)> {
    served_cluster_with(n, |_| {}).await
}

/// [`served_cluster`] with `tweak` applied to every node's configuration.
pub async fn served_cluster_with(
    n: u64,
    tweak: impl Fn(&mut raftoral::NodeConfig),
) -> anyhow::Result<(BTreeMap<u64, raftoral::Node>, BTreeMap<u64, String>)> {
    let (listeners, peers) = bound_peers(n).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let mut config = raftoral::NodeConfig {
            node_id: id,
            peers: peers.clone(),
            advertise: peers[&id].clone(),
            ..raftoral::NodeConfig::default()
        };
        tweak(&mut config);
        let node = raftoral::Node::start(config).await?;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(node.cluster_service())
                .serve_with_incoming(raftoral::consensus::transport::nodelay_incoming(listener)),
        );
        nodes.insert(id, node);
    }
    let first = nodes[&1].clone();
    until("a leader", || first.raft_status().leader_id != 0).await;
    Ok((nodes, peers))
}
