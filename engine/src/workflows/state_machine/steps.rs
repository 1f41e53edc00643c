//! Recording a workflow's steps: values, final failures and failed attempts
//! (`RecordStep`, and `RecordCheckpoint` from before kinds existed).
//!
//! A history lists entries in commit order. Positions (seqs) are taken by
//! the workflow code in call order; steps running side by side commit as
//! they finish, so a history's seqs may be out of order. Each seq is
//! resolved once (a value or a final failure), after its failed attempts,
//! numbered 1, 2, ... Everything else a proposal could do (resolve a seq
//! twice, skip an attempt, open steps without bound) is refused here, on
//! every replica alike.

use std::sync::Arc;

use raftoral_proto::cluster::v1::{RecordCheckpoint, RecordStep};
use raftoral_proto::sidecar::v1::HistoryEntryKind;

use super::status::MAX_STATUS_BYTES;
use super::workflow::{CANCELLED_FAILURE_TYPE, Checkpoint};
use super::{Applied, Event, StateMachine};
use crate::error::Rejection;

/// Most positions a workflow may have open at once: a seq at or past the
/// first unresolved one plus this is refused, which bounds the index below
/// and what a replica holds for steps it has not seen resolve.
pub const MAX_OPEN_STEPS: u64 = 256;

/// The highest command level this engine applies: 2 knows `RecordStep`,
/// 3 durable timers (`RecordStep` of kind `TIMER_STARTED`, `FireTimers`),
/// 4 cancel requests (`CancelWorkflow.cleanup_ms`), 5 events (`SendEvent`,
/// `EVENT_WAITING`), 6 status values (`STATUS_SET`) and signal-with-start
/// (`StartWorkflow.signal`), 7 cancelled event waits
/// (`EVENT_WAIT_CANCELLED`, `inbox.rs`), 8 child workflows
/// (`CHILD_STARTED`, `children.rs`).
/// Recorded per node (`SetWorkerPresence.command_level`); a command of a
/// level is proposed only once every member recorded at least it.
pub const COMMAND_LEVEL: u32 = 8;

/// The command level of `RecordStep` (values, failures, attempts).
pub const STEPS_LEVEL: u32 = 2;

/// The command level of durable timers.
pub const TIMERS_LEVEL: u32 = 3;

/// Longest delay a failed attempt may ask for before the next one.
pub const MAX_RETRY_DELAY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Longest a durable timer may run: 366 days (a year, leap or not).
pub const MAX_TIMER_MS: u64 = 366 * 24 * 60 * 60 * 1000;

/// A step entry as proposed, from either command.
struct Proposed<'a> {
    workflow_id: &'a str,
    node_id: u64,
    entry: Checkpoint,
    retry_delay_ms: u64,
}

/// The refusal of `p` at a position where a timer runs or a wait waits
/// (`opened` is the entry that opened it): the same entry re-sent is a
/// duplicate; anything else is code that changed.
fn busy(p: &Proposed<'_>, low: u64, opened: HistoryEntryKind, what: &str) -> Rejection {
    if p.entry.kind == opened {
        Rejection::UnexpectedSeq {
            workflow_id: p.workflow_id.to_owned(),
            expected: low,
            got: p.entry.seq,
        }
    } else {
        Rejection::InvalidStep(format!(
            "position {} of workflow '{}' {what}, not a step",
            p.entry.seq, p.workflow_id
        ))
    }
}

impl StateMachine {
    /// `RecordCheckpoint` (before kinds): the value of the next seq of a
    /// plain history. Its rule is unchanged (`seq` must equal the number
    /// of entries), so engines with and without kinds apply it alike.
    pub(super) fn record_checkpoint(
        &mut self,
        c: &RecordCheckpoint,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        let expected = self
            .running_owned_by(&c.workflow_id, c.node_id)?
            .checkpoints
            .len() as u64;
        if c.seq != expected {
            return Err(Rejection::UnexpectedSeq {
                workflow_id: c.workflow_id.clone(),
                expected,
                got: c.seq,
            });
        }
        let entry = Checkpoint::value(c.seq, c.checkpoint_name.clone(), c.value.clone(), now);
        self.append_step(&c.workflow_id, entry, now, events);
        Ok(Applied::CheckpointRecorded)
    }

    /// `RecordStep`: a value, a final failure or a failed attempt of any
    /// open seq.
    pub(super) fn record_step(
        &mut self,
        c: &RecordStep,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        let kind = c.kind();
        // A sleep's cancellation may carry the failure that delivers a
        // cancel request (`cancel.rs`).
        let delivers_cancel = kind == HistoryEntryKind::TimerCancelled
            && c.failure
                .as_ref()
                .is_some_and(|f| f.r#type == CANCELLED_FAILURE_TYPE);
        let needs_failure = matches!(
            kind,
            HistoryEntryKind::StepFailed | HistoryEntryKind::StepAttemptFailed
        );
        if needs_failure != c.failure.is_some() && !delivers_cancel {
            return Err(Rejection::InvalidStep(format!(
                "step {} of workflow '{}': a failed step or attempt carries its failure and no other entry does",
                c.seq, c.workflow_id
            )));
        }
        if kind == HistoryEntryKind::TimerFired {
            return Err(Rejection::InvalidStep(format!(
                "step {} of workflow '{}': a timer fires by the leader's FireTimers only",
                c.seq, c.workflow_id
            )));
        }
        if matches!(
            kind,
            HistoryEntryKind::ChildCompleted | HistoryEntryKind::ChildFailed
        ) {
            return Err(Rejection::InvalidStep(format!(
                "step {} of workflow '{}': a child's end is recorded by the cluster, never by the app",
                c.seq, c.workflow_id
            )));
        }
        if matches!(
            kind,
            HistoryEntryKind::EventReceived | HistoryEntryKind::EventTimedOut
        ) {
            return Err(Rejection::InvalidStep(format!(
                "step {} of workflow '{}': an event wait is resolved by the cluster (an event sent, or its timeout), never by the app",
                c.seq, c.workflow_id
            )));
        }
        if kind == HistoryEntryKind::EventWaitCancelled {
            return self.cancel_wait(c, now, events);
        }
        if kind == HistoryEntryKind::StatusSet && c.value.len() > MAX_STATUS_BYTES {
            return Err(Rejection::InvalidStep(format!(
                "status '{}' of workflow '{}' is {} bytes, over the {MAX_STATUS_BYTES}-byte \
                 limit of a status value; keep a status small and put data in a step's value",
                c.checkpoint_name,
                c.workflow_id,
                c.value.len()
            )));
        }
        let proposed = Proposed {
            workflow_id: &c.workflow_id,
            node_id: c.node_id,
            retry_delay_ms: c.retry_delay_ms.min(MAX_RETRY_DELAY_MS),
            entry: Checkpoint {
                seq: c.seq,
                name: c.checkpoint_name.clone(),
                kind,
                value: c.value.clone(),
                failure: c.failure.clone().map(Box::new),
                attempt: c.attempt.max(1),
                next_attempt_at_ms: 0,
                committed_at_ms: now,
            },
        };
        self.check_step(&proposed)?;
        let mut entry = proposed.entry;
        if entry.kind == HistoryEntryKind::TimerStarted {
            let fire_at = now.saturating_add(c.timer_duration_ms.min(MAX_TIMER_MS));
            entry.next_attempt_at_ms = fire_at;
            self.timers.insert((
                fire_at,
                c.workflow_id.clone(),
                super::TimerSlot::Sleep(entry.seq),
            ));
        } else if entry.kind == HistoryEntryKind::TimerCancelled {
            if let Some(at) = self.workflows[&c.workflow_id].open_timer(entry.seq) {
                entry.next_attempt_at_ms = at;
                self.drop_sleep(&c.workflow_id, entry.seq, at);
            }
        } else if entry.kind == HistoryEntryKind::ChildStarted {
            return self.start_child(c, entry, now, events);
        } else if entry.kind == HistoryEntryKind::EventWaiting {
            let timeout = c.timer_duration_ms.min(MAX_TIMER_MS);
            let at = if timeout > 0 {
                now.saturating_add(timeout)
            } else {
                0
            };
            entry.next_attempt_at_ms = at;
            let (seq, name) = (entry.seq, entry.name.clone());
            self.append_step(&c.workflow_id, entry, now, events);
            self.wait_started(&c.workflow_id, seq, &name, at, now, events);
            return Ok(Applied::CheckpointRecorded);
        } else if !entry.resolves() {
            entry.next_attempt_at_ms = now.saturating_add(proposed.retry_delay_ms);
        }
        // A cancellation delivered at a wait ends it, and its timeout.
        if let Some((_, at)) = self.workflows[&c.workflow_id].open_wait(entry.seq)
            && at > 0
        {
            self.timers.remove(&(
                at,
                c.workflow_id.clone(),
                super::TimerSlot::EventTimeout(entry.seq),
            ));
        }
        self.append_step(&c.workflow_id, entry, now, events);
        Ok(Applied::CheckpointRecorded)
    }

    /// The owner fence, then: the seq is open and inside the window, and
    /// the attempt follows the committed ones.
    fn check_step(&self, p: &Proposed<'_>) -> Result<(), Rejection> {
        let wf = self.running_owned_by(p.workflow_id, p.node_id)?;
        let (seq, steps) = (p.entry.seq, &wf.steps);
        if p.entry.is_cancellation() && !wf.cancel_requested() {
            return Err(Rejection::InvalidStep(format!(
                "position {seq} of workflow '{}': the failure type {} is reserved for delivering \
                 a cancel request, and none is running; give the error another type",
                p.workflow_id, CANCELLED_FAILURE_TYPE
            )));
        }
        if steps.is_resolved(seq) {
            return Err(Rejection::UnexpectedSeq {
                workflow_id: p.workflow_id.to_owned(),
                expected: steps.low(),
                got: seq,
            });
        }
        if seq >= steps.low().saturating_add(MAX_OPEN_STEPS) {
            return Err(Rejection::TooManyOpenSteps {
                workflow_id: p.workflow_id.to_owned(),
                first_open: steps.low(),
                seq,
            });
        }
        // An open wait takes nothing but the delivery of a cancel request.
        if wf.open_wait(seq).is_some() && !p.entry.is_cancellation() {
            return Err(busy(
                p,
                steps.low(),
                HistoryEntryKind::EventWaiting,
                "waits for an event",
            ));
        }
        // A timer is cancelled running, or before its start commits (the
        // start then finds its position resolved).
        let cancel = p.entry.kind == HistoryEntryKind::TimerCancelled;
        if wf.open_timer(seq).is_some() && !cancel {
            return Err(busy(
                p,
                steps.low(),
                HistoryEntryKind::TimerStarted,
                "is a running timer",
            ));
        }
        // An open child takes nothing but the delivery of a cancel request.
        if wf.open_child(seq).is_some() && !p.entry.is_cancellation() {
            return Err(busy(
                p,
                steps.low(),
                HistoryEntryKind::ChildStarted,
                "started a child workflow",
            ));
        }
        let last = steps.last_attempt(seq);
        if (p.entry.kind == HistoryEntryKind::TimerStarted
            || p.entry.kind == HistoryEntryKind::EventWaiting
            || p.entry.kind == HistoryEntryKind::ChildStarted
            || cancel)
            && last > 0
        {
            return Err(Rejection::InvalidStep(format!(
                "position {seq} of workflow '{}' is a step with failed attempts, not a timer",
                p.workflow_id
            )));
        }
        let fits = if p.entry.resolves() {
            p.entry.attempt > last
        } else {
            p.entry.attempt == last + 1
        };
        if !fits {
            return Err(Rejection::UnexpectedAttempt {
                workflow_id: p.workflow_id.to_owned(),
                seq,
                last,
                got: p.entry.attempt,
            });
        }
        Ok(())
    }

    /// Appends a checked entry and tells every listener.
    pub(super) fn append_step(
        &mut self,
        id: &str,
        entry: Checkpoint,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let wf = self
            .workflows
            .get_mut(id)
            .map(Arc::make_mut)
            .expect("checked by the caller");
        let position = wf.checkpoints.len() as u64;
        wf.steps.add(position, &entry);
        wf.updated_at_ms = now;
        events.push(Event::CheckpointCommitted {
            workflow_id: id.to_owned(),
            history_index: position,
            entry: entry.clone(),
        });
        wf.checkpoints.push(entry);
    }
}
