//! Hostile input on the node-to-node port: frames that once stopped a node
//! are dropped, traffic without a cluster id is refused, and a Raft loop
//! that dies for any reason makes the node report itself unhealthy.

use std::time::Duration;

use raftoral::api::probes::{ProbeFailure, health, readiness};
use raftoral::proto::cluster::v1::{
    RaftEnvelope, RaftRequest, cluster_service_client::ClusterServiceClient,
};
use raftoral::{Node, NodeConfig};

mod common;
use common::until;

/// One `Raft` call carrying `frames` as messages of one batch.
async fn send_frames(
    address: &str,
    from: u64,
    cluster_id: &str,
    frames: &[&[u8]],
) -> Result<(), tonic::Status> {
    let mut client = ClusterServiceClient::connect(format!("http://{address}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let batch = RaftRequest {
        from_node_id: from,
        messages: frames
            .iter()
            .map(|f| RaftEnvelope {
                group_id: 0,
                message: f.to_vec().into(),
            })
            .collect(),
        from_address: String::new(),
        cluster_id: cluster_id.to_owned(),
    };
    client
        .raft(tokio_stream::iter(vec![batch]))
        .await
        .map(|_| ())
}

/// Commits one command through `node`, retrying while leadership settles.
async fn commits(node: &Node) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut retry = tokio::time::interval(Duration::from_millis(20));
    loop {
        match node.start_workflow(None, "probe", 1, "null".into()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                retry.tick().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_proposals_and_read_requests_no_longer_stop_a_node() -> anyhow::Result<()> {
    let (nodes, peers) = common::served_cluster(3).await?;
    let leader = nodes[&1].raft_status().leader_id;
    let follower = *nodes.keys().find(|id| **id != leader).unwrap();
    let other = *nodes
        .keys()
        .find(|id| **id != leader && **id != follower)
        .unwrap();
    let cluster_id = nodes[&1].transport().cluster_id();

    // MsgPropose without entries (08 02) made raft-rs panic on the leader,
    // directly or forwarded by a follower; MsgReadIndex without entries
    // (08 0f) indexed out of bounds.
    let frames: [&[u8]; 2] = [&[0x08, 0x02], &[0x08, 0x0f]];
    for target in [leader, follower] {
        send_frames(&peers[&target], other, &cluster_id, &frames).await?;
    }
    // The same frames claiming to come from a proper member, as one.
    for target in [leader, follower] {
        let mut propose = raft::prelude::Message::default();
        propose.set_msg_type(raft::prelude::MessageType::MsgPropose);
        propose.from = other;
        propose.to = target;
        let bytes = protobuf::Message::write_to_bytes(&propose)?;
        send_frames(&peers[&target], other, &cluster_id, &[&bytes]).await?;
    }
    until("the frames to be refused", || {
        nodes[&leader].transport().refused_messages() >= 3
            && nodes[&follower].transport().refused_messages() >= 3
    })
    .await;
    for node in nodes.values() {
        commits(node).await?;
        assert_eq!(health(node), Ok(()), "node {}", node.id());
    }

    // Without a cluster id, a stranger's traffic is refused outright: an
    // empty id no longer skips the cluster check.
    let refused = send_frames(&peers[&leader], 9, "", &frames)
        .await
        .expect_err("traffic without a cluster id must be refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("no cluster id"),
        "{}",
        refused.message()
    );

    for node in nodes.values() {
        node.shutdown().await;
    }
    Ok(())
}

/// An encoded `MsgPropose` from `from` to `to` that would start workflow
/// `id`: a forged command, as an anonymous client could send it.
fn forged_start(from: u64, to: u64, id: &str) -> anyhow::Result<Vec<u8>> {
    use prost::Message as _;
    use raftoral::proto::cluster::v1::{Command, StartWorkflow, command::Kind};
    let command = Command {
        proposer_node_id: from,
        proposal_id: 0,
        proposed_at_ms: 0,
        kind: Some(Kind::StartWorkflow(StartWorkflow {
            workflow_id: id.into(),
            workflow_name: "forged".into(),
            version: 1,
            input: "null".into(),
            origin_node_id: to,
            start_delay_ms: 0,
            execution_timeout_ms: 0,
            signal: None,
        })),
    };
    let mut propose = raft::prelude::Message::default();
    propose.set_msg_type(raft::prelude::MessageType::MsgPropose);
    propose.from = from;
    propose.to = to;
    propose.entries.push(raft::prelude::Entry {
        data: command.encode_to_vec().into(),
        ..Default::default()
    });
    Ok(protobuf::Message::write_to_bytes(&propose)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_from_non_members_or_other_groups_are_not_applied() -> anyhow::Result<()> {
    let (nodes, peers) = common::served_cluster(3).await?;
    let leader = nodes[&1].raft_status().leader_id;
    let member = *nodes.keys().find(|id| **id != leader).unwrap();
    let cluster_id = nodes[&1].transport().cluster_id();
    // From node 9, which is no member.
    let stranger = forged_start(9, leader, "from-a-stranger")?;
    send_frames(&peers[&leader], 9, &cluster_id, &[&stranger]).await?;
    // From a member's id, but for another Raft group.
    let mut client = ClusterServiceClient::connect(format!("http://{}", peers[&leader])).await?;
    let other_group = RaftRequest {
        from_node_id: member,
        messages: vec![RaftEnvelope {
            group_id: 7,
            message: forged_start(member, leader, "for-another-group")?.into(),
        }],
        from_address: String::new(),
        cluster_id: cluster_id.clone(),
    };
    client.raft(tokio_stream::iter(vec![other_group])).await?;
    until("the stranger's proposal to be refused", || {
        nodes[&leader].transport().refused_messages() >= 1
    })
    .await;
    // Anything stepped before this commit is applied by its end.
    commits(&nodes[&leader]).await?;
    assert!(nodes[&leader].workflow("from-a-stranger").is_none());
    assert!(nodes[&leader].workflow("for-another-group").is_none());
    for node in nodes.values() {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_loop_that_panics_fails_health_and_stops_the_node() -> anyhow::Result<()> {
    let node = Node::start(NodeConfig::default()).await?;
    assert_eq!(health(&node), Ok(()));
    node.transport().faults().crash_raft_loop();
    until("the node to stop", || node.is_shutting_down()).await;
    let failure = health(&node).expect_err("a dead Raft loop must fail health");
    assert!(
        matches!(&failure, ProbeFailure::Stopped(why) if why.contains("panicked")),
        "{failure:?}"
    );
    assert!(failure.to_string().contains("restart it"), "{failure}");
    assert_eq!(readiness(&node), Err(failure.clone()));
    assert_eq!(node.failure(), Some(failure.to_string()));
    let metrics = raftoral::api::metrics::render(&node);
    assert!(metrics.contains("\nraftoral_node_healthy 0\n"), "{metrics}");
    assert!(metrics.contains("\nraftoral_node_ready 0\n"), "{metrics}");
    // Shutdown still returns: the task ended, it did not hang.
    node.shutdown().await;
    Ok(())
}
