//! Readable status values (app protocol 6): `set_status` takes a position
//! like a step and commits a `STATUS_SET` entry with the key and value;
//! clients read the latest value of each key from the history on any
//! node. In a replay the committed entry is handed out as a step's value
//! is, so the code's positions stay the same.

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{CheckpointProposal, HistoryEntryKind};

use super::steps::Settled;
use super::{RunHandle, WorkerCore};
use crate::error::ClientError;
use crate::history::Op;

/// Largest status value (the sidecar refuses more): a status is a small
/// summary read by clients, not data.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;

/// A status the workflow code set, its position taken (with
/// [`WorkerCore::request_status`]); commit it with [`WorkerCore::status`].
/// Taken synchronously, when the code calls it, so statuses and steps
/// started side by side get positions in call order.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    seq: u64,
    key: String,
    value: Bytes,
}

impl StatusRequest {
    /// 0-based position.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl WorkerCore {
    /// Sets the workflow's status value `key` to `value` (encoded):
    /// [`request_status`](Self::request_status) then
    /// [`status`](Self::status).
    pub async fn set_status(
        &self,
        run: &RunHandle,
        key: &str,
        value: Bytes,
    ) -> Result<(), ClientError> {
        let req = self.request_status(run, key, value)?;
        self.status(run, &req).await
    }

    /// Takes the next position for status `key` with `value` (at most
    /// [`MAX_STATUS_BYTES`], else a usage error before any position is
    /// taken). A position whose history holds another operation or key is
    /// non-determinism.
    pub fn request_status(
        &self,
        run: &RunHandle,
        key: &str,
        value: Bytes,
    ) -> Result<StatusRequest, ClientError> {
        if value.len() > MAX_STATUS_BYTES {
            return Err(ClientError::Usage(format!(
                "status '{key}' of workflow '{}' is {} bytes, over the {MAX_STATUS_BYTES}-byte \
                 limit; keep a status small and put data in a step's value",
                run.workflow_id,
                value.len()
            )));
        }
        let req = self.take_position(run, key, Op::Status)?;
        Ok(StatusRequest {
            seq: req.seq(),
            key: key.to_owned(),
            value,
        })
    }

    /// Commits the status of `req`; returns once committed, at once in a
    /// replay.
    pub async fn status(&self, run: &RunHandle, req: &StatusRequest) -> Result<(), ClientError> {
        // A replayed status resolves at once; yield once as a live one
        // does, so branches side by side go on in the same order.
        tokio::task::yield_now().await;
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: req.seq,
            checkpoint_name: req.key.clone(),
            kind: HistoryEntryKind::StatusSet as i32,
            value: req.value.clone(),
            attempt: 1,
            ..CheckpointProposal::default()
        };
        match self.propose(run, proposal).await? {
            Settled::Resolved(_) => Ok(()),
            Settled::AttemptCommitted => Err(ClientError::Usage(format!(
                "status '{}' of workflow '{}' did not resolve",
                req.key, run.workflow_id
            ))),
        }
    }
}
