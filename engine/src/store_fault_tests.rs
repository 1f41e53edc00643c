//! Faults of the state machine's store, injected into a real node on disk:
//! a flush that cannot be written and a read that fails. Either stops the
//! node like a failed fsync; clients get an error, never a wrong answer;
//! a restart loses nothing that was acknowledged.

use std::path::Path;
use std::time::Duration;

use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::{EngineError, Node, NodeConfig};

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        storage_path: Some(dir.to_path_buf()),
        tick_interval: Duration::from_millis(20),
        snapshot_entries: 20,
        snapshot_keep_entries: 5,
        ..NodeConfig::default()
    }
}

/// Starts `id` (no app runs it) and cancels it, so it is finished.
async fn finished(node: &Node, id: &str) -> Result<(), EngineError> {
    node.start_workflow(Some(id.to_owned()), "nobody_runs_this", 1, "null".into())
        .await?;
    node.cancel_workflow(id, "done").await.map(|_| ())
}

async fn stop_reason(node: &Node) -> String {
    tokio::time::timeout(Duration::from_secs(10), node.stopped())
        .await
        .expect("the node stops")
        .expect("with the store's failure as the reason")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_cannot_be_written_stops_the_node_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    node.read(|sm| sm.archive().fail_next_write());
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        let id = format!("w{i:03}");
        match finished(&node, &id).await {
            Ok(()) => acknowledged.push(id),
            Err(EngineError::StorageFailed(reason)) => {
                assert!(reason.contains("injected store failure"), "{reason}");
                break;
            }
            Err(e) => panic!("a storage failure, not {e}"),
        }
    }
    assert!(
        acknowledged.len() < 200,
        "the failed flush stopped the node"
    );
    let reason = stop_reason(&node).await;
    assert!(reason.contains("write a flush"), "{reason}");
    node.shutdown().await;

    let node = Node::start(config(dir.path())).await.unwrap();
    for id in &acknowledged {
        // Linearizable: the log replays after the start.
        let status = node
            .workflow_linearizable(id)
            .await
            .unwrap()
            .map(|w| w.status);
        assert_eq!(status, Some(WorkflowStatus::Cancelled), "{id}");
    }
    // And it flushes again.
    finished(&node, "after").await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_is_an_error_for_clients_not_a_missing_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    for i in 0..30 {
        finished(&node, &format!("w{i:03}")).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.read(|sm| sm.is_resident("w000")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "w000 was never flushed out of memory"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.read(|sm| sm.archive().fail_next_read());
    let err = node.find_workflow("w000").unwrap_err();
    assert!(matches!(err, EngineError::StorageFailed(_)), "{err}");
    assert_eq!(
        crate::status::to_status(err).code(),
        tonic::Code::Unavailable
    );
    let reason = stop_reason(&node).await;
    assert!(reason.contains("injected store failure"), "{reason}");
    node.shutdown().await;

    let node = Node::start(config(dir.path())).await.unwrap();
    let status = node
        .workflow_linearizable("w000")
        .await
        .unwrap()
        .map(|w| w.status);
    assert_eq!(status, Some(WorkflowStatus::Cancelled));
    node.shutdown().await;
}
