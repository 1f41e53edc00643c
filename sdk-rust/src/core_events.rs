//! Waits for events (app protocol 5): a wait takes a position like a
//! step; the owner commits it (`EVENT_WAITING`, with its timeout), and the
//! cluster resolves it: `EVENT_RECEIVED` with the payload of the first
//! event of the name sent (before or after the wait), or `EVENT_TIMED_OUT`
//! when the timeout passed first, decided by log order, the same on every
//! replica and in every replay. Nothing here reads a clock.
//!
//! A wait that loses a `first` is cancelled by the owner
//! (`EVENT_WAIT_CANCELLED`, app protocol 7): an open wait resolves so, and
//! one that took an event meanwhile gives the event back to the workflow
//! (the next wait of its name gets it). `first` does not wait for a
//! give-back: the receipt it undoes is behind the release cursor already,
//! live as in replay, and the cluster re-delivers the event in log order.

use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::awakeable;
use raftoral_proto::sidecar::v1::{CheckpointProposal, HistoryEntryKind};

use super::steps::Settled;
use super::timers::MAX_TIMER;
use super::{RunHandle, RunState, WorkerCore, run_state};
use crate::error::{ClientError, StepFailure};
use crate::history::Op;

/// An awakeable the workflow code created (with
/// [`WorkerCore::request_awakeable`], app protocol 6): hand [`id`](Self::id)
/// to whoever completes it (`complete_awakeable` through any node), and
/// wait with [`WorkerCore::awakeable`]. It is an event wait for a reserved
/// name, at a position taken like a step's.
#[derive(Debug, Clone)]
pub struct AwakeableRequest {
    wait: EventRequest,
    id: String,
}

impl AwakeableRequest {
    /// The id that completes it: `awk/{seq}/{workflow_id}`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// 0-based position.
    pub fn seq(&self) -> u64 {
        self.wait.seq
    }
}

/// An event wait's position the workflow code took (with
/// [`WorkerCore::request_event`]); wait with [`WorkerCore::event`]. Taken
/// synchronously, when the code calls the wait, so waits and steps started
/// side by side get positions in call order.
#[derive(Debug, Clone)]
pub struct EventRequest {
    seq: u64,
    name: String,
    timeout: Option<Duration>,
}

impl EventRequest {
    /// 0-based position.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl WorkerCore {
    /// Takes the next position for a wait for the event `name`, with an
    /// optional timeout (at most [`MAX_TIMER`], else a usage error before
    /// any position is taken). A position whose history holds another
    /// operation, or a wait for another name, is non-determinism.
    pub fn request_event(
        &self,
        run: &RunHandle,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<EventRequest, ClientError> {
        if name.starts_with(awakeable::EVENT_PREFIX) {
            return Err(ClientError::Usage(format!(
                "event name '{name}' starts with '{}', which is reserved for awakeables; use \
                 awakeable() for a completion from outside, or name the event otherwise",
                awakeable::EVENT_PREFIX
            )));
        }
        if timeout.is_some_and(|t| t > MAX_TIMER) {
            return Err(ClientError::Usage(format!(
                "the wait for event '{name}' of workflow '{}' has a timeout over 366 days; wait in several steps for longer",
                run.workflow_id
            )));
        }
        let req = self.take_position(run, name, Op::Event)?;
        Ok(EventRequest {
            seq: req.seq(),
            name: name.to_owned(),
            timeout,
        })
    }

    /// Waits for the event of `req`: its payload, or `None` when its
    /// timeout passed first. The owner proposes the wait when the history
    /// has none; the resolution is handed out in commit order like a
    /// step's value.
    pub async fn event(
        &self,
        run: &RunHandle,
        req: &EventRequest,
    ) -> Result<Option<Bytes>, ClientError> {
        // A replayed wait resolves at once; yield once as a live one does,
        // so branches side by side go on in the same order.
        tokio::task::yield_now().await;
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: req.seq,
            checkpoint_name: req.name.clone(),
            kind: HistoryEntryKind::EventWaiting as i32,
            attempt: 1,
            // 0: no timeout; a zero timeout waits at least a millisecond.
            timer_duration_ms: req.timeout.map_or(0, |t| (t.as_millis() as u64).max(1)),
            ..CheckpointProposal::default()
        };
        let value = match self.propose(run, proposal).await? {
            Settled::Resolved(value) => value,
            Settled::AttemptCommitted => {
                return Err(ClientError::Usage(format!(
                    "the wait for event '{}' of workflow '{}' did not resolve",
                    req.name, run.workflow_id
                )));
            }
        };
        let mut state = self.lock();
        let r = run_state(&mut state, run)?;
        let received = r
            .history
            .resolution(req.seq)
            .is_some_and(|e| e.kind == HistoryEntryKind::EventReceived);
        Ok(received.then_some(value))
    }

    /// Creates an awakeable at the next position (its id is known at
    /// once, from the position). Wait for it with
    /// [`awakeable`](Self::awakeable).
    pub fn request_awakeable(&self, run: &RunHandle) -> Result<AwakeableRequest, ClientError> {
        let req = self.take_position_as(run, Op::Event, awakeable::event_name)?;
        Ok(AwakeableRequest {
            id: awakeable::id(&run.workflow_id, req.seq()),
            wait: EventRequest {
                seq: req.seq(),
                name: awakeable::event_name(req.seq()),
                timeout: None,
            },
        })
    }

    /// Waits for the awakeable of `req` to be completed: its payload, or
    /// [`ClientError::StepFailed`] with the failure it was rejected with.
    pub async fn awakeable(
        &self,
        run: &RunHandle,
        req: &AwakeableRequest,
    ) -> Result<Bytes, ClientError> {
        let value = self.event(run, &req.wait).await?;
        let mut state = self.lock();
        let r = run_state(&mut state, run)?;
        let entry = r.history.resolution(req.seq());
        if let Some(failure) = entry.and_then(|e| e.failure.clone()) {
            return Err(ClientError::StepFailed(Box::new(StepFailure {
                workflow_id: run.workflow_id.clone(),
                seq: req.seq(),
                step: req.id.clone(),
                attempts: 1,
                failure,
            })));
        }
        Ok(value.unwrap_or_default())
    }
}

impl WorkerCore {
    /// `seq` lost a `first`: when it is an event wait, its cancellation is
    /// noted (sent by the owner until the history settles it) and `true`
    /// is returned; `false` for other operations.
    pub(super) fn lose_wait(&self, run: &RunHandle, seq: u64) -> Result<bool, ClientError> {
        {
            let mut state = self.lock();
            let r = run_state(&mut state, run)?;
            let name = match r.history.resolution(seq) {
                Some(e) if e.op() == Op::Event && !e.is_cancellation() => e.name.clone(),
                Some(_) => return Ok(false),
                None => match r.open.get(&seq) {
                    Some((name, Op::Event)) => name.clone(),
                    _ => return Ok(false),
                },
            };
            if !r.history.wait_settled(seq) {
                r.wait_cancels.entry(seq).or_insert((name, false));
            }
            // A wait not sent yet is never sent; one in flight may still
            // commit, and the cancel then follows it.
            if r.pending.get(&seq).is_some_and(|p| !p.sent) {
                r.pending.remove(&seq);
            }
        }
        self.deliver_cancel(&run.workflow_id);
        Ok(true)
    }
}

impl RunState {
    /// The cancellations of losing waits not with the sidecar yet (the
    /// owner's, on a stream); settled ones are forgotten.
    pub(super) fn wait_cancels_to_send(
        &mut self,
        workflow_id: &str,
        connected: bool,
    ) -> Vec<CheckpointProposal> {
        let history = &self.history;
        self.wait_cancels
            .retain(|seq, _| !history.wait_settled(*seq));
        if !self.is_owner || !connected || self.ended.is_some() || self.cancelled.is_some() {
            return Vec::new();
        }
        let mut proposals = Vec::new();
        for (seq, (name, sent)) in self.wait_cancels.iter_mut() {
            if *sent {
                continue;
            }
            *sent = true;
            proposals.push(CheckpointProposal {
                workflow_id: workflow_id.to_owned(),
                seq: *seq,
                checkpoint_name: name.clone(),
                kind: HistoryEntryKind::EventWaitCancelled as i32,
                attempt: 1,
                ..CheckpointProposal::default()
            });
        }
        proposals
    }
}
