//! [`WorkerCore`]: the checkpoint logic every SDK shares.
//!
//! The core is FFI-friendly: no generic closures cross it. A language layer
//! asks for a checkpoint [`Slot`] and gets either a committed value (replay,
//! or a non-owner replica) or a [`ComputeToken`] (the owner must compute);
//! it runs user code and hands the encoded value back with
//! [`WorkerCore::commit`], or the error it raised with [`WorkerCore::fail`].
//! Replay, ownership changes, cancellation, step failures and their retry
//! policy, and non-determinism checks live here, so every SDK behaves the
//! same.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointProposal, ErrorCode, ExecuteWorkflowRequest, Failure, HeldRun,
    HistoryEntryKind, OwnershipChange, StreamError, WorkflowCancellation, WorkflowResult,
    WorkflowStreamRequest, workflow_stream_request::Message as AppMsg,
};
use tokio::sync::{mpsc, watch};

use crate::error::{ClientError, StepFailure};
use crate::history::{Entry, History};
use crate::retry::RetryPolicy;

/// The app protocol this core speaks (see app.proto): failed steps,
/// attempts and out-of-order seqs in histories.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest failure message and details of a failed attempt, and of a final
/// failure (the sidecar's limits); longer messages are cut, longer details
/// dropped with a warning.
const ATTEMPT_FAILURE_BYTES: usize = 4 * 1024;
const FINAL_FAILURE_BYTES: usize = 64 * 1024;
const STACK_BYTES: usize = 16 * 1024;

/// Pause before re-sending a proposal the sidecar could not commit (no
/// leader, timeout). Proposals are idempotent thanks to seq fencing.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// What the workflow code gets for a checkpoint.
#[derive(Debug)]
pub enum Slot {
    /// The committed value: from history on replay, or from the owner when
    /// this replica is not the owner. Do not compute.
    Committed(Bytes),
    /// This replica owns the workflow: compute the value, then call
    /// [`WorkerCore::commit`] with this token.
    Compute(ComputeToken),
}

/// Permission to compute attempt `attempt` of checkpoint `seq`; spend it
/// with [`WorkerCore::commit`] or [`WorkerCore::fail`].
#[derive(Debug)]
pub struct ComputeToken {
    seq: u64,
    name: String,
    attempt: u32,
}

impl ComputeToken {
    /// 0-based checkpoint position.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// 1-based attempt number (more than 1 after failed attempts, also
    /// those of a previous owner).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// One workflow run on this worker, as seen by the language layer.
#[derive(Debug, Clone)]
pub struct RunHandle {
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow type.
    pub workflow_name: String,
    /// Workflow version.
    pub version: u32,
    /// Encoded input.
    pub input: Bytes,
    generation: u64,
    changes: watch::Receiver<u64>,
}

struct RunState {
    generation: u64,
    /// Workflow type (name, version; version 0 counted as 1).
    kind: (String, u32),
    /// The stream (see `CoreState::connection`) whose execute request last
    /// confirmed this run.
    confirmed_on: u64,
    is_owner: bool,
    /// Committed entries in commit order.
    history: History,
    /// Next seq the workflow code will ask for.
    cursor: u64,
    /// The proposal waiting for its commit. Kept while ownership is away:
    /// if it comes back before another owner committed the seq, this value
    /// is proposed again (the step is not computed twice here).
    in_flight: Option<CheckpointProposal>,
    /// True while `in_flight` is with the sidecar on the current stream and
    /// this replica owns the workflow; false means it must be (re)sent when
    /// ownership allows.
    sent: bool,
    /// A refusal of the in-flight proposal.
    refused: Option<StreamError>,
    cancelled: Option<String>,
    /// The workflow stopped running in the cluster (finished elsewhere).
    ended: Option<String>,
    changes: watch::Sender<u64>,
}

impl RunState {
    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[derive(Default)]
struct CoreState {
    runs: HashMap<String, RunState>,
    outbound: Option<mpsc::Sender<WorkflowStreamRequest>>,
    /// The runtime of the stream, for sends that must wait for room.
    runtime: Option<tokio::runtime::Handle>,
    next_generation: u64,
    /// Counts streams: bumped on every connect.
    connection: u64,
    shutting_down: bool,
}

/// The shared worker core. One per client connection; cheap to share in an
/// `Arc`.
#[derive(Default)]
pub struct WorkerCore {
    state: Mutex<CoreState>,
}

impl WorkerCore {
    /// A core with no stream yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CoreState> {
        self.state.lock().expect("worker core lock poisoned")
    }

    /// A new stream to the sidecar is up; messages go there from now on.
    /// Call it from within the Tokio runtime that drives the stream.
    pub fn on_connect(&self, outbound: mpsc::Sender<WorkflowStreamRequest>) {
        let mut state = self.lock();
        state.outbound = Some(outbound);
        state.runtime = tokio::runtime::Handle::try_current().ok();
        state.connection += 1;
    }

    /// The sidecar acknowledged the registration of `name` version
    /// `version`. It sends every running workflow of the type before the
    /// ack, so a run of that type not confirmed on this stream is not
    /// running in the cluster any more: it finished or was cancelled while
    /// this app was disconnected. It ends with [`ClientError::NotRunning`]
    /// instead of waiting forever for events that will not come.
    pub fn on_registered(&self, name: &str, version: u32) {
        let mut state = self.lock();
        let connection = state.connection;
        let kind = (name.to_owned(), version.max(1));
        for (id, run) in state.runs.iter_mut() {
            if run.kind == kind && run.confirmed_on < connection && run.ended.is_none() {
                tracing::debug!(workflow = %id, "not sent again after the reconnect: not running any more");
                run.ended = Some(
                    "the workflow is not running any more: it finished or was cancelled while this app was disconnected".into(),
                );
                run.changed();
            }
        }
    }

    /// The stream is gone. Runs keep their state but own nothing until the
    /// next stream's execute requests (with history) say who owns what: a
    /// proposal sent before then would reach a session that does not run
    /// the workflow, or a restarted node that does not know it yet.
    /// In-flight proposals are sent again once the execute request confirms
    /// the ownership.
    pub fn on_disconnect(&self) {
        let mut state = self.lock();
        state.outbound = None;
        for run in state.runs.values_mut() {
            run.sent = false;
            run.is_owner = false;
        }
    }

    /// Sends a message on the current stream. A full stream is waited on
    /// (backpressure) on the stream's runtime, never dropped; a message for
    /// a closed stream is dropped, as whatever matters is re-sent after the
    /// reconnect (proposals) or recomputed by replay (results).
    pub fn send(&self, message: AppMsg) {
        let (outbound, runtime) = {
            let state = self.lock();
            (state.outbound.clone(), state.runtime.clone())
        };
        let Some(outbound) = outbound else { return };
        let request = WorkflowStreamRequest {
            message: Some(message),
        };
        match outbound.try_send(request) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(request)) => match runtime {
                Some(runtime) => {
                    runtime.spawn(async move {
                        let _ = outbound.send(request).await;
                    });
                }
                None => tracing::warn!(
                    "sidecar stream is full and no runtime can wait for room; message dropped, it is re-sent after reconnect"
                ),
            },
        }
    }

    /// This process was frozen long enough that the sidecar may have moved
    /// its workflows: no run may compute on what it knew before. Every run
    /// waits as a replica until the next stream's execute requests say who
    /// owns what.
    pub fn on_stale(&self) {
        let mut state = self.lock();
        for run in state.runs.values_mut() {
            run.is_owner = false;
            run.sent = false;
            run.changed();
        }
    }

    /// The runs of (name, version) in progress, with the committed
    /// checkpoints each knows: declared when registering again after a
    /// reconnect, so the sidecar sends only the history after that.
    pub fn held_runs(&self, name: &str, version: u32) -> Vec<HeldRun> {
        let kind = (name.to_owned(), version.max(1));
        self.lock()
            .runs
            .iter()
            .filter(|(_, run)| run.kind == kind && run.ended.is_none())
            .map(|(id, run)| HeldRun {
                workflow_id: id.clone(),
                checkpoints: run.history.len(),
            })
            .collect()
    }

    /// Number of runs in progress on this worker.
    pub fn running(&self) -> usize {
        self.lock().runs.len()
    }

    /// Handles an execute request. Returns a handle when a new run must be
    /// started; `None` when the run exists (a reconnect): it is brought up
    /// to date instead, and its in-flight proposal is re-sent if needed.
    pub fn on_execute(&self, req: ExecuteWorkflowRequest) -> Option<RunHandle> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.shutting_down {
            return None;
        }
        let connection = state.connection;
        if let Some(run) = state.runs.get_mut(&req.workflow_id) {
            run.confirmed_on = connection;
            run.is_owner = req.is_owner;
            // The history may start where this run's ends (it declared
            // what it knows: `held_runs`); what it has already is skipped.
            for (record, index) in req.history.into_iter().zip(req.history_start..) {
                if index == run.history.len() {
                    run.history.push(record.into());
                }
            }
            // A new stream: the waiting `commit` re-sends its proposal if
            // this replica owns the workflow.
            run.sent = false;
            run.changed();
            return None;
        }
        if req.history_start > 0 {
            // Sent for a run this app declared it held, which has finished
            // since (its result went out on this stream): nothing to run.
            tracing::debug!(workflow = %req.workflow_id, "a run declared as held has ended; its execute request is ignored");
            return None;
        }
        state.next_generation += 1;
        let generation = state.next_generation;
        let (changes, rx) = watch::channel(0);
        let mut history = History::default();
        for record in req.history {
            history.push(record.into());
        }
        state.runs.insert(
            req.workflow_id.clone(),
            RunState {
                generation,
                kind: (req.workflow_name.clone(), req.version.max(1)),
                confirmed_on: connection,
                is_owner: req.is_owner,
                history,
                cursor: 0,
                in_flight: None,
                sent: false,
                refused: None,
                cancelled: None,
                ended: None,
                changes,
            },
        );
        Some(RunHandle {
            workflow_id: req.workflow_id,
            workflow_name: req.workflow_name,
            version: req.version,
            input: req.input,
            generation,
            changes: rx,
        })
    }

    /// A checkpoint was committed.
    pub fn on_checkpoint_event(&self, ev: CheckpointEvent) {
        let mut state = self.lock();
        let Some(run) = state.runs.get_mut(&ev.workflow_id) else {
            return;
        };
        let len = run.history.len();
        if ev.history_index == len {
            run.history.push(Entry::from(ev));
            run.changed();
        } else if ev.history_index > len {
            // Cannot happen with an ordered stream; say so loudly rather than
            // misalign the history.
            tracing::error!(workflow = %ev.workflow_id, index = ev.history_index, have = len, "checkpoint event out of order; ignored");
        }
    }

    /// This replica gained or lost ownership. A proposal made before a
    /// loss is kept: when ownership comes back before another owner
    /// committed its seq, the waiting `commit` proposes it again.
    pub fn on_ownership_change(&self, change: OwnershipChange) {
        let mut state = self.lock();
        if let Some(run) = state.runs.get_mut(&change.workflow_id) {
            if run.is_owner != change.is_owner {
                run.sent = false;
            }
            run.is_owner = change.is_owner;
            run.changed();
        }
    }

    /// The workflow was cancelled; its next checkpoint fails.
    pub fn on_cancellation(&self, c: WorkflowCancellation) {
        let mut state = self.lock();
        if let Some(run) = state.runs.get_mut(&c.workflow_id) {
            run.cancelled = Some(c.reason);
            run.changed();
        }
    }

    /// The sidecar refused something. Returns the error back when it
    /// concerns no run (the caller logs it).
    pub fn on_stream_error(&self, e: StreamError) -> Option<StreamError> {
        let mut state = self.lock();
        let Some(run) = state.runs.get_mut(&e.workflow_id) else {
            return Some(e);
        };
        match e.code() {
            // Deposed: the new owner will commit this seq (wait for its
            // event), or ownership comes back and the proposal is re-sent.
            ErrorCode::NotOwner => {
                run.is_owner = false;
                run.sent = false;
            }
            // The seq is committed already (a retried or re-sent proposal
            // whose first attempt committed): its event arrives, or has,
            // before anything else about this workflow. Never a failure.
            ErrorCode::UnexpectedSeq => {}
            // Not known to this node (any more): a workflow removed after
            // it finished. Not a failure of the code: the run ends quietly;
            // if the workflow does run, the sidecar sends it again.
            ErrorCode::UnknownWorkflow => run.ended = Some(e.message),
            // Finished or cancelled elsewhere (say, by the owner that took
            // over while this app was paused): this run just ends.
            ErrorCode::WorkflowNotRunning => run.ended = Some(e.message),
            _ => run.refused = Some(e),
        }
        run.changed();
        None
    }

    /// Wakes every run with [`ClientError::Shutdown`] and refuses new ones.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        for run in state.runs.values() {
            run.changed();
        }
    }

    /// Resolves with the reason once `run` is cancelled; `None` when the run
    /// ends (finished, replaced, shut down) without a cancellation. Lets a
    /// language layer interrupt user code that is between checkpoints
    /// (Node's `AbortSignal`) instead of waiting for its next checkpoint.
    pub async fn cancelled(&self, run: &RunHandle) -> Option<String> {
        let mut changes = run.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let mut state = self.lock();
                if state.shutting_down {
                    return None;
                }
                let r = run_state(&mut state, run).ok()?;
                if let Some(reason) = &r.cancelled {
                    return Some(reason.clone());
                }
            }
            // The sender lives in the run's state: an error means the run
            // is gone.
            changes.changed().await.ok()?;
        }
    }

    /// The slot for the workflow's next checkpoint, named `name`.
    pub async fn checkpoint_slot(&self, run: &RunHandle, name: &str) -> Result<Slot, ClientError> {
        let mut changes = run.changes.clone();
        loop {
            changes.borrow_and_update();
            if let Some(slot) = self.try_checkpoint_slot(run, name) {
                return slot;
            }
            let wake = self.wake_at(run);
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(ClientError::Shutdown);
                },
                // The backoff before the next attempt: a new owner waits
                // out what is left of the committed delay.
                () = sleep_until(wake) => {}
            }
        }
    }

    /// [`checkpoint_slot`](Self::checkpoint_slot) when it can be decided
    /// now (a committed value, a compute token for the owner, or an error);
    /// `None` when the run must wait (a replica ahead of the events).
    /// Bindings call it first: the owner's common case then costs no hop
    /// through an async bridge.
    pub fn try_checkpoint_slot(
        &self,
        run: &RunHandle,
        name: &str,
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
        let seq = r.cursor;
        if let Some(entry) = r.history.resolution(seq) {
            let resolved = resolved(run, entry, name);
            r.cursor += 1;
            return Some(resolved.map(Slot::Committed));
        }
        let mut attempt = 1;
        if let Some(attempts) = r.history.attempts(seq) {
            if attempts.name != name {
                return Some(Err(non_determinism(run, seq, &attempts.name, name)));
            }
            // Before its time (`wake_at` tells the async caller when).
            if tokio::time::Instant::now() < attempts.due {
                return None;
            }
            attempt = attempts.last + 1;
        }
        r.is_owner.then(|| {
            Ok(Slot::Compute(ComputeToken {
                seq,
                name: name.to_owned(),
                attempt,
            }))
        })
    }

    /// When the next attempt of the run's current step is due, while it is
    /// not yet and this replica owns the run.
    fn wake_at(&self, run: &RunHandle) -> Option<tokio::time::Instant> {
        let mut state = self.lock();
        let r = run_state(&mut state, run).ok()?;
        let due = r.history.attempts(r.cursor)?.due;
        (r.is_owner && tokio::time::Instant::now() < due).then_some(due)
    }

    /// Proposes the computed value for `token` and waits for the commit.
    /// Returns the committed value, which every replica continues with (or
    /// the committed failure, as [`ClientError::StepFailed`], when another
    /// owner failed the step first).
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
            // The attempt is committed: the next one after its delay (the
            // cursor still points at this step).
            Settled::AttemptCommitted => self.checkpoint_slot(run, &token.name).await,
        }
    }

    /// Sends `proposal` for the run's current step until it settles: the
    /// step resolves (the result, whoever committed it), or, for a failed
    /// attempt, an attempt of that number commits.
    async fn propose(
        &self,
        run: &RunHandle,
        mut proposal: CheckpointProposal,
    ) -> Result<Settled, ClientError> {
        let seq = proposal.seq;
        let is_attempt = proposal.kind() == HistoryEntryKind::StepAttemptFailed;
        {
            let mut state = self.lock();
            let r = run_state(&mut state, run)?;
            r.in_flight = Some(proposal.clone());
            r.sent = false;
            r.refused = None;
        }
        let mut changes = run.changes.clone();
        loop {
            changes.borrow_and_update();
            let mut send = false;
            let mut retry = false;
            {
                let mut state = self.lock();
                let shutting_down = state.shutting_down;
                let connected = state.outbound.is_some();
                let r = run_state(&mut state, run)?;
                if let Some(entry) = r.history.resolution(seq) {
                    r.in_flight = None;
                    r.sent = false;
                    r.cursor = seq + 1;
                    // After an ownership change another replica may have
                    // committed this seq; its name must match ours.
                    return resolved(run, entry, &proposal.checkpoint_name).map(Settled::Resolved);
                }
                if let Some(attempts) = r.history.attempts(seq)
                    && attempts.last >= proposal.attempt
                {
                    if attempts.name != proposal.checkpoint_name {
                        r.in_flight = None;
                        return Err(non_determinism(
                            run,
                            seq,
                            &attempts.name,
                            &proposal.checkpoint_name,
                        ));
                    }
                    if is_attempt {
                        // This attempt failed (here, or on another owner
                        // that ran it too): settled either way.
                        r.in_flight = None;
                        r.sent = false;
                        return Ok(Settled::AttemptCommitted);
                    }
                    // Another owner failed this attempt meanwhile: this
                    // outcome is the next attempt's.
                    proposal.attempt = attempts.last + 1;
                    r.in_flight = Some(proposal.clone());
                    r.sent = false;
                }
                if shutting_down {
                    return Err(ClientError::Shutdown);
                }
                if let Some(reason) = &r.cancelled {
                    return Err(cancelled(run, reason));
                }
                if let Some(message) = &r.ended {
                    return Err(not_running(run, message));
                }
                if let Some(refusal) = r.refused.take() {
                    if refusal.code() == ErrorCode::Unavailable {
                        r.sent = false;
                        retry = true;
                    } else {
                        r.in_flight = None;
                        return Err(ClientError::Rejected {
                            workflow_id: run.workflow_id.clone(),
                            code: refusal.code(),
                            message: refusal.message,
                        });
                    }
                } else if r.is_owner && !r.sent && connected {
                    r.sent = true;
                    send = true;
                }
            }
            if send {
                self.send(AppMsg::CheckpointProposal(proposal.clone()));
                continue;
            }
            if retry {
                tracing::debug!(workflow = %run.workflow_id, seq, "sidecar could not commit; retrying the proposal");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            if changes.changed().await.is_err() {
                return Err(ClientError::Shutdown);
            }
        }
    }

    /// Reports the workflow's outcome and forgets the run. The owner's result
    /// is committed; a replica's is compared with it by the sidecar (a
    /// difference is reported as non-determinism). Cancellation and shutdown
    /// are not outcomes: nothing is reported, so a workflow interrupted by a
    /// shutdown resumes elsewhere.
    pub fn finish(&self, run: &RunHandle, outcome: Result<Bytes, ClientError>) {
        {
            let mut state = self.lock();
            match state.runs.get(&run.workflow_id) {
                Some(r) if r.generation == run.generation => {
                    state.runs.remove(&run.workflow_id);
                }
                _ => return,
            }
        }
        let result = match outcome {
            // Not outcomes of the workflow: a cancellation is committed
            // already, a shutdown resumes elsewhere, and a workflow that
            // finished elsewhere has its outcome. Reporting them would make
            // a replica's "result" differ from the owner's: a false
            // non-determinism report.
            Err(
                ClientError::Cancelled { .. }
                | ClientError::Shutdown
                | ClientError::NotRunning { .. },
            ) => return,
            Ok(value) => WorkflowResult {
                workflow_id: run.workflow_id.clone(),
                success: true,
                result: value,
                error: String::new(),
                failure: None,
            },
            Err(e) => {
                // An uncaught step failure fails the workflow with the
                // step's error, structured.
                let failure = match &e {
                    ClientError::StepFailed(f) => Some(f.failure.clone()),
                    _ => None,
                };
                WorkflowResult {
                    workflow_id: run.workflow_id.clone(),
                    success: false,
                    result: Bytes::new(),
                    // The function's own failure is stored as its message alone.
                    error: match e {
                        ClientError::WorkflowFailed { message, .. } => message,
                        other => other.to_string(),
                    },
                    failure,
                }
            }
        };
        if !result.success {
            tracing::warn!(workflow = %run.workflow_id, error = %result.error, "workflow failed");
        }
        self.send(AppMsg::WorkflowResult(result));
    }
}

/// How a proposal for a step settled.
enum Settled {
    /// The step resolved with this value.
    Resolved(Bytes),
    /// The failed attempt proposed is committed.
    AttemptCommitted,
}

/// The value of a resolved step, or its committed failure; a different
/// name than the code's is non-determinism.
fn resolved(run: &RunHandle, entry: &Entry, name: &str) -> Result<Bytes, ClientError> {
    if entry.name != name {
        return Err(non_determinism(run, entry.seq, &entry.name, name));
    }
    match &entry.failure {
        Some(failure) if entry.kind == HistoryEntryKind::StepFailed => {
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

fn non_determinism(run: &RunHandle, seq: u64, expected: &str, got: &str) -> ClientError {
    ClientError::NonDeterminism {
        workflow_id: run.workflow_id.clone(),
        seq,
        expected: expected.to_owned(),
        got: got.to_owned(),
    }
}

/// `failure` within the sidecar's limits: message cut to `limit`, details
/// past it dropped (with a warning: they are the caller's structure, and a
/// cut one would not be JSON), stack cut, an empty type named "Error".
fn bounded(mut failure: Failure, limit: usize, workflow_id: &str) -> Failure {
    if failure.r#type.is_empty() {
        failure.r#type = "Error".into();
    }
    cut(&mut failure.r#type, 256);
    cut(&mut failure.message, limit);
    cut(&mut failure.stack, STACK_BYTES);
    if failure.details_json.len() > limit {
        tracing::warn!(workflow = %workflow_id, bytes = failure.details_json.len(), limit, "failure details too large to commit; dropped");
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

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn run_state<'a>(
    state: &'a mut CoreState,
    run: &RunHandle,
) -> Result<&'a mut RunState, ClientError> {
    match state.runs.get_mut(&run.workflow_id) {
        Some(r) if r.generation == run.generation => Ok(r),
        _ => Err(ClientError::Shutdown),
    }
}

fn not_running(run: &RunHandle, message: &str) -> ClientError {
    ClientError::NotRunning {
        workflow_id: run.workflow_id.clone(),
        message: message.to_owned(),
    }
}

fn cancelled(run: &RunHandle, reason: &str) -> ClientError {
    ClientError::Cancelled {
        workflow_id: run.workflow_id.clone(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_failure_tests.rs"]
mod failure_tests;
