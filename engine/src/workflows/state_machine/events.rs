//! Events produced by applying committed commands, delivered to subscribers
//! such as app sessions and waiters.

use raftoral_proto::sidecar::v1::WorkflowStatus;

use super::workflow::{Checkpoint, NodeId};

/// An [`Event`] with the index of the log entry that produced it. A reader
/// that took a view of the state at applied index `i` has seen every event
/// with `index <= i` already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAt {
    /// Log index of the entry applied (for node-local events, the applied
    /// index when they happened).
    pub index: u64,
    /// What happened.
    pub event: Event,
}

/// Something that happened in the replicated state, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node registered a (name, version).
    WorkerRegistered {
        /// The node.
        node_id: NodeId,
        /// Workflow type.
        workflow_name: String,
        /// Workflow version.
        version: u32,
    },
    /// A workflow started running (at start, or when it left PENDING).
    WorkflowRunning {
        /// The workflow.
        workflow_id: String,
        /// Its owner.
        owner: NodeId,
    },
    /// A workflow moved to another owner (failover).
    OwnerChanged {
        /// The workflow.
        workflow_id: String,
        /// The previous owner.
        old: NodeId,
        /// The new owner.
        new: NodeId,
    },
    /// A node's app connected (present) or left.
    PresenceChanged {
        /// The node.
        node_id: NodeId,
        /// True when an app is connected.
        present: bool,
    },
    /// A history entry (a step's value, final failure or failed attempt)
    /// was committed.
    CheckpointCommitted {
        /// The workflow.
        workflow_id: String,
        /// The entry's place in the history's commit order.
        history_index: u64,
        /// The entry.
        entry: Checkpoint,
    },
    /// A workflow was cancelled.
    WorkflowCancelled {
        /// The workflow.
        workflow_id: String,
        /// The reason.
        reason: String,
    },
    /// A running workflow's cancel was requested: its code may clean up
    /// until `cleanup_until_ms`.
    WorkflowCancelRequested {
        /// The workflow.
        workflow_id: String,
        /// The reason.
        reason: String,
        /// When the cleanup window ends (log time).
        cleanup_until_ms: u64,
    },
    /// A workflow reached a terminal status.
    WorkflowFinished {
        /// The workflow.
        workflow_id: String,
        /// Completed, failed or cancelled.
        status: WorkflowStatus,
    },
    /// Node-local: an app session ended and released its workflows, so other
    /// sessions on this node may take them over. Not replicated.
    SessionsChanged,
    /// Node-local: the state was replaced by a snapshot from the leader.
    /// Events inside the snapshot's range were never produced here, so
    /// sessions and waiters must read the state again. Not replicated.
    StateReplaced,
}
