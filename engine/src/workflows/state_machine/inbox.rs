//! Events (`SendEvent`) and the waits that consume them.
//!
//! An event sent to a workflow is consumed at once by the earliest open
//! wait of its name (an `EVENT_RECEIVED` entry at the wait's position),
//! else kept in the workflow's inbox, first in first out per name, until a
//! wait for it commits (`steps.rs` calls [`StateMachine::wait_started`]).
//! A wait with a timeout has a timer; when it fires first the position
//! resolves as `EVENT_TIMED_OUT` and a later event stays in the inbox. A
//! wait that lost a race is cancelled by its owner (`EVENT_WAIT_CANCELLED`);
//! an event it took meanwhile goes back to the workflow. All of it on
//! apply, so every node and every replay decides the same.

use std::sync::Arc;

use raftoral_proto::cluster::v1::{InboxEvent, RecordStep, SendEvent, StartWorkflow};
use raftoral_proto::sidecar::v1::{HistoryEntryKind, WorkflowStatus};

use super::workflow::{Checkpoint, Inbox, MAX_INBOX_BYTES, MAX_INBOX_EVENTS, Workflow};
use super::{Applied, Event, StateMachine, TimerSlot};
use crate::error::Rejection;

/// The command level of events (`SendEvent`, `EVENT_WAITING`).
pub const EVENTS_LEVEL: u32 = 5;

/// The command level of cancelled waits (`EVENT_WAIT_CANCELLED`).
pub const WAIT_CANCEL_LEVEL: u32 = 7;

impl StateMachine {
    /// `SendEvent`: consumed by a wait, or kept in the inbox.
    pub(super) fn send_event(
        &mut self,
        c: &SendEvent,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        // A key delivered before answers `duplicate`, also once the
        // workflow has ended: a sender retrying after a lost answer learns
        // that its event was delivered.
        let delivered = |w: &Workflow| {
            !c.idempotency_key.is_empty()
                && w.inbox
                    .as_deref()
                    .is_some_and(|i| i.key_set.contains(&c.idempotency_key))
        };
        let ended = |w: &Workflow| Rejection::Ended {
            workflow_id: c.workflow_id.clone(),
            status: w.status,
        };
        let Some(wf) = self.workflows.get(&c.workflow_id) else {
            return match self.archived(&c.workflow_id) {
                Some(w) if delivered(&w) => Ok(Applied::EventSent { duplicate: true }),
                Some(w) => Err(ended(&w)),
                None => Err(Rejection::UnknownWorkflow(c.workflow_id.clone())),
            };
        };
        if delivered(wf) {
            return Ok(Applied::EventSent { duplicate: true });
        }
        if wf.is_terminal() {
            return Err(ended(wf));
        }
        let inbox = wf.inbox.as_deref();
        let waiting = (wf.status == WorkflowStatus::Running)
            .then(|| wf.first_wait_for(&c.name))
            .flatten();
        if waiting.is_none() {
            let (count, bytes) = inbox.map_or((0, 0), |i| (i.events.len(), i.bytes));
            if count >= MAX_INBOX_EVENTS || bytes + c.payload.len() > MAX_INBOX_BYTES {
                return Err(Rejection::InboxFull {
                    workflow_id: c.workflow_id.clone(),
                    events: count,
                    bytes,
                    max_events: MAX_INBOX_EVENTS,
                    max_bytes: MAX_INBOX_BYTES,
                });
            }
        }
        let wf = self
            .workflows
            .get_mut(&c.workflow_id)
            .map(Arc::make_mut)
            .expect("checked above");
        let inbox = wf.inbox.get_or_insert_with(Box::<Inbox>::default);
        inbox.remember(&c.idempotency_key);
        wf.updated_at_ms = now;
        let event = InboxEvent {
            name: c.name.clone(),
            payload: c.payload.clone(),
            failure: c.failure.clone(),
        };
        match waiting {
            Some(seq) => self.receive(&c.workflow_id, seq, event, now, events),
            None => {
                inbox.bytes += event.payload.len();
                inbox.events.push_back(event);
            }
        }
        Ok(Applied::EventSent { duplicate: false })
    }

    /// `StartWorkflow` with a signal: starts the workflow unless it
    /// exists, then sends the event. All or nothing: a refused event
    /// starts nothing.
    pub(super) fn signal_with_start(
        &mut self,
        c: &StartWorkflow,
        signal: &SendEvent,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        // The start names the target, whatever the signal says.
        let send = SendEvent {
            workflow_id: c.workflow_id.clone(),
            ..signal.clone()
        };
        let started = !self.exists(&c.workflow_id);
        if started {
            // A new inbox is empty: only its byte limit could refuse.
            if send.payload.len() > MAX_INBOX_BYTES {
                return Err(Rejection::InboxFull {
                    workflow_id: c.workflow_id.clone(),
                    events: 0,
                    bytes: 0,
                    max_events: MAX_INBOX_EVENTS,
                    max_bytes: MAX_INBOX_BYTES,
                });
            }
            self.start_workflow(c, now, events);
        }
        let duplicate = matches!(
            self.send_event(&send, now, events)?,
            Applied::EventSent { duplicate: true }
        );
        Ok(Applied::SignalledWithStart { started, duplicate })
    }

    /// A wait for `name` at `seq` just committed (its `EVENT_WAITING`
    /// appended): it takes the inbox's first event of the name, or waits,
    /// with its timer when it has a timeout.
    pub(super) fn wait_started(
        &mut self,
        id: &str,
        seq: u64,
        name: &str,
        timeout_at: u64,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let wf = self
            .workflows
            .get_mut(id)
            .map(Arc::make_mut)
            .expect("checked by the caller");
        match wf.inbox.as_mut().and_then(|i| i.take(name)) {
            Some(event) => self.receive(id, seq, event, now, events),
            None if timeout_at > 0 => {
                self.timers
                    .insert((timeout_at, id.to_owned(), TimerSlot::EventTimeout(seq)));
            }
            None => {}
        }
    }

    /// Resolves the wait at `seq` with `event` (`EVENT_RECEIVED`).
    fn receive(
        &mut self,
        id: &str,
        seq: u64,
        event: InboxEvent,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let at = self.workflows[id].open_wait(seq).map_or(0, |(_, at)| at);
        if at > 0 {
            self.timers
                .remove(&(at, id.to_owned(), TimerSlot::EventTimeout(seq)));
        }
        let entry = Checkpoint {
            seq,
            name: event.name,
            kind: HistoryEntryKind::EventReceived,
            value: event.payload,
            // An awakeable's rejection, raised in the code.
            failure: event.failure.map(Box::new),
            attempt: 1,
            next_attempt_at_ms: at,
            committed_at_ms: now,
        };
        self.append_step(id, entry, now, events);
    }

    /// The wait at `seq` timed out (its timer fired): `EVENT_TIMED_OUT`.
    pub(super) fn wait_timed_out(&mut self, id: &str, seq: u64, now: u64, events: &mut Vec<Event>) {
        let Some((name, at)) = self.workflows[id]
            .open_wait(seq)
            .map(|(n, at)| (n.to_owned(), at))
        else {
            return;
        };
        let entry = Checkpoint {
            seq,
            name,
            kind: HistoryEntryKind::EventTimedOut,
            value: Default::default(),
            failure: None,
            attempt: 1,
            next_attempt_at_ms: at,
            committed_at_ms: now,
        };
        self.append_step(id, entry, now, events);
    }

    /// `EVENT_WAIT_CANCELLED` from the owner: the wait at `seq` lost a
    /// race. An open wait (or a position the wait has not committed at
    /// yet) is resolved by it, with its timeout dropped. A wait that took
    /// an event before the cancel came gives it back: to the earliest open
    /// wait of its name, else to the front of the inbox (it was the oldest
    /// of its name), and the entry records the payload it gave back. A
    /// position resolved otherwise (timed out, cancelled) is refused.
    pub(super) fn cancel_wait(
        &mut self,
        c: &RecordStep,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        let wf = self.running_owned_by(&c.workflow_id, c.node_id)?;
        let (seq, name) = (c.seq, c.checkpoint_name.clone());
        let mut entry = Checkpoint {
            seq,
            name: name.clone(),
            kind: HistoryEntryKind::EventWaitCancelled,
            value: Default::default(),
            failure: None,
            attempt: 1,
            next_attempt_at_ms: 0,
            committed_at_ms: now,
        };
        let other = |got: &str| {
            Rejection::InvalidStep(format!(
                "position {seq} of workflow '{}' waits for event '{got}', not '{name}': the code changed",
                c.workflow_id
            ))
        };
        if let Some((waited, at)) = wf.open_wait(seq) {
            if waited != name {
                return Err(other(waited));
            }
            if at > 0 {
                self.timers
                    .remove(&(at, c.workflow_id.clone(), TimerSlot::EventTimeout(seq)));
            }
            entry.next_attempt_at_ms = at;
            self.append_step(&c.workflow_id, entry, now, events);
            return Ok(Applied::CheckpointRecorded);
        }
        if !wf.steps.is_resolved(seq) {
            // The wait's own EVENT_WAITING has not committed: the cancel
            // resolves the position first, and the wait is refused then.
            if wf.open_timer(seq).is_some() || wf.steps.last_attempt(seq) > 0 {
                return Err(Rejection::InvalidStep(format!(
                    "position {seq} of workflow '{}' is not an event wait: the code changed",
                    c.workflow_id
                )));
            }
            if seq >= wf.steps.low().saturating_add(super::MAX_OPEN_STEPS) {
                return Err(Rejection::TooManyOpenSteps {
                    workflow_id: c.workflow_id.clone(),
                    first_open: wf.steps.low(),
                    seq,
                });
            }
            self.append_step(&c.workflow_id, entry, now, events);
            return Ok(Applied::CheckpointRecorded);
        }
        // Resolved: by an event it took (give it back, once), or otherwise.
        let last = wf.checkpoints.iter().rev().find(|e| e.seq == seq);
        let received = match last {
            Some(e) if e.kind == HistoryEntryKind::EventReceived => e,
            _ => {
                return Err(Rejection::UnexpectedSeq {
                    workflow_id: c.workflow_id.clone(),
                    expected: wf.steps.low(),
                    got: seq,
                });
            }
        };
        if received.name != name {
            return Err(other(&received.name));
        }
        let event = InboxEvent {
            name: received.name.clone(),
            payload: received.value.clone(),
            failure: received.failure.as_deref().cloned(),
        };
        entry.value = event.payload.clone();
        self.append_step(&c.workflow_id, entry, now, events);
        let wf = &self.workflows[&c.workflow_id];
        match wf.first_wait_for(&event.name) {
            Some(next) => self.receive(&c.workflow_id, next, event, now, events),
            None => {
                let wf = self
                    .workflows
                    .get_mut(&c.workflow_id)
                    .map(Arc::make_mut)
                    .expect("checked above");
                let inbox = wf.inbox.get_or_insert_with(Box::<Inbox>::default);
                inbox.bytes += event.payload.len();
                inbox.events.push_front(event);
            }
        }
        Ok(Applied::CheckpointRecorded)
    }
}
