//! The state machine's store (state_machine/archive.rs) across restarts:
//! a node reads its last flush back instead of rebuilding the state, a
//! joiner keeps the store it built from the leader's snapshot, and a node
//! whose store is gone says what to do instead of starting empty.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use raftoral::ListFilter;
use raftoral::proto::sidecar::v1::WorkflowStatus;
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

fn config(id: u64, address: &str, dir: &Path) -> NodeConfig {
    NodeConfig {
        node_id: id,
        tick_interval: Duration::from_millis(20),
        advertise: address.to_owned(),
        storage_path: Some(dir.join(format!("node{id}"))),
        snapshot_entries: 50,
        snapshot_keep_entries: 10,
        ..NodeConfig::default()
    }
}

/// Starts `count` workflows nobody runs and cancels every other one (so
/// they finish without an app).
async fn started_and_half_cancelled(node: &Node, count: usize) -> anyhow::Result<()> {
    for i in 0..count {
        let id = format!("w{i:04}");
        node.start_workflow(Some(id.clone()), "nobody_runs_this", 1, "null".into())
            .await?;
        if i % 2 == 0 {
            node.cancel_workflow(&id, "done").await?;
        }
    }
    Ok(())
}

/// Every workflow of `status`, through pages of `size`.
fn all_with(node: &Node, status: WorkflowStatus, size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (page, more) = node
            .list_workflows(&ListFilter {
                status,
                after: ids.last().cloned().unwrap_or_default(),
                page_size: size,
                ..ListFilter::default()
            })
            .expect("the store reads");
        ids.extend(page.iter().map(|w| w.id.clone()));
        if !more {
            return ids;
        }
    }
}

fn store_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.join("state"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_the_last_flush_back_and_replays_only_the_log_after_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut listeners, addrs) = common::bound_peers(1).await?;
    let peers = BTreeMap::from([(1, addrs[&1].clone())]);
    let node = Node::start(NodeConfig {
        peers: peers.clone(),
        ..config(1, &addrs[&1], dir.path())
    })
    .await?;
    serve(&node, listeners.remove(&1).unwrap());
    started_and_half_cancelled(&node, 200).await?;
    until("a flush and the log compacted behind it", || {
        node.raft_status().first_index > 1
    })
    .await;
    // Finished workflows left memory for the store; the count still holds
    // them and reads find them.
    let in_memory = node.read(|sm| sm.resident_workflows());
    assert!(in_memory < 200, "{in_memory} workflows still in memory");
    assert_eq!(node.read(|sm| sm.workflow_count()), 200);
    let before = node.raft_status();
    // What memory holds now (the published status may lag it by a Ready).
    let applied = node.read(|sm| sm.applied_index());
    node.shutdown().await;

    let node = Node::start(NodeConfig {
        peers,
        ..config(1, &addrs[&1], dir.path())
    })
    .await?;
    let after = node.raft_status();
    assert!(
        after.applied_index >= before.snapshot_index,
        "started from the flush at {} or later (applied {})",
        before.snapshot_index,
        after.applied_index
    );
    // The entries after the flush replay once the node leads again.
    until("the log after the flush replayed", || {
        node.raft_status().applied_index >= applied
    })
    .await;
    assert_eq!(node.read(|sm| sm.workflow_count()), 200);
    assert_eq!(node.read(|sm| sm.count(WorkflowStatus::Cancelled)), 100);
    let cancelled = all_with(&node, WorkflowStatus::Cancelled, 7);
    let expected: Vec<String> = (0..200).step_by(2).map(|i| format!("w{i:04}")).collect();
    assert_eq!(cancelled, expected, "listed in id order across pages");
    assert_eq!(all_with(&node, WorkflowStatus::Pending, 13).len(), 100);
    let early = node.workflow("w0000").expect("an early finished workflow");
    assert_eq!(
        (early.status, early.error.as_str()),
        (WorkflowStatus::Cancelled, "done")
    );
    assert_eq!(store_files(&dir.path().join("node1")), vec!["0.redb"]);
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_keeps_the_store_built_from_the_snapshot_across_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut listeners, addrs) = common::bound_peers(2).await?;
    let first = Node::start(NodeConfig {
        peers: BTreeMap::from([(1, addrs[&1].clone())]),
        ..config(1, &addrs[&1], dir.path())
    })
    .await?;
    serve(&first, listeners.remove(&1).unwrap());
    started_and_half_cancelled(&first, 150).await?;
    until("the log compacted behind a flush", || {
        first.raft_status().first_index > 1
    })
    .await;
    let joiner = Node::start(NodeConfig {
        join: true,
        ..config(2, &addrs[&2], dir.path())
    })
    .await?;
    let listener = listeners.remove(&2).unwrap();
    let address = listener.local_addr()?;
    serve(&joiner, listener);
    first.add_node(2, &addrs[&2]).await?;
    until("the joiner to catch up as a voter", || {
        let status = first.raft_status();
        status.voters.contains(&2) && joiner.raft_status().applied_index >= status.commit_index
    })
    .await;
    assert!(joiner.snapshot_transfers().hooks().completed() >= 1);
    let files = store_files(&dir.path().join("node2"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_ne!(files[0], "0.redb", "the store built from the snapshot");
    joiner.shutdown().await;

    // Restarted, it reads that store (no state file is decoded again) and
    // has every workflow.
    let joiner = Node::start(config(2, &address.to_string(), dir.path())).await?;
    assert_eq!(joiner.read(|sm| sm.workflow_count()), 150);
    assert_eq!(joiner.read(|sm| sm.count(WorkflowStatus::Cancelled)), 75);
    assert_eq!(
        joiner.workflow("w0148").map(|w| w.status),
        Some(WorkflowStatus::Cancelled)
    );
    joiner.shutdown().await;
    first.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_is_gone_refuses_to_start_and_says_what_to_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_listeners, addrs) = common::bound_peers(1).await?;
    let peers = BTreeMap::from([(1, addrs[&1].clone())]);
    // Small log segments, so compaction deletes some: a flush point with
    // every segment still on disk is not a compacted log (a restart
    // replays it all).
    let small_segments = || NodeConfig {
        peers: peers.clone(),
        storage: raftoral::consensus::storage::StorageOptions {
            segment_bytes: 4096,
        },
        ..config(1, &addrs[&1], dir.path())
    };
    let node = Node::start(small_segments()).await?;
    let wal = dir.path().join("node1/wal");
    let oldest_segment = || {
        std::fs::read_dir(&wal)
            .expect("the log's directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .min()
    };
    let at_start = oldest_segment().expect("a log segment");
    started_and_half_cancelled(&node, 100).await?;
    until("a log segment deleted behind a flush", || {
        oldest_segment().is_some_and(|oldest| oldest > at_start)
    })
    .await;
    node.shutdown().await;
    std::fs::remove_dir_all(dir.path().join("node1/state"))?;
    let err = Node::start(small_segments())
        .await
        .err()
        .expect("no empty start over a compacted log");
    let message = err.to_string();
    assert!(
        message.contains("behind the log's snapshot") && message.contains("re-join"),
        "{message}"
    );
    Ok(())
}
