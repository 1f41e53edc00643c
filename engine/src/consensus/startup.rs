//! Opening a node's Raft group: new cluster, joining node, or restart from
//! storage.

use raft::prelude::ConfState;
use raft::{RawNode, Storage};

use crate::config::NodeConfig;
use crate::consensus::storage::RaftStore;
use crate::error::EngineError;
use crate::workflows::state_machine::{Archive, StateMachine};

/// A Raft node ready to run, with the state machine that matches its log.
pub(crate) struct Opened {
    pub raw: RawNode<RaftStore>,
    pub state: StateMachine,
    /// True when this node is the only voter: it may elect itself at once.
    pub alone: bool,
    /// True when the storage held data (a restart).
    pub restarted: bool,
}

/// The identity of a cluster bootstrapped from `peers`: the same on every
/// node started with the same member list (a hash of it), random for a node
/// alone. Nodes given different lists cannot form one cluster by mistake.
fn cluster_id_for(peers: &std::collections::BTreeMap<u64, String>) -> String {
    if peers.is_empty() {
        return uuid::Uuid::new_v4().to_string();
    }
    let list: Vec<String> = peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
    format!(
        "{:016x}",
        crate::workflows::state_machine::stable_hash(&list.join(","))
    )
}

pub(crate) fn open(config: &NodeConfig) -> Result<Opened, EngineError> {
    let id = config.node_id;
    let initial_voters: Vec<u64> = if config.join {
        Vec::new()
    } else if config.peers.is_empty() {
        vec![id]
    } else {
        config.peers.keys().copied().collect()
    };
    let (store, restarted) = match &config.storage_path {
        Some(dir) => RaftStore::open(dir, id, ConfState::default(), &config.storage)
            .map_err(|e| EngineError::Config(e.to_string()))?,
        None => (RaftStore::in_memory(ConfState::default()), false),
    };
    let archive = match &config.storage_path {
        Some(dir) => Archive::open_dir(dir).map_err(|e| EngineError::Config(e.to_string()))?,
        None => Archive::in_memory(),
    };
    let state = if restarted {
        restart_state(&store, archive, config.storage_path.as_deref())?
    } else if initial_voters.is_empty() {
        // A joining node learns everything from the leader's snapshot.
        StateMachine::with_archive(archive)
    } else {
        // Every bootstrapping node writes the same first snapshot.
        let mut state = StateMachine::with_archive(archive);
        state.set_cluster_id(cluster_id_for(&config.peers));
        for (peer, address) in &config.peers {
            state.set_member_address(*peer, address.clone());
        }
        if config.peers.is_empty() {
            state.set_member_address(id, config.advertise.clone());
        }
        state.set_applied_index(1);
        store
            .bootstrap(
                ConfState::from((initial_voters.clone(), vec![])),
                state.snapshot(),
            )
            .map_err(|e| EngineError::Config(e.to_string()))?;
        state
    };
    // The store's flush may be ahead of the commit index the log recorded
    // (it is not synced for a commit alone): what was applied was committed.
    store
        .commit_at_least(state.applied_index())
        .map_err(|e| EngineError::Config(e.to_string()))?;
    let conf = store.initial_state()?.conf_state;
    let alone = conf.voters == vec![id] && conf.learners.is_empty();
    let raft_config = raft::Config {
        id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied: state.applied_index(),
        // Appends fit the frame limit with room for a batch of them (a
        // single entry larger than this still goes alone).
        max_size_per_msg: (config.max_frame_bytes as u64 / 8).min(1024 * 1024),
        max_inflight_msgs: 256,
        pre_vote: true,
        check_quorum: true,
        ..Default::default()
    };
    let logger = crate::consensus::raft_log::logger(id);
    let raw = RawNode::new(&raft_config, store, &logger)?;
    Ok(Opened {
        raw,
        state,
        alone,
        restarted,
    })
}

/// The state a restart resumes from: the store's last flush when it is at
/// or past the log's snapshot point (the log replays the rest), else (a
/// crash between installing a snapshot and making its store the node's, a
/// store lost, or data from before the store existed) the store rebuilt
/// from the snapshot's state file.
fn restart_state(
    store: &RaftStore,
    archive: Archive,
    dir: Option<&std::path::Path>,
) -> Result<StateMachine, EngineError> {
    let config = |e: String| EngineError::Config(e);
    let snapshot_index = store.snapshot_index();
    if let Some(state) = StateMachine::load(archive).map_err(|e| config(e.to_string()))?
        && state.applied_index() >= snapshot_index
    {
        tracing::info!(
            applied = state.applied_index(),
            snapshot_index,
            "state machine read from its store"
        );
        return Ok(state);
    }
    let Some(snapshot) = store.snapshot_state() else {
        if snapshot_index > 1 {
            return Err(config(format!(
                "the state machine's store is behind the log's snapshot at index {snapshot_index} and no state file is left to rebuild it; remove the node's storage and re-join it"
            )));
        }
        return Archive::open_dir(dir.expect("a restart has a storage directory"))
            .map(StateMachine::with_archive)
            .map_err(|e| config(e.to_string()));
    };
    let index = snapshot.reference.index;
    tracing::info!(
        index,
        "rebuilding the state machine's store from the snapshot"
    );
    let reader = snapshot
        .verified_reader()
        .map_err(|e| config(e.to_string()))?;
    let archive = Archive::create_for_snapshot(dir, index).map_err(|e| config(e.to_string()))?;
    let mut state = StateMachine::restore_into(reader, index, archive)
        .map_err(|e| config(format!("the stored snapshot cannot be restored: {e}")))?;
    state.promote_archive().map_err(|e| config(e.to_string()))?;
    Ok(state)
}
