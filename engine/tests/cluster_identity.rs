//! A cluster's identity: fixed at bootstrap, the same on every member,
//! kept across restarts, learnt by a joining node, and checked on every
//! batch of Raft traffic so two clusters cannot talk to each other.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::proto::cluster::v1::{
    RaftEnvelope, RaftRequest, cluster_service_client::ClusterServiceClient,
};
use raftoral::{Node, NodeConfig};
use tokio::net::TcpListener;

mod common;
use common::until;

const DEADLINE: Duration = Duration::from_secs(30);

fn config(id: u64, peers: &BTreeMap<u64, String>, dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        node_id: id,
        tick_interval: Duration::from_millis(20),
        peers: peers.clone(),
        advertise: peers.get(&id).cloned().unwrap_or_default(),
        storage_path: Some(dir.join(format!("n{id}"))),
        ..NodeConfig::default()
    }
}

fn serve(node: &Node, listener: TcpListener) {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(node.cluster_service())
            .serve_with_incoming(raftoral::consensus::transport::nodelay_incoming(listener)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_one_id_keep_it_teach_it_and_refuse_other_clusters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (listeners, peers) = common::bound_peers(3).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let node = Node::start(config(id, &peers, dir.path())).await?;
        serve(&node, listener);
        nodes.insert(id, node);
    }
    let id = nodes[&1].transport().cluster_id();
    assert!(!id.is_empty());
    for node in nodes.values() {
        assert_eq!(node.transport().cluster_id(), id, "one id per cluster");
    }
    assert!(nodes[&1].wait_status(DEADLINE, |s| s.leader_id != 0).await);
    let leader = nodes[&nodes[&1].raft_status().leader_id].clone();

    // Traffic that claims another cluster is refused with a clear reason.
    let mut raw = ClusterServiceClient::connect(format!("http://{}", peers[&1])).await?;
    let foreign = RaftRequest {
        from_node_id: 2,
        messages: vec![RaftEnvelope::default()],
        from_address: "10.9.9.9:7001".into(),
        cluster_id: "some-other-cluster".into(),
    };
    let err = raw
        .raft(tokio_stream::iter(vec![foreign]))
        .await
        .expect_err("another cluster's traffic must be refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("some-other-cluster"),
        "{}",
        err.message()
    );

    // A joining node learns the id from the leader's snapshot.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let joiner = Node::start(NodeConfig {
        join: true,
        peers: BTreeMap::new(),
        advertise: address.clone(),
        ..config(4, &BTreeMap::new(), dir.path())
    })
    .await?;
    serve(&joiner, listener);
    assert_eq!(
        joiner.transport().cluster_id(),
        "",
        "unknown before joining"
    );
    leader.add_node(4, &address).await?;
    until("the joiner to learn the cluster id", || {
        joiner.transport().cluster_id() == id
    })
    .await;

    // A restart from storage keeps it (the id comes from the stored
    // snapshot, not from the peer list).
    let one = nodes.remove(&1).unwrap();
    one.shutdown().await;
    let restarted = Node::start(NodeConfig {
        peers: BTreeMap::new(),
        ..config(1, &peers, dir.path())
    })
    .await?;
    assert_eq!(restarted.transport().cluster_id(), id);

    // A node bootstrapped alone gets an id of its own.
    let alone = Node::start(NodeConfig::default()).await?;
    assert!(!alone.transport().cluster_id().is_empty());
    assert_ne!(alone.transport().cluster_id(), id);

    for node in nodes.values().chain([&joiner, &restarted, &alone]) {
        node.shutdown().await;
    }
    Ok(())
}
