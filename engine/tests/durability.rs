//! What a commit costs on disk: engine nodes in one process with their logs
//! on disk, talking the node-to-node gRPC protocol over loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::{Node, NodeConfig};

const DEADLINE: Duration = Duration::from_secs(30);

mod common;

/// Starts `n` durable nodes on listeners bound to port 0.
async fn cluster(n: u64, dir: &std::path::Path) -> anyhow::Result<BTreeMap<u64, Node>> {
    let (listeners, peers) = common::bound_peers(n).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let node = Node::start(NodeConfig {
            node_id: id,
            tick_interval: Duration::from_millis(20),
            peers: peers.clone(),
            advertise: peers[&id].clone(),
            storage_path: Some(dir.join(format!("n{id}"))),
            ..NodeConfig::default()
        })
        .await?;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(node.cluster_service())
                .serve_with_incoming(raftoral::consensus::transport::nodelay_incoming(listener)),
        );
        nodes.insert(id, node);
    }
    Ok(nodes)
}

/// A commit is one fsync on the leader: its entries. The hard state's new
/// commit index is written but not synced on its own (raft-rs `must_sync`);
/// syncing it doubled the leader's fsyncs and put one on every commit's path.
#[tokio::test]
async fn a_sequential_commit_costs_the_leader_one_fsync() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes = cluster(3, dir.path()).await?;
    let first = &nodes[&1];
    assert!(
        first.wait_status(DEADLINE, |s| s.leader_id != 0).await,
        "no leader elected"
    );
    let leader = &nodes[&first.raft_status().leader_id];
    // Settle the election's own entries first.
    leader
        .start_workflow(None, "nobody_runs_this", 1, "warm-up".into())
        .await?;
    let (before, term) = (leader.store().fsyncs(), leader.raft_status().term);
    const COMMITS: u64 = 100;
    for i in 0..COMMITS {
        leader
            .start_workflow(None, "nobody_runs_this", 1, format!("{i}").into())
            .await?;
    }
    let fsyncs = leader.store().fsyncs() - before;
    // A leader change would add fsyncs of its own; the figure only means
    // something within one term.
    assert_eq!(
        leader.raft_status().term,
        term,
        "the leader changed mid-test"
    );
    assert!(
        fsyncs >= COMMITS,
        "every commit needs its entry durable: {fsyncs} fsyncs for {COMMITS} commits"
    );
    assert!(
        fsyncs < COMMITS + COMMITS / 4,
        "{fsyncs} fsyncs for {COMMITS} sequential commits: more than one per commit"
    );
    for node in nodes.values() {
        node.shutdown().await;
    }
    Ok(())
}

/// Commands handed over together (`Node::propose_all`, what an app's
/// steps side by side become) share one append and one fsync, where one
/// by one each would pay its own.
#[tokio::test]
async fn commands_proposed_together_share_one_fsync() -> anyhow::Result<()> {
    use raftoral::proto::cluster::v1::{StartWorkflow, command::Kind};
    let dir = tempfile::tempdir()?;
    let nodes = cluster(1, dir.path()).await?;
    let node = &nodes[&1];
    assert!(
        node.wait_status(DEADLINE, |s| s.leader_id == 1).await,
        "the single node leads"
    );
    node.start_workflow(None, "nobody_runs_this", 1, "warm-up".into())
        .await?;
    const COMMANDS: u64 = 50;
    let kinds = (0..COMMANDS)
        .map(|i| {
            Kind::StartWorkflow(StartWorkflow {
                workflow_id: format!("together-{i}"),
                workflow_name: "nobody_runs_this".into(),
                version: 1,
                input: "{}".into(),
                origin_node_id: 1,
                start_delay_ms: 0,
                execution_timeout_ms: 0,
                signal: None,
            })
        })
        .collect();
    let before = node.store().fsyncs();
    let outcomes = node.propose_all(kinds).await;
    let fsyncs = node.store().fsyncs() - before;
    assert_eq!(outcomes.len() as u64, COMMANDS);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    for i in 0..COMMANDS {
        assert!(node.workflow(&format!("together-{i}")).is_some());
    }
    assert!(
        fsyncs <= 2,
        "{fsyncs} fsyncs for {COMMANDS} commands proposed together"
    );
    node.shutdown().await;
    Ok(())
}
