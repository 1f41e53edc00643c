//! An app's step proposals: checked on the session loop, then proposed off
//! it. Proposals that arrive together (steps the app runs side by side)
//! are proposed together, as one input of the Raft loop: one append and one
//! fsync for all of them, where one by one the first would go alone and
//! the rest wait for its fsync.

use raftoral_proto::sidecar::v1::{CheckpointProposal, ErrorCode};

use super::wire::{Subject, error_for, stream_error};
use super::{End, Refusal, WorkerSession};
use crate::error::EngineError;

impl WorkerSession {
    /// Checks a proposal and adds it to the batch that
    /// [`flush_proposals`](Self::flush_proposals) proposes.
    pub(super) async fn on_proposal(&mut self, p: CheckpointProposal) -> Result<(), End> {
        let subject = Subject::CheckpointProposal;
        if p.workflow_id.is_empty() || p.checkpoint_name.is_empty() {
            return self
                .send(stream_error(
                    ErrorCode::MalformedMessage,
                    "checkpoint_proposal needs a workflow_id and a checkpoint_name",
                    subject,
                    &p.workflow_id,
                    p.seq,
                ))
                .await;
        }
        if p.value.len() > self.node.config().max_value_bytes {
            let e = EngineError::ValueTooLarge {
                what: "checkpoint value".into(),
                len: p.value.len(),
                max: self.node.config().max_value_bytes,
            };
            return self
                .send(error_for(&e, subject, &p.workflow_id, p.seq))
                .await;
        }
        // Only the session that runs the workflow on this node may propose;
        // the state machine fences other nodes, this check fences other apps
        // connected to the same sidecar.
        if !self.active.contains_key(&p.workflow_id) {
            return self
                .send(self.not_running_here(subject, &p.workflow_id, p.seq))
                .await;
        }
        // The batch holds permits: propose it before waiting for room.
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.flush_proposals();
                let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                    return Err(End::Shutdown);
                };
                permit
            }
        };
        self.batch.push((p, permit));
        Ok(())
    }

    /// Proposes the batch. The commits are awaited off the session loop so
    /// that proposals of other workflows are not serialised behind them; a
    /// refusal comes back through the loop to keep its place in the commit
    /// order.
    pub(super) fn flush_proposals(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (proposals, permits): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        let keys: Vec<(String, u64)> = proposals
            .iter()
            .map(|p| (p.workflow_id.clone(), p.seq))
            .collect();
        let node = self.node.clone();
        let refusals = self.refusals_tx.clone();
        tokio::spawn(async move {
            let outcomes = node.record_steps(proposals).await;
            for ((workflow_id, seq), outcome) in keys.into_iter().zip(outcomes) {
                if let Err(e) = outcome {
                    tracing::debug!(workflow = %workflow_id, seq, error = %e, "checkpoint proposal refused");
                    let _ = refusals.send(Refusal {
                        message: error_for(&e, Subject::CheckpointProposal, &workflow_id, seq),
                    });
                }
            }
            drop(permits);
        });
    }
}
