//! The way out of a lost quorum (`raftoral cluster recover`): one stopped
//! node's storage becomes a cluster of one voter that keeps every workflow
//! its log holds, in the manner of etcd's `--force-new-cluster`.
//!
//! Offline: the node must be stopped. Its log gets one membership change
//! per other member (each removing it, one at a time, so no joint
//! configuration needs the others), and its commit index moves to the end
//! of its log. When the node starts again it applies everything as
//! committed, the removals last: its running workflows owned by removed
//! members move or wait for an app as after any removal, and it is the
//! only voter, so it elects itself. The other nodes' storage must be
//! wiped; they join the recovered node as new members.
//!
//! What it can lose or revive is said in docs/OPERATIONS.md: entries the
//! cluster committed that this node never received are lost, and entries
//! this node received that the cluster never committed are kept.

use std::path::Path;

use protobuf::Message as _;
use raft::Storage;
use raft::prelude::{ConfChangeType, Entry, EntryType};
use raftoral_proto::cluster::v1::ConfChangeContext;

use crate::consensus::storage::{RaftStore, StorageOptions};
use crate::error::EngineError;
use crate::workflows::state_machine::NodeId;

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The recovered node.
    pub node_id: NodeId,
    /// Commit index the node knew before.
    pub committed_before: u64,
    /// Last index of its log before (everything up to it is now committed).
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
    /// Members removed (all others).
    pub removed: Vec<NodeId>,
}

/// Makes the node whose storage is `dir` the only voter of its cluster;
/// see the module docs. With `dry_run`, changes nothing and says what it
/// would do. Refuses storage in use by a running node, empty storage, and
/// a node that was itself removed.
///
/// ```no_run
/// let done = raftoral::consensus::recovery::recover_alone(std::path::Path::new("/data/raft"), false)?;
/// println!("node {} alone, removed {:?}", done.node_id, done.removed);
/// # Ok::<(), raftoral::EngineError>(())
/// ```
pub fn recover_alone(dir: &Path, dry_run: bool) -> Result<Recovery, EngineError> {
    let config = |e: String| EngineError::Config(e);
    let node_id = RaftStore::stored_node_id(dir)
        .map_err(|e| config(e.to_string()))?
        .ok_or_else(|| {
            config(format!(
                "{} holds no node.id: not a Raftoral node's storage",
                dir.display()
            ))
        })?;
    refuse_if_in_use(dir)?;
    let (store, existed) =
        RaftStore::open(dir, node_id, Default::default(), &StorageOptions::default())
            .map_err(|e| config(e.to_string()))?;
    if !existed {
        return Err(config(format!("{} holds no log", dir.display())));
    }
    let state = store.initial_state()?;
    let last_index = store.last_index()?;
    let last_term = store.term(last_index)?;
    let conf =
        crate::consensus::startup::membership_at(&store, last_index).unwrap_or(state.conf_state);
    let is_voter = conf.voters.contains(&node_id);
    if !is_voter && !conf.learners.contains(&node_id) {
        return Err(config(format!(
            "node {node_id} is no member of its cluster's last membership {:?}: recover a node that is",
            conf.voters
        )));
    }
    let removed: Vec<NodeId> = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .copied()
        .filter(|id| *id != node_id)
        .collect();
    // A learner is made a voter first; then the others go one by one.
    let promote = (!is_voter).then_some((ConfChangeType::AddNode, node_id));
    let changes = promote
        .into_iter()
        .chain(removed.iter().map(|id| (ConfChangeType::RemoveNode, *id)));
    let term = state.hard_state.term.max(last_term);
    let now = crate::consensus::proposal::now_ms();
    let entries: Vec<Entry> = changes
        .enumerate()
        .map(|(i, (kind, id))| {
            change_entry(node_id, kind, id, term, last_index + 1 + i as u64, now)
        })
        .collect();
    let plan = Recovery {
        node_id,
        committed_before: state.hard_state.commit,
        last_index,
        last_term,
        removed,
    };
    if dry_run {
        return Ok(plan);
    }
    let failed = |e: crate::consensus::storage::StorageError| config(e.to_string());
    store.append(&entries).map_err(failed)?;
    let mut hard_state = state.hard_state.clone();
    hard_state.term = term;
    hard_state.commit = last_index + entries.len() as u64;
    store.set_hard_state(&hard_state).map_err(failed)?;
    store.sync().map_err(failed)?;
    tracing::warn!(
        node = node_id,
        removed = ?plan.removed,
        committed_before = plan.committed_before,
        last_index,
        "recovered as the only voter of its cluster"
    );
    Ok(plan)
}

fn change_entry(
    me: NodeId,
    kind: ConfChangeType,
    node: NodeId,
    term: u64,
    index: u64,
    now: u64,
) -> Entry {
    let change = crate::consensus::proposal::single_change(
        kind,
        node,
        &ConfChangeContext {
            proposer_node_id: me,
            proposal_id: 0,
            address: String::new(),
            proposed_at_ms: now,
        },
    );
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChangeV2);
    entry.term = term;
    entry.index = index;
    entry.data = change
        .write_to_bytes()
        .expect("a conf change encodes")
        .into();
    entry
}

/// A running node holds its state store's files open, and redb refuses a
/// second open of a database file: if one cannot be opened, the node runs.
fn refuse_if_in_use(dir: &Path) -> Result<(), EngineError> {
    let state = dir.join(crate::workflows::state_machine::archive::STATE_DIR);
    let Ok(files) = std::fs::read_dir(&state) else {
        return Ok(());
    };
    for path in files.flatten().map(|e| e.path()) {
        if path.extension().and_then(|e| e.to_str()) != Some("redb") {
            continue;
        }
        if let Err(e) = redb::Database::open(&path) {
            return Err(EngineError::Config(format!(
                "{} cannot be opened ({e}): stop the node before recovering its storage",
                path.display()
            )));
        }
    }
    Ok(())
}
