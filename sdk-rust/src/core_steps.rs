//! The steps of a run: positions taken in call order, slots, commits and
//! failures, several at once (steps running side by side), with their
//! resolutions handed to the code in commit order (the release rule, see
//! `history.rs`).

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{CheckpointProposal, ErrorCode, Failure, HistoryEntryKind};

use super::{
    ComputeToken, Pending, RunHandle, Slot, WorkerCore, cancelled, not_running, run_state,
};
use crate::error::{ClientError, StepFailure};
use crate::history::{Entry, Op};
use crate::retry::RetryPolicy;
use raftoral_proto::sidecar::v1::workflow_stream_request::Message as AppMsg;

/// Largest failure message and details of a failed attempt, and of a final
/// failure (the sidecar's limits); longer messages are cut, longer details
/// dropped with a warning.
const ATTEMPT_FAILURE_BYTES: usize = 4 * 1024;
pub(super) const FINAL_FAILURE_BYTES: usize = 64 * 1024;
const STACK_BYTES: usize = 16 * 1024;
/// How long a step waits behind a resolution the code never asked for
/// before that is logged as a likely non-deterministic replay.
const STALL_WARNING: std::time::Duration = std::time::Duration::from_secs(10);

/// A step position the workflow code took, by name; ask for its slot with
/// [`WorkerCore::slot`]. Taken synchronously, when the code calls the step,
/// so steps started side by side get positions in call order.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    seq: u64,
    name: String,
}

impl SlotRequest {
    /// 0-based step position.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl WorkerCore {
    /// Takes the next step position for a step named `name`. A committed
    /// entry at that position with another name, or a timer's, is
    /// non-determinism.
    pub fn request(&self, run: &RunHandle, name: &str) -> Result<SlotRequest, ClientError> {
        self.take_position(run, name, Op::Step)
    }

    /// Takes the next position for an operation `op` named `name`.
    pub(super) fn take_position(
        &self,
        run: &RunHandle,
        name: &str,
        op: Op,
    ) -> Result<SlotRequest, ClientError> {
        self.take_position_as(run, op, |_| name.to_owned())
    }

    /// [`take_position`](Self::take_position) for an operation whose name
    /// derives from its position (an awakeable's reserved event name).
    pub(super) fn take_position_as(
        &self,
        run: &RunHandle,
        op: Op,
        name_at: impl FnOnce(u64) -> String,
    ) -> Result<SlotRequest, ClientError> {
        let (seq, name, deliver) = {
            let mut state = self.lock();
            let r = run_state(&mut state, run)?;
            let seq = r.cursor;
            let name = name_at(seq);
            let name = name.as_str();
            if let Some((known, was)) = r.history.known(seq)
                && (known != name || was.is_some_and(|was| was != op))
            {
                return Err(non_determinism(
                    run,
                    seq,
                    &was.unwrap_or(op).label(known),
                    &op.label(name),
                ));
            }
            r.cursor += 1;
            if op == Op::Timer {
                // Timers handed out already are behind every `first` the
                // code can still call: forget them, so a run's map stays
                // as small as its open timers.
                let history = &r.history;
                r.timer_positions.retain(|s, _| !history.passed(*s));
                r.timer_positions.insert(seq, name.to_owned());
            }
            if r.history.resolution(seq).is_none() {
                r.open.insert(seq, (name.to_owned(), op));
            }
            (seq, name.to_owned(), r.cancel_request.is_some())
        };
        // A cancel request not delivered yet goes to this position.
        if deliver {
            self.deliver_cancel(&run.workflow_id);
        }
        Ok(SlotRequest { seq, name })
    }

    /// The slot of the workflow's next step, named `name`: takes its
    /// position ([`request`](Self::request)) and waits for its slot. A
    /// slot decided at once (a replayed value) still yields to the runtime
    /// once, as a live commit does, so branches joined side by side take
    /// their next positions in the same order live and in a replay.
    pub async fn checkpoint_slot(&self, run: &RunHandle, name: &str) -> Result<Slot, ClientError> {
        let req = self.request(run, name)?;
        self.first_slot(run, &req).await
    }

    /// The slot of `req`, just taken: [`try_slot`](Self::try_slot), with
    /// a yield as a live commit has, else [`slot`](Self::slot).
    pub(crate) async fn first_slot(
        &self,
        run: &RunHandle,
        req: &SlotRequest,
    ) -> Result<Slot, ClientError> {
        if let Some(slot) = self.try_slot(run, req) {
            tokio::task::yield_now().await;
            return slot;
        }
        self.slot(run, req).await
    }

    /// The slot of `req`: its resolution (a value, or its committed failure
    /// as [`ClientError::StepFailed`]) once it is the next to hand out, or
    /// a [`ComputeToken`] when this replica owns the run and the step's
    /// backoff (after failed attempts) has passed.
    pub async fn slot(&self, run: &RunHandle, req: &SlotRequest) -> Result<Slot, ClientError> {
        let mut changes = run.changes.clone();
        // When the wait first looks stuck behind a resolution the code has
        // not asked for, a warning is due STALL_WARNING later (no timer is
        // armed for the common wait, a commit on its way).
        let mut warn_at: Option<tokio::time::Instant> = None;
        let mut warned = false;
        loop {
            changes.borrow_and_update();
            if let Some(slot) = self.try_slot(run, req) {
                return slot;
            }
            self.deliver_cancel(&run.workflow_id);
            if warn_at.is_none() && self.stalled_behind(run, req).is_some() {
                warn_at = Some(tokio::time::Instant::now() + STALL_WARNING);
            }
            let wake = self.wake_at(run, req.seq);
            tokio::select! {
                () = sleep_until(warn_at.filter(|_| !warned)) => {
                    warned = true;
                    self.warn_if_stalled(run, req);
                }
                changed = changes.changed() => if changed.is_err() {
                    return Err(ClientError::Shutdown);
                },
                // The backoff before the next attempt: a new owner waits
                // out what is left of the committed delay.
                () = sleep_until(wake) => {}
            }
        }
    }

    /// [`slot`](Self::slot) when it can be decided now; `None` when the
    /// run must wait (a replica ahead of the events, a resolution behind
    /// one not handed out yet, a backoff). Bindings call it first: the
    /// owner's common case then costs no hop through an async bridge.
    pub fn try_slot(
        &self,
        run: &RunHandle,
        req: &SlotRequest,
    ) -> Option<Result<Slot, ClientError>> {
        let mut state = self.lock();
        let shutting_down = state.shutting_down;
        let r = match run_state(&mut state, run) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        if shutting_down {
            return Some(Err(ClientError::Shutdown));
        }
        if let Some(reason) = &r.cancelled {
            return Some(Err(cancelled(run, reason)));
        }
        if let Some(message) = &r.ended {
            return Some(Err(not_running(run, message)));
        }
        let seq = req.seq;
        if let Some(entry) = r.history.resolution(seq) {
            if !r.history.is_next_release(seq) {
                return None;
            }
            let out = resolved(run, entry, &req.name, Op::Step);
            r.history.release();
            r.changed();
            return Some(out.map(Slot::Committed));
        }
        let mut attempt = 1;
        if let Some(attempts) = r.history.attempts(seq) {
            if attempts.name != req.name {
                return Some(Err(non_determinism(run, seq, &attempts.name, &req.name)));
            }
            // Before its time (`wake_at` tells the async caller when).
            if tokio::time::Instant::now() < attempts.due {
                return None;
            }
            attempt = attempts.last + 1;
        }
        // An outcome of this seq already waits for its commit (a binding
        // that asks again): no second computation; nor where the
        // cancellation is being delivered.
        if !r.is_owner || r.pending.contains_key(&seq) || r.cancelling(seq) {
            return None;
        }
        Some(Ok(Slot::Compute(ComputeToken {
            seq,
            name: req.name.clone(),
            attempt,
        })))
    }

    /// When the next attempt of step `seq` is due, while it is not yet and
    /// this replica owns the run.
    /// Says so when `req` waits behind a resolution whose step the code has
    /// not taken: the history resolved it next, so a deterministic replay
    /// takes it before it needs `req`. Code that waits on `req` first has
    /// changed (or awaits something other than workflow operations between
    /// steps running side by side) and will wait for good.
    fn warn_if_stalled(&self, run: &RunHandle, req: &SlotRequest) {
        let Some((head, name)) = self.stalled_behind(run, req) else {
            return;
        };
        tracing::warn!(
            workflow = %run.workflow_id,
            waiting_seq = req.seq,
            waiting_step = %req.name,
            next_seq = head,
            next_step = %name,
            "replay stalled: the history resolved step seq {head} ('{name}') before seq {} ('{}'), and the code has not asked for it; is the workflow code deterministic? (between steps running side by side, await only workflow operations)",
            req.seq,
            req.name,
        );
    }

    /// The resolution (seq, step name) `req` waits behind that the code
    /// has not asked for, if any.
    pub(super) fn stalled_behind(
        &self,
        run: &RunHandle,
        req: &SlotRequest,
    ) -> Option<(u64, String)> {
        let mut state = self.lock();
        let r = run_state(&mut state, run).ok()?;
        let head = r.history.next_release()?;
        if head == req.seq || head < r.cursor {
            return None;
        }
        let name = r.history.resolution(head).map(|e| e.name.clone());
        Some((head, name.unwrap_or_default()))
    }

    fn wake_at(&self, run: &RunHandle, seq: u64) -> Option<tokio::time::Instant> {
        let mut state = self.lock();
        let r = run_state(&mut state, run).ok()?;
        let due = r.history.attempts(seq)?.due;
        (r.is_owner && tokio::time::Instant::now() < due).then_some(due)
    }

    /// Proposes the computed value for `token` and waits for the commit.
    /// Returns the committed value, which every replica continues with (or
    /// the committed failure, as [`ClientError::StepFailed`], when another
    /// owner failed the step first), once it is the next to hand out.
    ///
    /// The proposal is (re)sent whenever this replica owns the workflow and
    /// the sidecar does not hold it: first, after a reconnect, after an
    /// `UNAVAILABLE` refusal (after a pause), and when ownership comes back.
    /// A duplicate that committed already resolves to the committed value.
    pub async fn commit(
        &self,
        run: &RunHandle,
        token: ComputeToken,
        value: Bytes,
    ) -> Result<Bytes, ClientError> {
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: token.seq,
            checkpoint_name: token.name.clone(),
            value,
            attempt: token.attempt,
            ..CheckpointProposal::default()
        };
        match self.propose(run, proposal).await? {
            Settled::Resolved(value) => Ok(value),
            // Only a failed attempt settles without resolving the step, and
            // a value proposal is re-based past those: unreachable.
            Settled::AttemptCommitted => Err(ClientError::Usage(format!(
                "step '{}' of workflow '{}' did not resolve",
                token.name, run.workflow_id
            ))),
        }
    }

    /// The step's code raised `failure` in the attempt of `token`. With
    /// `policy`, the core decides: a retryable failure with attempts left
    /// is committed as a failed attempt with the policy's delay, and once
    /// that delay has passed the result is the token for the next attempt
    /// ([`Slot::Compute`]); otherwise the failure is committed as the
    /// step's, and returned as [`ClientError::StepFailed`], on this replica
    /// as on every other and in every replay. `jitter` in `[0, 1)` draws
    /// the delay's jitter (the binding's random source). If another owner
    /// resolved the step first, its value or failure wins.
    pub async fn fail(
        &self,
        run: &RunHandle,
        token: ComputeToken,
        failure: Failure,
        policy: &RetryPolicy,
        jitter: f64,
    ) -> Result<Slot, ClientError> {
        let is_final = policy.is_final(token.attempt, &failure.r#type, failure.non_retryable);
        let (kind, limit, delay) = if is_final {
            (HistoryEntryKind::StepFailed, FINAL_FAILURE_BYTES, 0)
        } else {
            let delay = policy.delay(token.attempt, jitter).as_millis() as u64;
            (
                HistoryEntryKind::StepAttemptFailed,
                ATTEMPT_FAILURE_BYTES,
                delay,
            )
        };
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: token.seq,
            checkpoint_name: token.name.clone(),
            kind: kind as i32,
            failure: Some(bounded(failure, limit, &run.workflow_id)),
            attempt: token.attempt,
            retry_delay_ms: delay,
            ..CheckpointProposal::default()
        };
        match self.propose(run, proposal).await? {
            Settled::Resolved(value) => Ok(Slot::Committed(value)),
            // The attempt is committed: the next one after its delay.
            Settled::AttemptCommitted => {
                let req = SlotRequest {
                    seq: token.seq,
                    name: token.name,
                };
                self.slot(run, &req).await
            }
        }
    }

    /// Sends `proposal` until it settles: its step resolves (the result,
    /// whoever committed it, once it is the next to hand out), or, for a
    /// failed attempt, an attempt of that number commits.
    pub(super) async fn propose(
        &self,
        run: &RunHandle,
        mut proposal: CheckpointProposal,
    ) -> Result<Settled, ClientError> {
        let seq = proposal.seq;
        let is_attempt = proposal.kind() == HistoryEntryKind::StepAttemptFailed;
        let op = Op::of(proposal.kind());
        {
            let mut state = self.lock();
            let r = run_state(&mut state, run)?;
            r.pending.insert(seq, Pending { sent: false });
            r.refused.remove(&seq);
        }
        let mut changes = run.changes.clone();
        let outcome = loop {
            changes.borrow_and_update();
            let mut send = false;
            let mut retry = false;
            {
                let mut state = self.lock();
                let shutting_down = state.shutting_down;
                let connected = state.outbound.is_some();
                let r = run_state(&mut state, run)?;
                // A child's start is handed out in its turn, by the task
                // that started it (`core_children.rs`).
                if proposal.kind() == HistoryEntryKind::ChildStarted
                    && r.history.is_next_release(crate::history::start_key(seq))
                {
                    r.history.release();
                    r.changed();
                }
                if let Some(entry) = r.history.resolution(seq) {
                    // Committed (here or by another owner): no more sends,
                    // and the result waits for its turn; a position the
                    // code gave up on (the loser of a `first`) has none.
                    r.pending.remove(&seq);
                    if r.history.is_abandoned(seq) {
                        break resolved(run, entry, &proposal.checkpoint_name, op)
                            .map(Settled::Resolved);
                    }
                    if r.history.is_next_release(seq) {
                        let out = resolved(run, entry, &proposal.checkpoint_name, op);
                        r.history.release();
                        r.changed();
                        break out.map(Settled::Resolved);
                    }
                } else if (proposal.kind() == HistoryEntryKind::TimerStarted
                    && r.history.timer(seq).is_some())
                    || (proposal.kind() == HistoryEntryKind::EventWaiting
                        && r.history.wait(seq).is_some())
                    || (proposal.kind() == HistoryEntryKind::ChildStarted
                        && r.history.child(seq).is_some())
                {
                    // The timer's start (the wait) is committed: the
                    // cluster resolves it, nothing more to send.
                    r.pending.remove(&seq);
                } else if r.history.is_abandoned(seq) && !r.pending.contains_key(&seq) {
                    // A losing timer whose start was never sent: `first`
                    // cancels its position; nothing more to wait for here.
                    break Ok(Settled::Resolved(Bytes::new()));
                } else if let Some(attempts) = r.history.attempts(seq)
                    && attempts.last >= proposal.attempt
                {
                    if attempts.name != proposal.checkpoint_name {
                        r.pending.remove(&seq);
                        break Err(non_determinism(
                            run,
                            seq,
                            &attempts.name,
                            &proposal.checkpoint_name,
                        ));
                    }
                    if is_attempt {
                        // This attempt failed (here, or on another owner
                        // that ran it too): settled either way.
                        r.pending.remove(&seq);
                        break Ok(Settled::AttemptCommitted);
                    }
                    // Another owner failed this attempt meanwhile: this
                    // outcome is the next attempt's.
                    proposal.attempt = attempts.last + 1;
                    r.pending.insert(seq, Pending { sent: false });
                }
                if shutting_down {
                    break Err(ClientError::Shutdown);
                }
                if let Some(reason) = &r.cancelled {
                    break Err(cancelled(run, reason));
                }
                if let Some(message) = &r.ended {
                    break Err(not_running(run, message));
                }
                let is_owner = r.is_owner;
                if let Some(refusal) = r.refused.remove(&seq) {
                    if refusal.code() == ErrorCode::Unavailable {
                        if let Some(p) = r.pending.get_mut(&seq) {
                            p.sent = false;
                        }
                        retry = true;
                    } else {
                        r.pending.remove(&seq);
                        break Err(ClientError::Rejected {
                            workflow_id: run.workflow_id.clone(),
                            code: refusal.code(),
                            message: refusal.message,
                        });
                    }
                } else if let Some(p) = r.pending.get_mut(&seq)
                    && is_owner
                    && !p.sent
                    && connected
                    && !r.cancel_proposals.contains_key(&seq)
                {
                    p.sent = true;
                    send = true;
                }
            }
            if send {
                self.send(AppMsg::CheckpointProposal(proposal.clone()));
                continue;
            }
            if retry {
                // A backoff before re-sending what the sidecar could not
                // commit (no leader yet); a change of the run ends no wait.
                tracing::debug!(workflow = %run.workflow_id, seq, "sidecar could not commit; retrying the proposal");
                tokio::time::sleep(super::RETRY_DELAY).await;
                self.deliver_cancel(&run.workflow_id);
                continue;
            }
            if changes.changed().await.is_err() {
                break Err(ClientError::Shutdown);
            }
        };
        if outcome.is_err() {
            let mut state = self.lock();
            if let Ok(r) = run_state(&mut state, run) {
                r.pending.remove(&seq);
            }
        }
        outcome
    }
}

/// How a proposal for a step settled.
pub(super) enum Settled {
    /// The step resolved with this value.
    Resolved(Bytes),
    /// The failed attempt proposed is committed.
    AttemptCommitted,
}

/// The value of a resolved step, or its committed failure; a different
/// name than the code's is non-determinism.
/// `op` is what the code does at the position: a resolution of another
/// operation (arriving after the position was taken) is non-determinism
/// too; a delivered cancellation fits every operation.
pub(super) fn resolved(
    run: &RunHandle,
    entry: &Entry,
    name: &str,
    op: Op,
) -> Result<Bytes, ClientError> {
    if entry.name != name || (entry.op() != op && !entry.is_cancellation()) {
        return Err(non_determinism(
            run,
            entry.seq,
            &entry.op().label(&entry.name),
            &op.label(name),
        ));
    }
    match &entry.failure {
        // The workflow's cancel request, delivered here.
        Some(failure) if entry.is_cancellation() => Err(cancelled(run, &failure.message)),
        Some(failure)
            if matches!(
                entry.kind,
                HistoryEntryKind::StepFailed | HistoryEntryKind::ChildFailed
            ) =>
        {
            Err(ClientError::StepFailed(Box::new(StepFailure {
                workflow_id: run.workflow_id.clone(),
                seq: entry.seq,
                step: entry.name.clone(),
                attempts: entry.attempt,
                failure: failure.clone(),
            })))
        }
        _ => Ok(entry.value.clone()),
    }
}

pub(super) fn non_determinism(run: &RunHandle, seq: u64, expected: &str, got: &str) -> ClientError {
    ClientError::NonDeterminism {
        workflow_id: run.workflow_id.clone(),
        seq,
        expected: expected.to_owned(),
        got: got.to_owned(),
    }
}

/// `failure` as the sidecar accepts it: message cut to `limit`, details
/// that are not JSON or longer than `limit` dropped (with a warning: they
/// are the caller's structure, and a cut one would not be JSON), stack cut,
/// an empty type named "Error". Every failure the core sends passes here
/// (steps' and workflows' outcomes), whichever language built it.
pub(super) fn bounded(mut failure: Failure, limit: usize, workflow_id: &str) -> Failure {
    if failure.r#type.is_empty() {
        failure.r#type = "Error".into();
    }
    cut(&mut failure.r#type, 256);
    cut(&mut failure.message, limit);
    cut(&mut failure.stack, STACK_BYTES);
    if failure.details_json.len() > limit {
        tracing::warn!(workflow = %workflow_id, bytes = failure.details_json.len(), limit, "failure details too large to commit; dropped");
        failure.details_json.clear();
    } else if !failure.details_json.is_empty()
        && serde_json::from_str::<serde::de::IgnoredAny>(&failure.details_json).is_err()
    {
        tracing::warn!(workflow = %workflow_id, "failure details are not JSON; dropped");
        failure.details_json.clear();
    }
    failure
}

fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// The retry timer: sleeps until the next attempt is due (`at`), or
/// forever without one (the caller also waits for the run's changes).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
