//! Faults of the state machine's store and of the log's compaction,
//! injected into a real node on disk: a flush that cannot be written, a
//! read that fails, a snapshot point that cannot be written. Each stops
//! the node like a failed fsync; clients get an error, never a wrong
//! answer; a restart loses nothing that was acknowledged.

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

/// The workflow's status as of every write acknowledged before the call
/// (after a restart the log's tail may still be applying).
async fn status(node: &Node, id: &str) -> Option<WorkflowStatus> {
    node.read_barrier().await.unwrap();
    node.find_workflow(id).unwrap().map(|w| w.status)
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
    let (acknowledged, err) = finished_until_failure(&node).await;
    match err {
        EngineError::StorageFailed(reason) => {
            assert!(reason.contains("injected store failure"), "{reason}")
        }
        e => panic!("a storage failure, not {e}"),
    }
    assert!(!acknowledged.is_empty());
    let reason = stop_reason(&node).await;
    assert!(reason.contains("write a flush"), "{reason}");
    node.shutdown().await;

    let node = Node::start(config(dir.path())).await.unwrap();
    for id in &acknowledged {
        assert_eq!(
            status(&node, id).await,
            Some(WorkflowStatus::Cancelled),
            "{id}"
        );
    }
    // And it flushes again.
    finished(&node, "after").await.unwrap();
    node.shutdown().await;
}

/// Starts and finishes workflows `w000`... until one fails; returns the
/// acknowledged ones and the failure.
async fn finished_until_failure(node: &Node) -> (Vec<String>, EngineError) {
    let mut acknowledged = Vec::new();
    for i in 0..2000 {
        let id = format!("w{i:03}");
        match finished(node, &id).await {
            Ok(()) => acknowledged.push(id),
            Err(e) => return (acknowledged, e),
        }
    }
    panic!("2000 workflows and no failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_point_that_cannot_be_written_stops_the_node_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so compactions delete some and write snapshot.bin
    // (off the Raft loop); a directory in the way of its temp file makes
    // that write fail as a full or read-only disk would.
    let config = NodeConfig {
        storage: crate::consensus::storage::StorageOptions {
            segment_bytes: 4096,
        },
        ..config(dir.path())
    };
    let node = Node::start(config.clone()).await.unwrap();
    let blocker = dir.path().join("snapshot.bin.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let (acknowledged, err) = finished_until_failure(&node).await;
    assert!(
        matches!(
            err,
            EngineError::StorageFailed(_) | EngineError::ShuttingDown
        ),
        "{err}"
    );
    assert!(!acknowledged.is_empty());
    let reason = stop_reason(&node).await;
    assert!(reason.contains("snapshot.bin.tmp"), "{reason}");
    node.shutdown().await;

    std::fs::remove_dir(&blocker).unwrap();
    let node = Node::start(config).await.unwrap();
    for id in &acknowledged {
        assert_eq!(
            status(&node, id).await,
            Some(WorkflowStatus::Cancelled),
            "{id}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_is_an_error_for_clients_not_a_missing_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    for i in 0..30 {
        finished(&node, &format!("w{i:03}")).await.unwrap();
    }
    // The first flush (due 20 entries in) archived w000; memory lets go of
    // the first batch before the loop publishes that the flush is done.
    let flushed = node
        .wait_status(Duration::from_secs(10), |s| {
            s.snapshot_index > 1 && !s.flushing
        })
        .await;
    assert!(flushed, "no flush within 10 s");
    assert!(!node.read(|sm| sm.is_resident("w000")));
    node.read(|sm| sm.archive().fail_next_read());
    let err = node.find_workflow("w000").unwrap_err();
    assert!(matches!(err, EngineError::StorageFailed(_)), "{err}");
    assert_eq!(
        crate::api::status::to_status(err).code(),
        tonic::Code::Unavailable
    );
    let reason = stop_reason(&node).await;
    assert!(reason.contains("injected store failure"), "{reason}");
    node.shutdown().await;

    let node = Node::start(config(dir.path())).await.unwrap();
    assert_eq!(status(&node, "w000").await, Some(WorkflowStatus::Cancelled));
    node.shutdown().await;
}
