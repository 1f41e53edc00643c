//! Retention: the leader removes finished workflows past the retention
//! period through Raft, so every node removes the same ones, and a read of
//! a removed workflow says why it is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::proto::sidecar::v1::{GetWorkflowRequest, WorkflowStatus};
use raftoral::{ClientApi, NodeConfig};
use raftoral_embedded::EmbeddedNode;

#[path = "../../engine/tests/common/mod.rs"]
mod common;
use common::until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_workflows_are_removed_on_every_node_after_the_retention_period()
-> anyhow::Result<()> {
    let (listeners, peers) = common::bound_peers(3).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let config = NodeConfig {
            node_id: id,
            tick_interval: Duration::from_millis(20),
            peers: peers.clone(),
            retention: Some(Duration::from_millis(300)),
            ..NodeConfig::default()
        };
        nodes.insert(id, EmbeddedNode::start_on(config, Some(listener)).await?);
    }
    let first = nodes[&1].node().clone();
    assert!(
        first
            .wait_status(Duration::from_secs(30), |s| s.leader_id != 0)
            .await
    );
    // Nobody runs these: one is cancelled (finished), one stays pending.
    first
        .start_workflow(Some("done".into()), "nobody", 1, "null".into())
        .await?;
    first
        .start_workflow(Some("waiting".into()), "nobody", 1, "null".into())
        .await?;
    let cancelled = first.cancel_workflow("done", "finished").await?;
    assert_eq!(cancelled.status, WorkflowStatus::Cancelled);
    for node in nodes.values() {
        let node = node.node().clone();
        until("the finished workflow to be removed on every node", || {
            node.read(|sm| sm.workflow("done").is_none())
        })
        .await;
        assert!(node.workflow("waiting").is_some(), "unfinished work stays");
    }
    let missing = ClientApi::new(nodes[&2].node().clone())
        .get_workflow(GetWorkflowRequest {
            workflow_id: "done".into(),
        })
        .await
        .expect_err("removed");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing.message().contains("retention"),
        "{}",
        missing.message()
    );
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}
