//! Child workflows (app protocol 8): the code starts a child at a position
//! like a step; the owner proposes `CHILD_STARTED` with the child to start,
//! and the cluster starts the child in that same entry. The child's end
//! resolves the position (`CHILD_COMPLETED` with its result, or
//! `CHILD_FAILED` with its failure), the same on every replica and in every
//! replay. A child's id defaults to `{parent_id}/{seq}`, so a replay names
//! the same child and never starts a second one.

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointProposal, ChildStart, HistoryEntryKind, ParentClosePolicy,
};

use super::steps::Settled;
use super::{RunHandle, WorkerCore};
use crate::error::ClientError;
use crate::history::Op;

/// A child workflow the code started (with [`WorkerCore::request_child`]):
/// its id is known at once; [`WorkerCore::child_started`] waits for its
/// start to commit, [`WorkerCore::child`] for its result.
#[derive(Debug, Clone)]
pub struct ChildRequest {
    seq: u64,
    start: ChildStart,
}

impl ChildRequest {
    /// 0-based position in the parent.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The child's workflow id.
    pub fn id(&self) -> &str {
        &self.start.workflow_id
    }

    /// The child's workflow type.
    pub fn workflow_name(&self) -> &str {
        &self.start.workflow_name
    }
}

/// The id a child started at `seq` of `parent` gets when the code names
/// none: the same in every replay.
pub(crate) fn default_child_id(parent: &str, seq: u64) -> String {
    format!("{parent}/{seq}")
}

impl WorkerCore {
    /// Takes the next position for a child workflow of type
    /// `workflow_name` (version 0 means 1) with the encoded `input`, named
    /// `id` (none: `{parent_id}/{seq}`), ended by `parent_close` if this
    /// workflow ends first. A position whose history holds another
    /// operation, or a child of another type, is non-determinism.
    pub fn request_child(
        &self,
        run: &RunHandle,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        id: Option<String>,
        parent_close: ParentClosePolicy,
    ) -> Result<ChildRequest, ClientError> {
        if id.as_deref() == Some(run.workflow_id.as_str()) {
            return Err(ClientError::Usage(format!(
                "workflow '{}' cannot be its own child: give the child another id, or none",
                run.workflow_id
            )));
        }
        if id.as_deref() == Some("") {
            return Err(ClientError::Usage(
                "a child's id must not be empty: give none and one is derived from the parent's id and the position".into(),
            ));
        }
        let req = self.take_position(run, workflow_name, Op::Child)?;
        let seq = req.seq();
        Ok(ChildRequest {
            seq,
            start: ChildStart {
                workflow_name: workflow_name.to_owned(),
                version: version.max(1),
                input,
                workflow_id: id.unwrap_or_else(|| default_child_id(&run.workflow_id, seq)),
                parent_close: parent_close as i32,
            },
        })
    }

    /// Waits until the child of `req` is started: its `CHILD_STARTED` is
    /// committed and handed out in commit order like a resolution (so the
    /// code goes on at the same point live and in replay), or its position
    /// resolved without a start (a cancel request). Call it while
    /// [`child`](Self::child) runs: that task sends the start and hands it
    /// out.
    pub async fn child_started(
        &self,
        run: &RunHandle,
        req: &ChildRequest,
    ) -> Result<(), ClientError> {
        self.wait_run(run, |r| r.history.start_passed(req.seq).then_some(()))
            .await
    }

    /// Starts the child of `req` (the owner proposes it when the history
    /// has none) and waits for its end: its result, or
    /// [`ClientError::StepFailed`] with its failure (type
    /// `raftoral.ChildCancelled` for a cancelled child,
    /// `raftoral.WorkflowTimeout` for one that timed out,
    /// `raftoral.ChildIdInUse` when another workflow holds its id).
    pub async fn child(&self, run: &RunHandle, req: &ChildRequest) -> Result<Bytes, ClientError> {
        // A replayed child resolves at once; yield once as a live one does,
        // so branches side by side go on in the same order.
        tokio::task::yield_now().await;
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: req.seq,
            checkpoint_name: req.start.workflow_name.clone(),
            kind: HistoryEntryKind::ChildStarted as i32,
            attempt: 1,
            child: Some(req.start.clone()),
            ..CheckpointProposal::default()
        };
        match self.propose(run, proposal).await? {
            Settled::Resolved(value) => Ok(value),
            Settled::AttemptCommitted => Err(ClientError::Usage(format!(
                "child '{}' of workflow '{}' did not resolve",
                req.start.workflow_id, run.workflow_id
            ))),
        }
    }
}
