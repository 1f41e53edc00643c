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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, ErrorCode, ExecuteWorkflowRequest, HeldRun, OwnershipChange, StreamError,
    WorkflowCancellation, WorkflowStreamRequest, workflow_stream_request::Message as AppMsg,
};
use tokio::sync::{mpsc, watch};

use crate::determinism::Random;
use crate::error::ClientError;
use crate::history::{Entry, History};

/// The app protocol this core speaks (see app.proto): failed steps,
/// attempts and out-of-order seqs in histories (2), durable timers (3),
/// cancel requests delivered into the code (4), event waits (5), status
/// values and awakeables (6), cancelled waits of a `first` (7), child
/// workflows (8).
pub const PROTOCOL_VERSION: u32 = 8;

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
    /// Committed entries in commit order, and which resolutions the code
    /// was handed.
    history: History,
    /// The next position the workflow code takes (positions are taken when
    /// a step is asked for, in call order).
    cursor: u64,
    /// Positions the code took for timers, with their names (a losing
    /// timer of a `first` is cancelled; a losing step runs on).
    timer_positions: HashMap<u64, String>,
    /// The proposals waiting for their commit, by seq. Kept while ownership
    /// is away: if it comes back before another owner committed the seq,
    /// the same outcome is proposed again (the step is not computed twice
    /// here).
    pending: BTreeMap<u64, Pending>,
    /// Refusals of pending proposals, by seq.
    refused: HashMap<u64, StreamError>,
    /// Positions the code took that were not resolved then, with their
    /// names and operations (pruned as they resolve): what
    /// a cancel request is delivered to (`core_cancel.rs`).
    open: BTreeMap<u64, (String, crate::history::Op)>,
    /// The reason of the workflow's cancel request, once the sidecar sent
    /// it: the code gets it as `Cancelled` where the owner delivers it.
    cancel_request: Option<String>,
    /// The owner's proposals delivering the cancel request, by seq: true
    /// while sent on the current stream.
    cancel_proposals: BTreeMap<u64, bool>,
    /// Waits that lost a `first`, by seq: their event names, and true
    /// while their cancellation is sent on the current stream
    /// (`core_events.rs`).
    wait_cancels: BTreeMap<u64, (String, bool)>,
    /// Counts the times running attempts must stop: a cancel request
    /// delivered to new positions, or the run cancelled for good.
    interrupts: u64,
    /// The workflow was cancelled for good (no cleanup): every operation
    /// of the code fails with this reason.
    cancelled: Option<String>,
    /// The generator of `random` and `uuid`.
    random: Random,
    /// The workflow stopped running in the cluster (finished elsewhere).
    ended: Option<String>,
    changes: watch::Sender<u64>,
}

/// A proposal waiting for its commit (the waiting `commit` or `fail`
/// holds the proposal itself).
struct Pending {
    /// True while it is with the sidecar on the current stream and this
    /// replica owns the workflow; false means it must be (re)sent when
    /// ownership allows.
    sent: bool,
}

impl RunState {
    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends the next committed entry; a position it resolves is not
    /// open any more.
    fn push(&mut self, entry: Entry) {
        let seq = entry.seq;
        self.history.push(entry);
        if self.history.resolution(seq).is_some() {
            self.open.remove(&seq);
        }
    }

    /// Every pending proposal must be sent again (a new stream, or
    /// ownership that changed).
    fn unsend(&mut self) {
        for pending in self.pending.values_mut() {
            pending.sent = false;
        }
        for sent in self.cancel_proposals.values_mut() {
            *sent = false;
        }
        for (_, sent) in self.wait_cancels.values_mut() {
            *sent = false;
        }
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
            run.unsend();
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
            run.unsend();
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
                    run.push(record.into());
                }
            }
            // A new stream: the waiting `commit`s re-send their proposals
            // if this replica owns the workflow.
            run.unsend();
            run.changed();
            let id = req.workflow_id.clone();
            drop(guard);
            self.deliver_cancel(&id);
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
                timer_positions: Default::default(),
                pending: BTreeMap::new(),
                refused: HashMap::new(),
                open: BTreeMap::new(),
                cancel_request: None,
                cancel_proposals: BTreeMap::new(),
                wait_cancels: BTreeMap::new(),
                interrupts: 0,
                cancelled: None,
                random: Random::new(req.random_seed, &req.workflow_id),
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
        let id = ev.workflow_id.clone();
        let deliver = {
            let mut state = self.lock();
            let Some(run) = state.runs.get_mut(&ev.workflow_id) else {
                return;
            };
            let len = run.history.len();
            if ev.history_index == len {
                // A failed attempt committed before a cancellation of its
                // step: that cancellation needs the next attempt number.
                if ev.kind() == raftoral_proto::sidecar::v1::HistoryEntryKind::StepAttemptFailed
                    && let Some(sent) = run.cancel_proposals.get_mut(&ev.seq)
                {
                    *sent = false;
                }
                run.push(Entry::from(ev));
                run.changed();
            } else if ev.history_index > len {
                // Cannot happen with an ordered stream; say so loudly rather than
                // misalign the history.
                tracing::error!(workflow = %ev.workflow_id, index = ev.history_index, have = len, "checkpoint event out of order; ignored");
                return;
            }
            run.cancel_request.is_some() || !run.wait_cancels.is_empty()
        };
        // The common case (no cancel requested) takes the lock once.
        if deliver {
            self.deliver_cancel(&id);
        }
    }

    /// This replica gained or lost ownership. A proposal made before a
    /// loss is kept: when ownership comes back before another owner
    /// committed its seq, the waiting `commit` proposes it again.
    pub fn on_ownership_change(&self, change: OwnershipChange) {
        {
            let mut state = self.lock();
            if let Some(run) = state.runs.get_mut(&change.workflow_id) {
                if run.is_owner != change.is_owner {
                    run.unsend();
                }
                run.is_owner = change.is_owner;
                run.changed();
            }
        }
        self.deliver_cancel(&change.workflow_id);
    }

    /// The workflow was cancelled: for good (every operation of its code
    /// fails from now on), or, with `requested`, as a request the code
    /// gets where the owner delivers it (see `core_cancel.rs`).
    pub fn on_cancellation(&self, c: WorkflowCancellation) {
        {
            let mut state = self.lock();
            let Some(run) = state.runs.get_mut(&c.workflow_id) else {
                return;
            };
            if c.requested {
                if run.cancel_request.is_some() {
                    return;
                }
                run.cancel_request = Some(c.reason);
            } else {
                run.cancelled = Some(c.reason);
                run.interrupts += 1;
            }
            run.changed();
        }
        self.deliver_cancel(&c.workflow_id);
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
                run.unsend();
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
            // A delivery the cluster could not commit yet: sent again at
            // the run's next change (its waiting steps look every 200 ms).
            ErrorCode::Unavailable if run.cancel_proposals.contains_key(&e.seq) => {
                run.cancel_proposals.insert(e.seq, false);
            }
            // A losing wait's cancellation: sent again at the next change.
            ErrorCode::Unavailable if run.wait_cancels.contains_key(&e.seq) => {
                if let Some((_, sent)) = run.wait_cancels.get_mut(&e.seq) {
                    *sent = false;
                }
            }
            // About one proposal: its waiting `commit` takes it.
            _ if run.pending.contains_key(&e.seq) => {
                run.refused.insert(e.seq, e);
            }
            _ => {
                tracing::warn!(workflow = %e.workflow_id, seq = e.seq, code = ?e.code(), message = %e.message, "the sidecar refused a message of this run");
            }
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

#[path = "core_cancel.rs"]
mod cancel;
#[path = "core_children.rs"]
mod children;
#[path = "core_events.rs"]
mod events;
pub use children::ChildRequest;
#[path = "core_finish.rs"]
mod finish;
#[path = "core_determinism.rs"]
mod helpers;
pub use events::{AwakeableRequest, EventRequest};
#[path = "core_status.rs"]
mod status;
pub use status::{MAX_STATUS_BYTES, StatusRequest};
#[path = "core_steps.rs"]
mod steps;
pub use steps::SlotRequest;
#[path = "core_timers.rs"]
mod timers;
pub use timers::{MAX_TIMER, TimerRequest};

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_failure_tests.rs"]
mod failure_tests;

#[cfg(test)]
#[path = "core_timer_tests.rs"]
mod timer_tests;

#[cfg(test)]
#[path = "core_cancel_tests.rs"]
mod cancel_tests;

#[cfg(test)]
#[path = "core_children_tests.rs"]
mod children_tests;
#[cfg(test)]
#[path = "core_event_tests.rs"]
mod event_tests;
#[cfg(test)]
#[path = "core_status_tests.rs"]
mod status_tests;
