//! Cancel requests delivered into the code (app protocol 4).
//!
//! A running workflow's cancel is a request: the sidecar sends it to every
//! replica (`WorkflowCancellation.requested`), and the owner delivers it.
//! It proposes, at every position the code awaits and has not given up on
//! (none: the next one the code takes), a `raftoral.Cancelled` failure (a
//! `STEP_FAILED`, or a `TIMER_CANCELLED` at a sleep) and runs nothing more
//! there. Those entries raise [`ClientError::Cancelled`] at their
//! positions, on the owner as on every replica and in every replay, so
//! code that catches it and runs compensation steps replays the same.
//! Positions taken after the delivery run as usual. Delivery is done once
//! such an entry resolved a position the code still awaited; until then
//! (say, every proposal lost to a value committed first) the owner
//! delivers again. A function that ends with the error reports the
//! workflow CANCELLED (`WorkerCore::finish`).

use raftoral_proto::sidecar::v1::workflow_stream_request::Message as AppMsg;
use raftoral_proto::sidecar::v1::{CheckpointProposal, Failure, HistoryEntryKind};

use super::{RunHandle, RunState, WorkerCore, run_state};
use crate::history::{CANCELLED_TYPE, Op};

impl WorkerCore {
    /// Resolves with the reason once `run`'s workflow is cancelled (a
    /// cancel request, or a cancel for good); `None` when the run ends
    /// (finished, replaced, shut down) first. For code that wants to know
    /// (`is_cancelled` in the SDKs): the positions that raise are the
    /// core's to decide, see [`interrupted`](Self::interrupted).
    pub async fn cancelled(&self, run: &RunHandle) -> Option<String> {
        self.watch(run, |r| {
            r.cancelled.as_ref().or(r.cancel_request.as_ref()).cloned()
        })
        .await
    }

    /// The interruptions of `run` so far: pass it to
    /// [`interrupted`](Self::interrupted) when a step attempt starts.
    pub fn interrupts(&self, run: &RunHandle) -> u64 {
        let mut state = self.lock();
        run_state(&mut state, run).map_or(0, |r| r.interrupts)
    }

    /// Resolves once `run` has more than `after` interruptions, with the
    /// reason and the new count; `None` when the run ends first. An
    /// interruption means: stop the step attempts running now (their
    /// outcome is not wanted) and ask the core for their slots again
    /// ([`slot`](Self::slot)); a position the cancellation was delivered
    /// to then resolves with [`ClientError::Cancelled`](crate::ClientError::Cancelled),
    /// another one gets its attempt again. Bindings keep one watcher per
    /// run: `n = 0; loop { (_, n) = interrupted(n).await?; stop attempts }`.
    pub async fn interrupted(&self, run: &RunHandle, after: u64) -> Option<(String, u64)> {
        self.watch(run, |r| {
            let reason = r.cancelled.as_ref().or(r.cancel_request.as_ref());
            (r.interrupts > after).then(|| (reason.cloned().unwrap_or_default(), r.interrupts))
        })
        .await
    }

    /// Resolves once the attempt running at `seq` must stop: the
    /// cancellation is delivered there, the position resolved otherwise
    /// (another owner), or the run ended. The Rust SDK races each attempt
    /// with it (a future per attempt costs nothing there).
    pub(crate) async fn interrupted_at(&self, run: &RunHandle, seq: u64) {
        self.watch(run, |r| {
            (r.cancelled.is_some()
                || r.ended.is_some()
                || r.cancel_proposals.contains_key(&seq)
                || r.history.resolution(seq).is_some())
            .then_some(())
        })
        .await;
    }

    /// Waits until `ready` gives a value, looking again at every change of
    /// the run; `None` once the run is gone or the worker shuts down.
    async fn watch<T>(
        &self,
        run: &RunHandle,
        mut ready: impl FnMut(&RunState) -> Option<T>,
    ) -> Option<T> {
        let mut changes = run.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let mut state = self.lock();
                if state.shutting_down {
                    return None;
                }
                let r = run_state(&mut state, run).ok()?;
                if let Some(value) = ready(r) {
                    return Some(value);
                }
            }
            // The sender lives in the run's state: an error means the run
            // is gone.
            changes.changed().await.ok()?;
        }
    }

    /// Sends what delivering `workflow_id`'s cancel request needs now, and
    /// the cancellations of waits that lost a `first` (`core_events.rs`).
    /// Called after every change of the run that can matter: the request
    /// itself, a commit, ownership, a new stream, a position taken.
    pub(super) fn deliver_cancel(&self, workflow_id: &str) {
        let proposals = {
            let mut state = self.lock();
            let connected = state.outbound.is_some();
            let Some(r) = state.runs.get_mut(workflow_id) else {
                return;
            };
            if r.cancel_request.is_none() && r.wait_cancels.is_empty() {
                return;
            }
            let mut proposals = r.cancel_proposals_to_send(workflow_id, connected);
            proposals.extend(r.wait_cancels_to_send(workflow_id, connected));
            if !proposals.is_empty() {
                r.changed();
            }
            proposals
        };
        for proposal in proposals {
            self.send(AppMsg::CheckpointProposal(proposal));
        }
    }
}

impl RunState {
    /// True while the cancel request is being delivered at `seq`: nothing
    /// else runs or is proposed there.
    pub(super) fn cancelling(&self, seq: u64) -> bool {
        self.cancel_proposals.contains_key(&seq)
    }

    /// The proposals that deliver the cancel request and are not with the
    /// sidecar yet (targets chosen first when none is delivered nor in
    /// flight).
    fn cancel_proposals_to_send(
        &mut self,
        workflow_id: &str,
        connected: bool,
    ) -> Vec<CheckpointProposal> {
        let Some(reason) = self.cancel_request.clone() else {
            return Vec::new();
        };
        if self.cancelled.is_some() || self.ended.is_some() {
            return Vec::new();
        }
        let history = &self.history;
        self.open
            .retain(|seq, _| history.resolution(*seq).is_none());
        self.cancel_proposals
            .retain(|seq, _| history.resolution(*seq).is_none() && !history.is_abandoned(*seq));
        if !self.is_owner {
            return Vec::new();
        }
        if !history.cancel_delivered() && self.cancel_proposals.is_empty() {
            let targets: Vec<u64> = self
                .open
                .keys()
                .filter(|seq| !history.is_abandoned(**seq))
                .copied()
                .collect();
            if !targets.is_empty() {
                tracing::info!(workflow = %workflow_id, positions = ?targets, "delivering the cancel request to the code");
                self.interrupts += 1;
            }
            for seq in targets {
                self.cancel_proposals.insert(seq, false);
            }
        }
        if !connected {
            return Vec::new();
        }
        let mut proposals = Vec::new();
        for (seq, sent) in self.cancel_proposals.iter_mut() {
            if *sent {
                continue;
            }
            *sent = true;
            let (name, op) = self.open.get(seq).cloned().unwrap_or_default();
            let (kind, attempt) = if op == Op::Timer {
                (HistoryEntryKind::TimerCancelled, 1)
            } else if op == Op::Event || op == Op::Child {
                // A wait ends with the step failure (app.proto, Events); so
                // does the wait for a child (which its parent's end then
                // meets with its parent-close policy).
                (HistoryEntryKind::StepFailed, 1)
            } else {
                let last = history.attempts(*seq).map_or(0, |a| a.last);
                (HistoryEntryKind::StepFailed, last + 1)
            };
            proposals.push(CheckpointProposal {
                workflow_id: workflow_id.to_owned(),
                seq: *seq,
                checkpoint_name: name,
                kind: kind as i32,
                failure: Some(Failure {
                    r#type: CANCELLED_TYPE.into(),
                    message: reason.clone(),
                    ..Failure::default()
                }),
                attempt,
                ..CheckpointProposal::default()
            });
        }
        proposals
    }
}
