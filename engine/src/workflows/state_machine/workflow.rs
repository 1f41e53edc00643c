//! The replicated record of one workflow, and its form in snapshots and in
//! the store (`raftoral.cluster.v1.WorkflowRecord`).

use bytes::Bytes;
use raftoral_proto::cluster::v1::{CheckpointEntry, WorkflowRecord};
use raftoral_proto::sidecar::v1::{WorkflowInfo, WorkflowStatus};

/// Raft node id.
pub type NodeId = u64;

/// A workflow type: (name, version).
pub type WorkflowType = (String, u32);

/// One committed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Name given by the workflow code.
    pub name: String,
    /// Encoded value.
    pub value: Bytes,
    /// Proposer's clock at commit, ms since the Unix epoch.
    pub committed_at_ms: u64,
}

/// The replicated state of one workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Unique id.
    pub id: String,
    /// Workflow type.
    pub name: String,
    /// Workflow version.
    pub version: u32,
    /// Encoded input.
    pub input: Bytes,
    /// Lifecycle state.
    pub status: WorkflowStatus,
    /// Owner node; 0 while pending.
    pub owner: NodeId,
    /// Committed checkpoints, in seq order.
    pub checkpoints: Vec<Checkpoint>,
    /// Encoded result when completed.
    pub result: Bytes,
    /// Error when failed, reason when cancelled.
    pub error: String,
    /// Why the workflow is pending.
    pub pending_reason: String,
    /// Start time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl Workflow {
    /// True once completed, failed or cancelled.
    pub fn is_terminal(&self) -> bool {
        is_terminal(self.status)
    }

    /// The client API view of this workflow.
    pub fn to_info(&self) -> WorkflowInfo {
        WorkflowInfo {
            workflow_id: self.id.clone(),
            workflow_name: self.name.clone(),
            version: self.version,
            status: self.status as i32,
            owner_node_id: self.owner,
            checkpoint_count: self.checkpoints.len() as u64,
            input: self.input.clone(),
            result: self.result.clone(),
            error: self.error.clone(),
            pending_reason: self.pending_reason.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// True for the statuses a workflow never leaves.
pub fn is_terminal(status: WorkflowStatus) -> bool {
    matches!(
        status,
        WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
    )
}

/// A workflow as a snapshot or the store holds it.
pub(super) fn record(w: &Workflow) -> WorkflowRecord {
    WorkflowRecord {
        workflow_id: w.id.clone(),
        workflow_name: w.name.clone(),
        version: w.version,
        input: w.input.clone(),
        status: w.status as i32,
        owner_node_id: w.owner,
        checkpoints: w
            .checkpoints
            .iter()
            .map(|c| CheckpointEntry {
                checkpoint_name: c.name.clone(),
                value: c.value.clone(),
                committed_at_ms: c.committed_at_ms,
            })
            .collect(),
        result: w.result.clone(),
        error: w.error.clone(),
        pending_reason: w.pending_reason.clone(),
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
    }
}

/// A workflow from its snapshot or store form.
pub(super) fn workflow(w: WorkflowRecord) -> Workflow {
    let status = w.status();
    Workflow {
        id: w.workflow_id,
        name: w.workflow_name,
        version: w.version,
        input: w.input,
        status,
        owner: w.owner_node_id,
        checkpoints: w
            .checkpoints
            .into_iter()
            .map(|c| Checkpoint {
                name: c.checkpoint_name,
                value: c.value,
                committed_at_ms: c.committed_at_ms,
            })
            .collect(),
        result: w.result,
        error: w.error,
        pending_reason: w.pending_reason,
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
    }
}
