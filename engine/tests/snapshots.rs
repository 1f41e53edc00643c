//! Snapshots off the Raft loop and in chunks: a snapshot larger than the
//! frame limit reaches a joining node, a transfer cut mid-way resumes, and
//! the loop goes on committing while a snapshot is being encoded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Frames of 256 KiB at most, snapshots in 16 KiB chunks.
const MAX_FRAME: usize = 256 * 1024;
const CHUNK: usize = 16 * 1024;

fn config(id: u64, address: &str, dir: &Path) -> NodeConfig {
    NodeConfig {
        node_id: id,
        tick_interval: Duration::from_millis(20),
        advertise: address.to_owned(),
        proposal_timeout: Duration::from_secs(5),
        storage_path: Some(dir.join(format!("node{id}"))),
        snapshot_entries: 50,
        snapshot_keep_entries: 10,
        max_frame_bytes: MAX_FRAME,
        snapshot_chunk_bytes: CHUNK,
        ..NodeConfig::default()
    }
}

/// A durable node alone, holding `workflows` workflows with 1 KiB inputs
/// (a state several times the frame limit), and a joiner, not yet added.
async fn leader_and_joiner(
    dir: &Path,
    workflows: usize,
) -> anyhow::Result<(Node, Node, BTreeMap<u64, String>)> {
    let (mut listeners, addrs) = common::bound_peers(2).await?;
    let first = Node::start(NodeConfig {
        peers: BTreeMap::from([(1, addrs[&1].clone())]),
        ..config(1, &addrs[&1], dir)
    })
    .await?;
    serve(&first, listeners.remove(&1).unwrap());
    let input = format!("\"{}\"", "x".repeat(1024));
    for i in 0..workflows {
        first
            .start_workflow(
                Some(format!("w{i}")),
                "nobody_runs_this",
                1,
                input.clone().into(),
            )
            .await?;
    }
    // The state is flushed to the store and the log compacted behind it,
    // so a joiner needs a snapshot (encoded from the store when asked for).
    until("the log compacted behind a flush", || {
        first.raft_status().first_index > 1
    })
    .await;
    let joiner = Node::start(NodeConfig {
        join: true,
        ..config(2, &addrs[&2], dir)
    })
    .await?;
    serve(&joiner, listeners.remove(&2).unwrap());
    Ok((first, joiner, addrs))
}

async fn caught_up(first: &Node, joiner: &Node, workflows: usize) {
    until("the joiner to catch up and be promoted to voter", || {
        let status = first.raft_status();
        status.voters.contains(&2) && joiner.raft_status().applied_index >= status.commit_index
    })
    .await;
    assert_eq!(
        joiner.read(|sm| sm.workflow_count() as usize),
        workflows,
        "every workflow arrived with the snapshot or the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_goes_in_chunks_and_installs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, joiner, addrs) = leader_and_joiner(dir.path(), 600).await?;
    first.add_node(2, &addrs[&2]).await?;
    caught_up(&first, &joiner, 600).await;
    let hooks = joiner.snapshot_transfers().hooks();
    assert!(hooks.completed() >= 1, "the state came by a transfer");
    assert!(
        hooks.chunks_received() as usize > 2 * MAX_FRAME / CHUNK,
        "in many chunks, each within the frame limit"
    );
    // The joiner keeps the received state as a file of its own, and the
    // snapshot metadata refers to it.
    let installed = joiner.store().snapshot_state().expect("a snapshot");
    assert!(installed.reference.size > MAX_FRAME as u64);
    let files: Vec<String> = std::fs::read_dir(dir.path().join("node2/snapshots"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(
        files.iter().any(|f| f.ends_with(".state")),
        "a state file on disk: {files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".part") || f.ends_with(".tmp")),
        "no partial transfer or temp file left: {files:?}"
    );
    first.shutdown().await;
    joiner.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_mid_way_resumes_where_it_stopped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, joiner, addrs) = leader_and_joiner(dir.path(), 600).await?;
    let hooks = joiner.snapshot_transfers().hooks();
    // The first stream breaks after one frame's worth of bytes (the state
    // is over twice that), as a reset would.
    hooks.cut_next_transfer_after(MAX_FRAME as u64);
    first.add_node(2, &addrs[&2]).await?;
    caught_up(&first, &joiner, 600).await;
    let size = joiner
        .store()
        .snapshot_state()
        .expect("a snapshot")
        .reference
        .size;
    assert!(size > 2 * MAX_FRAME as u64);
    assert!(hooks.resumed() >= 1, "a later stream continued the cut one");
    assert!(hooks.completed() >= 1);
    // Resumed, not started over: about one snapshot's worth of chunks.
    let chunks_per_snapshot = size.div_ceil(CHUNK as u64);
    assert!(
        hooks.chunks_received() < chunks_per_snapshot + chunks_per_snapshot / 3,
        "{} chunks for a snapshot of {chunks_per_snapshot}",
        hooks.chunks_received()
    );
    first.shutdown().await;
    joiner.shutdown().await;
    Ok(())
}

/// Time to commit `n` workflow starts one after the other.
async fn commit_run(node: &Node, prefix: &str, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for i in 0..n {
        node.start_workflow(
            Some(format!("{prefix}{i}")),
            "nobody_runs_this",
            1,
            "null".into(),
        )
        .await?;
    }
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_loop_commits_while_a_snapshot_is_encoded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(NodeConfig {
        storage_path: Some(dir.path().to_path_buf()),
        snapshot_entries: 200,
        ..NodeConfig::default()
    })
    .await?;
    let hooks = node.snapshot_transfers().hooks();
    // A baseline without any snapshot under way.
    let baseline = commit_run(&node, "base", 100).await?;
    let before = node.raft_status().snapshot_index;
    // The next snapshot's encoding stays in progress until released (also
    // when an assertion fails: a held encoding thread would keep the
    // runtime from stopping).
    struct Release(Node);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.snapshot_transfers().hooks().hold_encoding(false);
        }
    }
    let _release = Release(node.clone());
    hooks.hold_encoding(true);
    commit_run(&node, "fill", 150).await?;
    until("a snapshot encoding to start", || {
        hooks.encodings_started() >= 1
    })
    .await;
    let during = commit_run(&node, "during", 100).await?;
    assert_eq!(
        node.raft_status().snapshot_index,
        before,
        "the snapshot is still encoding"
    );
    hooks.hold_encoding(false);
    until("the snapshot to be stored", || {
        node.raft_status().snapshot_index > before
    })
    .await;
    let ratio = during.as_secs_f64() / baseline.as_secs_f64();
    assert!(
        ratio < 4.0,
        "commits during the encoding took {ratio:.1}x the baseline ({during:?} vs {baseline:?})"
    );
    node.shutdown().await;
    Ok(())
}

/// A follower misses 200 commits (a blocked link, shorter than the owner
/// timeout) while the leader snapshots every 50 entries; returns (the
/// leader's first index at the end of the hiccup, the follower's applied
/// index before it, snapshots the follower received).
async fn hiccup(max_retained: u64) -> anyhow::Result<(u64, u64, u64)> {
    let (nodes, _) = common::served_cluster_with(3, |c| {
        c.tick_interval = Duration::from_millis(20);
        c.snapshot_entries = 50;
        c.snapshot_keep_entries = 10;
        c.snapshot_max_retained_entries = max_retained;
        // The hiccup must stay shorter than this for the follower to count
        // as healthy, whatever the machine's speed.
        c.owner_timeout = Duration::from_secs(20);
    })
    .await?;
    let leader_id = nodes[&1].raft_status().leader_id;
    let leader = nodes[&leader_id].clone();
    let lagging_id = (1..=3).find(|id| *id != leader_id).unwrap();
    let lagging = nodes[&lagging_id].clone();
    commit_run(&leader, "before", 20).await?;
    until("the lagging node to be in step", || {
        lagging.raft_status().applied_index >= leader.raft_status().commit_index
    })
    .await;
    let behind = lagging.raft_status().applied_index;
    lagging.transport().faults().block([1, 2, 3]);
    leader.transport().faults().block([lagging_id]);
    commit_run(&leader, "during", 200).await?;
    until("the leader to snapshot past the lagging node", || {
        leader.raft_status().snapshot_index > behind + 100
    })
    .await;
    let first_index = leader.raft_status().first_index;
    lagging.transport().faults().block([]);
    leader.transport().faults().block([]);
    until("the lagging node to catch up", || {
        lagging.raft_status().applied_index >= leader.raft_status().commit_index
    })
    .await;
    let received = lagging.snapshot_transfers().hooks().completed();
    for node in nodes.values() {
        node.shutdown().await;
    }
    Ok((first_index, behind, received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_a_hiccup_catches_up_from_the_log() -> anyhow::Result<()> {
    let (first_index, behind, received) = hiccup(50_000).await?;
    // The lagging node may hold a few entries it had not applied yet when
    // the link was cut (the leader keeps the log back to those it holds).
    assert!(
        first_index <= behind + 5,
        "the leader kept the log back to the lagging node ({first_index} > {})",
        behind + 5
    );
    assert_eq!(received, 0, "caught up from the log, without a snapshot");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_kept_for_a_slow_follower_is_bounded() -> anyhow::Result<()> {
    let (first_index, behind, received) = hiccup(30).await?;
    assert!(
        first_index > behind + 1,
        "at most 30 entries kept behind a snapshot ({first_index} <= {})",
        behind + 1
    );
    assert!(received >= 1, "the lagging node got a snapshot instead");
    Ok(())
}
