//! Opening a node's Raft group: new cluster, joining node, or restart from
//! storage.

use raft::prelude::ConfState;
use raft::{RawNode, Storage};

use crate::config::NodeConfig;
use crate::error::EngineError;
use crate::state_machine::StateMachine;
use crate::storage::RaftStore;

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
        crate::state_machine::stable_hash(&list.join(","))
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
    let state = if restarted {
        let data = store
            .snapshot_data()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        match data {
            Some((index, data)) => StateMachine::restore(&data, index).map_err(|e| {
                EngineError::Config(format!("the stored snapshot cannot be decoded: {e}"))
            })?,
            None => StateMachine::new(),
        }
    } else if initial_voters.is_empty() {
        // A joining node learns everything from the leader's snapshot.
        StateMachine::new()
    } else {
        // Every bootstrapping node writes the same first snapshot.
        let mut state = StateMachine::new();
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
    let logger = crate::raft_log::logger(id);
    let raw = RawNode::new(&raft_config, store, &logger)?;
    Ok(Opened {
        raw,
        state,
        alone,
        restarted,
    })
}
