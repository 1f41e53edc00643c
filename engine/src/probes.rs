//! Liveness and readiness of a node: the answers behind the sidecar's
//! `/health` and `/ready`, usable as they are by an embedded app.

use crate::node::Node;

/// Applied entries may trail the commit index by this much on a ready node;
/// more means it is still replaying or catching up.
const READY_LAG: u64 = 1_000;

/// Why a node is not healthy, or not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The Raft loop stopped after a storage failure.
    #[error(
        "the node stopped after a storage failure: {0}; restart it (its log is intact up to the last fsync)"
    )]
    StorageFailed(String),
    /// The Raft loop ended otherwise (a panic, i.e. a bug, or an exit
    /// nobody asked for), or another essential task failed.
    #[error("the node stopped: {0}")]
    Stopped(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// No leader is known: no quorum reachable from here, or an election.
    #[error("no leader known: an election is running or no quorum is reachable from this node")]
    NoLeader,
    /// The node was removed from the cluster: it will never be a member
    /// again under this id.
    #[error(
        "this node was removed from the cluster and no longer serves as a member; stop it, and start a replacement with a new node id and empty storage"
    )]
    Removed,
    /// The node is not a voter or learner (yet).
    #[error("this node is not a member of the cluster yet (waiting to be added after --join)")]
    NotMember,
    /// The node is still applying its log.
    #[error("catching up: applied index {applied} of {commit} committed")]
    CatchingUp {
        /// Highest applied index.
        applied: u64,
        /// Highest committed index.
        commit: u64,
    },
}

/// Liveness: the node runs (its Raft loop has not stopped, by a storage
/// failure, a panic or otherwise). A node that is not live must be
/// restarted.
///
/// ```no_run
/// # async fn demo(node: raftoral::Node) {
/// match raftoral::probes::health(&node) {
///     Ok(()) => println!("ok"),
///     Err(e) => println!("unhealthy: {e}"),
/// }
/// # }
/// ```
pub fn health(node: &Node) -> Result<(), ProbeFailure> {
    if let Some(failure) = node.stopped_because() {
        return Err(failure);
    }
    if node.is_shutting_down() {
        return Err(ProbeFailure::ShuttingDown);
    }
    Ok(())
}

/// Readiness: the node can take work now. It is live, a member, knows a
/// leader (so proposals can commit) and has applied its log.
pub fn readiness(node: &Node) -> Result<(), ProbeFailure> {
    health(node)?;
    let status = node.raft_status();
    if !status.voters.contains(&status.id) && !status.learners.contains(&status.id) {
        if node.read(|sm| sm.was_removed(status.id)) {
            return Err(ProbeFailure::Removed);
        }
        return Err(ProbeFailure::NotMember);
    }
    if status.leader_id == 0 {
        return Err(ProbeFailure::NoLeader);
    }
    if status.applied_index + READY_LAG < status.commit_index {
        return Err(ProbeFailure::CatchingUp {
            applied: status.applied_index,
            commit: status.commit_index,
        });
    }
    Ok(())
}
