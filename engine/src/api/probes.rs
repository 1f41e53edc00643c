//! Liveness and readiness of a node: the answers behind the sidecar's
//! `/health` and `/ready`, usable as they are by an embedded app.

pub use crate::error::ProbeFailure;
use crate::node::Node;

/// Applied entries may trail the commit index by this much on a ready node;
/// more means it is still replaying or catching up.
const READY_LAG: u64 = 1_000;

/// Liveness: the node runs (its Raft loop has not stopped, by a storage
/// failure, a panic or otherwise). A node that is not live must be
/// restarted.
///
/// ```no_run
/// # async fn demo(node: raftoral::Node) {
/// match raftoral::api::probes::health(&node) {
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
