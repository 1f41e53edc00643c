//! Opening a node's Raft group: new cluster, joining node, or restart from
//! storage. Public for [`cluster_id_for`] only.

use protobuf::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, EntryType};
use raft::{Changer, GetEntriesContext, ProgressTracker, RawNode, Storage};

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
/// Discovery uses it to tell the cluster bootstrapped from a list.
///
/// ```
/// use std::collections::BTreeMap;
/// use raftoral::consensus::startup::cluster_id_for;
/// let list: BTreeMap<u64, String> = [(1, "a:7001".to_owned()), (2, "b:7001".to_owned())].into();
/// assert_eq!(cluster_id_for(&list), cluster_id_for(&list.clone()));
/// ```
pub fn cluster_id_for(peers: &std::collections::BTreeMap<u64, String>) -> String {
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
    open_with(config, |_| {})
}

/// [`open`], with a last word on raft-rs's configuration: the simulation
/// fixes the election timeout (raft-rs draws it from a random source no
/// seed reaches) and jitters its nodes' ticks instead.
pub(crate) fn open_with(
    config: &NodeConfig,
    tune: impl FnOnce(&mut raft::Config),
) -> Result<Opened, EngineError> {
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
    if restarted {
        recover_membership(&store, state.applied_index())?;
    }
    let conf = store.initial_state()?.conf_state;
    let alone = conf.voters == vec![id] && conf.learners.is_empty();
    let mut raft_config = raft::Config {
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
    tune(&mut raft_config);
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

/// Sets the log's membership to the one as of `applied`, computed from the
/// log itself: the snapshot's membership with every conf change the log
/// holds after it, up to `applied`, applied the way raft-rs applies them.
/// The membership record the log keeps is written when a change applies;
/// should it be lost while the state store's flush covering the change was
/// not (the restart then resumes after the change's entry and never applies
/// it again), the node would run with a stale voter set for good. Changes
/// after `applied` are applied again by the Raft loop.
fn recover_membership(store: &RaftStore, applied: u64) -> Result<(), EngineError> {
    let Some(derived) = membership_at(store, applied) else {
        return Ok(());
    };
    let recorded = store.initial_state()?.conf_state;
    let sorted = |cs: &ConfState| {
        let (mut v, mut l) = (cs.voters.clone(), cs.learners.clone());
        v.sort_unstable();
        l.sort_unstable();
        (v, l)
    };
    if sorted(&derived) == sorted(&recorded) {
        return Ok(());
    }
    tracing::warn!(
        applied,
        recorded_voters = ?recorded.voters,
        recorded_learners = ?recorded.learners,
        voters = ?derived.voters,
        learners = ?derived.learners,
        "the log's membership record disagrees with its entries; taking the entries'"
    );
    let failed = |e: crate::consensus::storage::StorageError| EngineError::Config(e.to_string());
    store.set_conf_state(&derived).map_err(failed)?;
    store.sync().map_err(failed)
}

/// The membership as of `applied` (see [`recover_membership`]); None when
/// it cannot be derived (no snapshot, a joint configuration, entries the
/// log no longer holds), and the recorded one stands.
pub(crate) fn membership_at(store: &RaftStore, applied: u64) -> Option<ConfState> {
    let (index, base) = store.snapshot_conf_state()?;
    if !base.voters_outgoing.is_empty() || applied < index {
        return None;
    }
    let mut tracker = ProgressTracker::new(1);
    let mut conf = ConfState::default();
    let singles = base
        .voters
        .iter()
        .map(|id| (ConfChangeType::AddNode, *id))
        .chain(
            base.learners
                .iter()
                .map(|id| (ConfChangeType::AddLearnerNode, *id)),
        );
    for (kind, id) in singles {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let (cfg, changes) = Changer::new(&tracker).simple(&[single]).ok()?;
        conf = cfg.to_conf_state();
        tracker.apply_conf(cfg, changes, index + 1);
    }
    if applied == index {
        return Some(conf);
    }
    let entries = store
        .entries(
            index + 1,
            applied + 1,
            None,
            GetEntriesContext::empty(false),
        )
        .ok()?;
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryConfChangeV2 {
            continue;
        }
        let change = ConfChangeV2::parse_from_bytes(&entry.data).ok()?;
        if change.leave_joint() || change.enter_joint().is_some() {
            return None;
        }
        // A change raft-rs refused when it applied changed nothing then.
        if let Ok((cfg, changes)) = Changer::new(&tracker).simple(change.get_changes()) {
            conf = cfg.to_conf_state();
            tracker.apply_conf(cfg, changes, entry.index + 1);
        }
    }
    Some(conf)
}

#[cfg(test)]
mod tests {
    use raft::prelude::{Entry, HardState};

    use super::*;

    /// Issue 24, defect 2: the state store's flush covers a membership
    /// change whose record in the log was lost (written, never synced).
    /// The restart resumes after the change's entry; it must still run
    /// with the membership the entry made.
    #[test]
    fn a_restart_takes_the_membership_of_the_log_s_entries_over_a_lost_record() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            storage_path: Some(dir.path().to_path_buf()),
            ..NodeConfig::default()
        };
        let opened = open(&config).unwrap();
        assert!(!opened.restarted);
        let store = opened.raw.store().clone();
        let (snapshot_index, _) = store.snapshot_conf_state().expect("bootstrap snapshot");
        // The conf change entry, committed and durable, applied in memory
        // but with no membership record in the log.
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddNode);
        single.node_id = 2;
        let mut change = ConfChangeV2::default();
        change.set_changes(vec![single].into());
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChangeV2);
        entry.index = snapshot_index + 1;
        entry.term = 1;
        entry.data = change.write_to_bytes().unwrap().into();
        store.append(&[entry]).unwrap();
        let hs = HardState {
            term: 1,
            commit: snapshot_index + 1,
            ..HardState::default()
        };
        store.set_hard_state(&hs).unwrap();
        store.sync().unwrap();
        // The state store's flush covers the entry, durably.
        let mut state = opened.state;
        state.set_applied_index(snapshot_index + 1);
        let archived = state.archive().writer().write(&state.flush()).unwrap();
        state.flushed(archived).unwrap();
        drop((state, opened.raw, store));

        let reopened = open(&config).unwrap();
        assert!(reopened.restarted);
        assert_eq!(reopened.state.applied_index(), snapshot_index + 1);
        let mut voters = reopened
            .raw
            .store()
            .initial_state()
            .unwrap()
            .conf_state
            .voters;
        voters.sort_unstable();
        assert_eq!(voters, vec![config.node_id, 2]);
        assert!(!reopened.alone, "node 2 is a voter now");
    }
}
