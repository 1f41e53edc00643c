//! `/health`, `/ready` and `/metrics` as the engine answers them.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::api::probes::{ProbeFailure, health, readiness};
use raftoral::{Node, NodeConfig};

/// Checks the exposition format and returns the samples by series.
fn parse(text: &str) -> BTreeMap<String, u64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "bad metric name in {line:?}"
        );
        // A histogram's series carry suffixes of its name; its sum is in
        // seconds (a float).
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "{name} sampled before its TYPE line"
        );
        if name.ends_with("_sum") && family != name {
            let sum: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            assert!(sum >= 0.0, "{line}");
            continue;
        }
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

#[tokio::test]
async fn a_single_node_is_healthy_ready_and_counts_its_workflows() -> anyhow::Result<()> {
    let node = Node::start(NodeConfig::default()).await?;
    assert_eq!(health(&node), Ok(()));
    assert_eq!(readiness(&node), Ok(()));
    // Nobody registered "nobody": both starts wait as pending.
    for _ in 0..2 {
        node.start_workflow(None, "nobody", 1, "x".into()).await?;
    }
    let m = parse(&raftoral::api::metrics::render(&node));
    assert_eq!(m["raftoral_workflows{status=\"pending\"}"], 2);
    assert_eq!(m["raftoral_workflows{status=\"running\"}"], 0);
    assert_eq!(m["raftoral_raft_is_leader"], 1);
    assert_eq!(m["raftoral_raft_leader_id"], 1);
    assert_eq!(m["raftoral_node_ready"], 1);
    assert_eq!(m["raftoral_node_healthy"], 1);
    assert_eq!(m["raftoral_raft_voters"], 1);
    assert_eq!(m["raftoral_timers_pending"], 0);
    assert_eq!(m["raftoral_timers_fired_total"], 0);
    assert_eq!(m["raftoral_timer_lateness_seconds_bucket{le=\"+Inf\"}"], 0);
    assert_eq!(m["raftoral_timer_lateness_seconds_count"], 0);
    // An in-memory node idle since its start is not flushing.
    assert_eq!(m["raftoral_state_flush_in_progress"], 0);
    assert!(m["raftoral_raft_applied_index"] >= 3);
    assert_eq!(
        m["raftoral_raft_applied_index"],
        m["raftoral_raft_commit_index"]
    );
    node.shutdown().await;
    assert_eq!(health(&node), Err(ProbeFailure::ShuttingDown));
    let m = parse(&raftoral::api::metrics::render(&node));
    assert_eq!(m["raftoral_node_healthy"], 0);
    assert_eq!(m["raftoral_node_ready"], 0);
    Ok(())
}

#[tokio::test]
async fn a_node_without_a_reachable_quorum_is_live_but_not_ready() -> anyhow::Result<()> {
    // Peers 2 and 3 hold their ports but never run: no election can win.
    let mut held = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        peers.insert(id, l.local_addr()?.to_string());
        held.push(l);
    }
    let node = Node::start(NodeConfig {
        node_id: 1,
        tick_interval: Duration::from_millis(10),
        advertise: peers[&1].clone(),
        peers,
        ..NodeConfig::default()
    })
    .await?;
    assert_eq!(health(&node), Ok(()));
    assert_eq!(readiness(&node), Err(ProbeFailure::NoLeader));
    assert!(
        readiness(&node)
            .unwrap_err()
            .to_string()
            .contains("no quorum")
    );
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_node_waiting_to_join_is_not_ready() -> anyhow::Result<()> {
    let node = Node::start(NodeConfig {
        node_id: 7,
        join: true,
        advertise: "127.0.0.1:1".into(),
        ..NodeConfig::default()
    })
    .await?;
    assert_eq!(health(&node), Ok(()));
    assert_eq!(readiness(&node), Err(ProbeFailure::NotMember));
    node.shutdown().await;
    Ok(())
}
