//! Joining: a new node is a learner until it has caught up, so a slow or
//! lost snapshot never stops the cluster's writes, and a lost snapshot is
//! sent again.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::{Node, NodeConfig};
use tokio::net::TcpListener;

mod common;
use common::until;

fn serve(node: &Node, listener: TcpListener) {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(node.cluster_service())
            .serve_with_incoming(raftoral::consensus::transport::nodelay_incoming(listener)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_is_a_learner_until_caught_up_and_a_lost_snapshot_is_sent_again()
-> anyhow::Result<()> {
    let (mut listeners, addrs) = common::bound_peers(2).await?;
    let config = |id: u64| NodeConfig {
        node_id: id,
        tick_interval: Duration::from_millis(20),
        advertise: addrs[&id].clone(),
        proposal_timeout: Duration::from_secs(2),
        snapshot_entries: 50,
        snapshot_keep_entries: 10,
        ..NodeConfig::default()
    };
    let first = Node::start(NodeConfig {
        peers: BTreeMap::from([(1, addrs[&1].clone())]),
        ..config(1)
    })
    .await?;
    serve(&first, listeners.remove(&1).unwrap());
    // Enough entries that the joiner needs a snapshot.
    for i in 0..200 {
        first
            .start_workflow(Some(format!("w{i}")), "nobody_runs_this", 1, "null".into())
            .await?;
    }
    assert!(first.raft_status().first_index > 2, "the log was compacted");
    let joiner = Node::start(NodeConfig {
        join: true,
        ..config(2)
    })
    .await?;
    serve(&joiner, listeners.remove(&2).unwrap());
    // The snapshots the joiner receives are lost on the way at first.
    joiner.transport().faults().drop_snapshots(true);
    first.add_node(2, &addrs[&2]).await?;
    // (The status is published after the apply that answered add_node.)
    until("the joiner to be a learner", || {
        first.raft_status().learners == vec![2]
    })
    .await;
    assert!(!first.raft_status().voters.contains(&2));
    // The quorum is still node 1 alone: writes go on.
    first
        .start_workflow(Some("during".into()), "nobody_runs_this", 1, "null".into())
        .await?;
    until("a snapshot to be lost", || {
        joiner.transport().faults().snapshots_dropped() > 0
    })
    .await;
    joiner.transport().faults().drop_snapshots(false);
    until("the joiner to catch up and be promoted to voter", || {
        let status = first.raft_status();
        status.voters.contains(&2) && joiner.raft_status().applied_index >= status.commit_index
    })
    .await;
    assert!(joiner.read(|sm| sm.workflow("during").is_some()));
    first
        .start_workflow(Some("after".into()), "nobody_runs_this", 1, "null".into())
        .await?;
    joiner.shutdown().await;
    first.shutdown().await;
    Ok(())
}
