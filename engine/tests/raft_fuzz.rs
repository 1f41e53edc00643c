//! Fuzzing the node-to-node port: arbitrary bytes and arbitrary well-formed
//! raft-rs messages (any type, any fields, entries, snapshots), sent through
//! the real gRPC `ClusterService` of a 3-node in-process cluster, mixed
//! with status, transfer, join and remove calls with arbitrary arguments. No input
//! may stop a node: every node stays healthy after every case, and the
//! cluster still commits at the end.
//!
//! A CI-sized run (256 cases, seconds) runs with `cargo test`; a long one
//! with `PROPTEST_CASES=100000 cargo test -p raftoral --test raft_fuzz`.
//!
//! Out of scope until node-to-node authentication (mTLS): traffic that is
//! valid Raft in every respect and impersonates a member (a consistent
//! snapshot, a membership change) is indistinguishable from the member's
//! own, so the generator does not forge those; everything else it does.
//! Some of what it forges is such an impersonation by chance (an
//! acknowledgement in a follower's name of entries it lacks leaves that
//! follower behind until the next leader change), so the end check commits
//! through the leader, not through every node.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use protobuf::{Message as _, ProtobufEnum as _};
use raft::prelude::{
    ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raftoral::Node;
use raftoral::proto::cluster::v1::{
    ClusterStatusRequest, JoinClusterRequest, RaftEnvelope, RaftRequest, RemoveNodeRequest,
    TransferLeaderRequest, cluster_service_client::ClusterServiceClient,
};
use tonic::transport::Channel;

mod common;

/// A log position or term relative to the target node's, or a wild value.
#[derive(Debug, Clone)]
enum Position {
    Near(i8),
    Wild(u64),
}

impl Position {
    fn resolve(&self, base: u64) -> u64 {
        match self {
            Position::Near(d) => base.saturating_add_signed(i64::from(*d)),
            Position::Wild(v) => *v,
        }
    }
}

#[derive(Debug, Clone)]
struct ForgedEntry {
    kind: i32,
    term: Position,
    /// None: the next index after the message's (a contiguous run).
    index: Option<Position>,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ForgedSnapshot {
    index: Position,
    term: Position,
    voters: Vec<u64>,
    learners: Vec<u64>,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Forged {
    kind: i32,
    /// None: the batch's sender.
    from: Option<u64>,
    /// None: the target node.
    to: Option<u64>,
    term: Position,
    log_term: Position,
    index: Position,
    commit: Position,
    entries: Vec<ForgedEntry>,
    reject: bool,
    reject_hint: Position,
    request_snapshot: Position,
    context: Vec<u8>,
    snapshot: Option<ForgedSnapshot>,
}

#[derive(Debug, Clone)]
enum Frame {
    Bytes(Vec<u8>),
    Forged(Box<Forged>),
}

/// A call of the other cluster RPCs. Membership changes that succeed are
/// an operator's decision, not hostile input: joins and removals name ids
/// that are refused (0, members' own ids at a wrong address, non-members).
#[derive(Debug, Clone)]
enum Admin {
    Status,
    Transfer(u64),
    Join(u64, String),
    Remove(u64, bool),
}

#[derive(Debug, Clone)]
struct Case {
    target: u64,
    batch_from: u64,
    /// 0: the cluster's id, 1: none, 2: another cluster's.
    cluster: u8,
    group: u64,
    frames: Vec<Frame>,
    admin: Option<Admin>,
}

fn admin() -> impl Strategy<Value = Admin> {
    prop_oneof![
        Just(Admin::Status),
        any::<u64>().prop_map(Admin::Transfer),
        (0u64..=3, ".{0,24}").prop_map(|(id, a)| Admin::Join(id, a)),
        (prop_oneof![Just(0u64), 10u64..], any::<bool>()).prop_map(|(id, f)| Admin::Remove(id, f)),
    ]
}

fn position() -> impl Strategy<Value = Position> {
    prop_oneof![
        8 => (-3i8..=3).prop_map(Position::Near),
        // raft-rs treats 0 specially (no term, no index) in many places.
        1 => Just(Position::Wild(0)),
        1 => any::<u64>().prop_map(Position::Wild),
    ]
}

fn node_id() -> impl Strategy<Value = u64> {
    // Members 1-3, and 0, 4, 9 that are not.
    prop_oneof![8 => 1u64..=3, 1 => Just(0u64), 1 => Just(4u64), 1 => Just(9u64)]
}

fn entry() -> impl Strategy<Value = ForgedEntry> {
    (
        0i32..=2,
        position(),
        proptest::option::weighted(0.8, position()).prop_map(|p| p.map(|_| Position::Near(0))),
        proptest::option::of(position()),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(kind, term, contiguous, index, data)| ForgedEntry {
            kind,
            term,
            index: if contiguous.is_some() { None } else { index },
            data,
        })
}

fn snapshot() -> impl Strategy<Value = ForgedSnapshot> {
    (
        position(),
        position(),
        proptest::collection::vec(0u64..=4, 0..4),
        proptest::collection::vec(0u64..=4, 0..2),
        proptest::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(index, term, voters, learners, data)| ForgedSnapshot {
            index,
            term,
            voters,
            learners,
            data,
        })
}

fn forged() -> impl Strategy<Value = Forged> {
    (
        (
            0i32..=18,
            proptest::option::weighted(0.8, Just(())),
            proptest::option::of(node_id()),
            proptest::option::weighted(0.9, Just(())),
            node_id(),
        ),
        (position(), position(), position(), position()),
        proptest::collection::vec(entry(), 0..4),
        (any::<bool>(), position(), position()),
        proptest::collection::vec(any::<u8>(), 0..32),
        proptest::option::weighted(0.3, snapshot()),
    )
        .prop_map(
            |(
                (kind, from_batch, from, to_target, to),
                (term, log_term, index, commit),
                entries,
                (reject, reject_hint, request_snapshot),
                context,
                snapshot,
            )| Forged {
                kind,
                from: if from_batch.is_some() { None } else { from },
                to: if to_target.is_some() { None } else { Some(to) },
                term,
                log_term,
                index,
                commit,
                entries,
                reject,
                reject_hint,
                request_snapshot,
                context,
                snapshot,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    let frame = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Frame::Bytes),
        4 => forged().prop_map(|f| Frame::Forged(Box::new(f))),
    ];
    (
        1u64..=3,
        node_id(),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![9 => Just(0u64), 1 => any::<u64>()],
        proptest::collection::vec(frame, 1..5),
        proptest::option::weighted(0.2, admin()),
    )
        .prop_map(|(target, batch_from, cluster, group, frames, admin)| Case {
            target,
            batch_from,
            cluster,
            group,
            frames,
            admin,
        })
}

/// What the target node's log looks like, to forge near it.
struct Base {
    term: u64,
    index: u64,
}

/// True for a membership change the leader would accept: valid Raft from a
/// member, so out of scope (see the module comment).
fn is_real_conf_change(data: &[u8]) -> bool {
    ConfChangeV2::parse_from_bytes(data).is_ok_and(|c| !c.changes.is_empty())
}

fn build(f: &Forged, case: &Case, base: &Base) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::from_i32(f.kind).unwrap_or(MessageType::MsgHeartbeat));
    m.from = f.from.unwrap_or(case.batch_from);
    m.to = f.to.unwrap_or(case.target);
    m.term = f.term.resolve(base.term);
    m.log_term = f.log_term.resolve(base.term);
    m.index = f.index.resolve(base.index);
    m.commit = f.commit.resolve(base.index);
    m.reject = f.reject;
    m.reject_hint = f.reject_hint.resolve(base.index);
    m.request_snapshot = f.request_snapshot.resolve(0);
    m.context = f.context.clone().into();
    for (i, e) in f.entries.iter().enumerate() {
        let mut entry = Entry::default();
        let mut kind = EntryType::from_i32(e.kind).unwrap_or(EntryType::EntryNormal);
        if kind != EntryType::EntryNormal && is_real_conf_change(&e.data) {
            kind = EntryType::EntryNormal;
        }
        entry.set_entry_type(kind);
        entry.term = e.term.resolve(base.term);
        entry.index = match &e.index {
            None => m.index.wrapping_add(i as u64 + 1),
            Some(p) => p.resolve(base.index),
        };
        entry.data = e.data.clone().into();
        m.entries.push(entry);
    }
    if let Some(s) = &f.snapshot {
        let mut meta = SnapshotMetadata {
            index: s.index.resolve(base.index),
            term: s.term.resolve(base.term),
            ..Default::default()
        };
        meta.set_conf_state(ConfState {
            voters: s.voters.clone(),
            learners: s.learners.clone(),
            ..Default::default()
        });
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        // A snapshot that decodes would be a consistent forgery (see the
        // module comment); any non-empty garbage is fair.
        let mut data = s.data.clone();
        if raftoral::StateMachine::restore(&data, 1).is_ok() {
            data = vec![0xff];
        }
        snapshot.data = data.into();
        m.set_snapshot(snapshot);
    }
    m
}

async fn send(
    clients: &BTreeMap<u64, ClusterServiceClient<Channel>>,
    nodes: &BTreeMap<u64, Node>,
    case: &Case,
) {
    let node = &nodes[&case.target];
    let status = node.raft_status();
    let base = Base {
        term: status.term,
        index: status.commit_index,
    };
    let messages = case
        .frames
        .iter()
        .map(|frame| RaftEnvelope {
            group_id: case.group,
            message: match frame {
                Frame::Bytes(b) => b.clone().into(),
                Frame::Forged(f) => build(f, case, &base)
                    .write_to_bytes()
                    .expect("encodable")
                    .into(),
            },
        })
        .collect();
    let cluster_id = match case.cluster {
        0 => node.transport().cluster_id(),
        1 => String::new(),
        _ => "another-cluster".into(),
    };
    let batch = RaftRequest {
        from_node_id: case.batch_from,
        messages,
        from_address: String::new(),
        cluster_id,
    };
    let mut client = clients[&case.target].clone();
    // Refusals (another cluster, no id) are answers too; only the nodes'
    // health matters here.
    let _ = client.raft(tokio_stream::iter(vec![batch])).await;
    // Refusals are the expected answers; a transfer may even succeed.
    match &case.admin {
        None => {}
        Some(Admin::Status) => {
            let _ = client.cluster_status(ClusterStatusRequest {}).await;
        }
        Some(Admin::Transfer(node_id)) => {
            let request = TransferLeaderRequest { node_id: *node_id };
            let _ = client.transfer_leader(request).await;
        }
        Some(Admin::Join(node_id, address)) => {
            let request = JoinClusterRequest {
                node_id: *node_id,
                address: address.clone(),
            };
            let _ = client.join_cluster(request).await;
        }
        Some(Admin::Remove(node_id, force)) => {
            let request = RemoveNodeRequest {
                node_id: *node_id,
                force: *force,
            };
            let _ = client.remove_node(request).await;
        }
    }
}

/// Every node healthy; a description of the first that is not.
fn all_healthy(nodes: &BTreeMap<u64, Node>) -> Result<(), String> {
    for node in nodes.values() {
        if let Err(e) = raftoral::api::probes::health(node) {
            return Err(format!("node {}: {e}", node.id()));
        }
    }
    Ok(())
}

/// Commits one command through `node`, retrying while leadership settles
/// (forged terms and timeouts trigger elections).
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

#[test]
fn arbitrary_raft_traffic_never_stops_a_node() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (nodes, peers) = runtime.block_on(common::served_cluster(3))?;
    let clients = runtime.block_on(async {
        let mut clients = BTreeMap::new();
        for (id, address) in &peers {
            let client = ClusterServiceClient::connect(format!("http://{address}")).await?;
            clients.insert(*id, client.max_encoding_message_size(64 * 1024 * 1024));
        }
        anyhow::Ok(clients)
    })?;
    let config = Config {
        failure_persistence: None,
        // A dead node stays dead: shrinking could not replay the failure.
        max_shrink_iters: 0,
        ..Config::default()
    };
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&case(), |case| {
        runtime.block_on(send(&clients, &nodes, &case));
        all_healthy(&nodes).map_err(TestCaseError::fail)
    });
    // A panic in the Raft loop may land just after its case returned. The
    // cluster commits through its leader; a follower may be left behind by
    // a forged acknowledgement in its name (impersonation, see above) until
    // the next leader change, so not every node is asked.
    let settled = runtime.block_on(async {
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let leader = loop {
            let leaders: Vec<u64> = nodes.values().map(|n| n.raft_status().leader_id).collect();
            // A node may believe in a forged leader id for a while.
            if let Some(node) = nodes.values().find(|n| n.raft_status().is_leader) {
                break node.id();
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no leader: {leaders:?}"
            );
            poll.tick().await;
        };
        commits(&nodes[&leader]).await
    });
    outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    all_healthy(&nodes).map_err(|e| anyhow::anyhow!(e))?;
    settled?;
    let refused: u64 = nodes
        .values()
        .map(|n| n.transport().refused_messages())
        .sum();
    assert!(
        refused > 0,
        "{cases} cases and nothing refused: a weak generator"
    );
    runtime.block_on(async {
        for node in nodes.values() {
            node.shutdown().await;
        }
    });
    Ok(())
}
