//! Durable timers: the table of open timers and their firing (`FireTimers`).
//!
//! A sleep starts as a `TIMER_STARTED` entry of a workflow's history
//! (`steps.rs`), with its deadline stamped from the log's time; a workflow
//! started with a delay or an execution timeout has a timer of its own for
//! each. The table here is derived from the active workflows (rebuilt when
//! a snapshot or the store is read, never serialized), ordered by deadline,
//! so the leader's timer service looks only at its head. A timer leaves it
//! when it fires, when the owner cancels it (a sleep that lost a `first`,
//! or one a cancel request was delivered to), or when its workflow
//! finishes or is cancelled. A cancel request's cleanup window is a timer
//! of its workflow too (`cancel.rs`).

use std::sync::Arc;

use raftoral_proto::cluster::v1::{FireTimers, TimerKind, TimerRef};
use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind, WorkflowStatus};

use super::workflow::{Checkpoint, Workflow};
use super::{Applied, Event, StateMachine};

/// Which of a workflow's timers: a sleep at a position, its delayed start,
/// or its execution timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerSlot {
    /// A durable sleep at this position.
    Sleep(u64),
    /// The delayed start.
    Start,
    /// The execution timeout.
    ExecutionTimeout,
    /// The end of a cancel request's cleanup window (`cancel.rs`).
    CancelCleanup,
    /// The timeout of an event wait at this position (`inbox.rs`).
    EventTimeout(u64),
}

impl TimerSlot {
    /// The slot a `TimerRef` names.
    pub fn of(r: &TimerRef) -> TimerSlot {
        match r.kind() {
            TimerKind::Unspecified => TimerSlot::Sleep(r.seq),
            TimerKind::Start => TimerSlot::Start,
            TimerKind::ExecutionTimeout => TimerSlot::ExecutionTimeout,
            TimerKind::CancelCleanup => TimerSlot::CancelCleanup,
            TimerKind::EventTimeout => TimerSlot::EventTimeout(r.seq),
        }
    }

    /// The `TimerRef` of this slot of `workflow_id`.
    pub fn to_ref(self, workflow_id: String) -> TimerRef {
        let (kind, seq) = match self {
            TimerSlot::Sleep(seq) => (TimerKind::Unspecified, seq),
            TimerSlot::Start => (TimerKind::Start, 0),
            TimerSlot::ExecutionTimeout => (TimerKind::ExecutionTimeout, 0),
            TimerSlot::CancelCleanup => (TimerKind::CancelCleanup, 0),
            TimerSlot::EventTimeout(seq) => (TimerKind::EventTimeout, seq),
        };
        TimerRef {
            workflow_id,
            seq,
            kind: kind as i32,
        }
    }
}

/// One open timer: (deadline in log time, workflow id, which timer).
pub type TimerKey = (u64, String, TimerSlot);

/// Upper bounds (ms) of the lateness histogram's buckets; the last bucket
/// (`+Inf`) is implied.
pub const LATENESS_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// What this node saw fire since it started (not replicated state: for
/// `/metrics`). Lateness is the firing entry's log time minus the
/// deadline, the same on every node.
#[derive(Debug, Default, Clone)]
pub struct TimerStats {
    /// Timers fired.
    pub fired: u64,
    /// Fired timers per lateness bucket (`LATENESS_BUCKETS_MS`, then
    /// `+Inf`); not cumulative.
    pub lateness: [u64; LATENESS_BUCKETS_MS.len() + 1],
    /// Sum of the lateness of fired timers, ms.
    pub lateness_sum_ms: u64,
}

impl TimerStats {
    fn note(&mut self, late_ms: u64) {
        self.fired += 1;
        self.lateness_sum_ms += late_ms;
        let bucket = LATENESS_BUCKETS_MS
            .iter()
            .position(|le| late_ms <= *le)
            .unwrap_or(LATENESS_BUCKETS_MS.len());
        self.lateness[bucket] += 1;
    }
}

/// The failure type of a workflow that ran out of its execution timeout.
pub const TIMEOUT_FAILURE_TYPE: &str = "raftoral.WorkflowTimeout";

impl StateMachine {
    /// `FireTimers`: every named timer that is open and due at `now` (the
    /// entry's log time) fires; the others are left as they are (a
    /// duplicate or an early proposal is a no-op). Returns how many fired.
    pub(super) fn fire_timers(
        &mut self,
        c: &FireTimers,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Applied {
        let mut fired = 0;
        for timer in &c.timers {
            let slot = TimerSlot::of(timer);
            let id = &timer.workflow_id;
            let Some(at) = self
                .workflows
                .get(id)
                .and_then(|wf| open_deadline(wf, slot))
            else {
                continue;
            };
            if at > now {
                continue;
            }
            self.timers.remove(&(at, id.clone(), slot));
            self.timer_stats.note(now - at);
            fired += 1;
            match slot {
                TimerSlot::Sleep(seq) => {
                    let entry = fired_entry(&self.workflows[id], seq, now);
                    self.append_step(id, entry, now, events);
                }
                TimerSlot::Start => self.start_due(id, now, events),
                TimerSlot::ExecutionTimeout => self.time_out(id, now, events),
                TimerSlot::CancelCleanup => self.cleanup_expired(id, now, events),
                TimerSlot::EventTimeout(seq) => self.wait_timed_out(id, seq, now, events),
            }
        }
        Applied::TimersFired(fired)
    }

    /// A delayed start is due: the workflow is placed as a new one would be
    /// (or stays PENDING, now waiting for a worker).
    fn start_due(&mut self, id: &str, now: u64, events: &mut Vec<Event>) {
        let (name, version) = {
            let wf = &self.workflows[id];
            (wf.name.clone(), wf.version)
        };
        let placed = self.place(&name, version, id, 0);
        let wf = self
            .workflows
            .get_mut(id)
            .map(Arc::make_mut)
            .expect("checked by the caller");
        wf.start_at_ms = 0;
        wf.updated_at_ms = now;
        match placed {
            Ok(owner) => {
                wf.status = WorkflowStatus::Running;
                wf.owner = owner;
                wf.pending_reason.clear();
                events.push(Event::WorkflowRunning {
                    workflow_id: id.to_owned(),
                    owner,
                });
                self.count_active(
                    Some(WorkflowStatus::Pending),
                    Some(WorkflowStatus::Running),
                    1,
                );
            }
            Err(reason) => wf.pending_reason = reason,
        }
    }

    /// The execution timeout passed: the workflow fails with
    /// [`TIMEOUT_FAILURE_TYPE`], and its apps stop the run as for a cancel.
    fn time_out(&mut self, id: &str, now: u64, events: &mut Vec<Event>) {
        let message = format!(
            "the workflow did not finish within its execution timeout (it timed out at {} ms, log time)",
            self.workflows[id].timeout_at_ms
        );
        let error = format!("{TIMEOUT_FAILURE_TYPE}: {message}");
        let failure = Failure {
            r#type: TIMEOUT_FAILURE_TYPE.into(),
            message,
            ..Failure::default()
        };
        self.stop_run(
            id,
            WorkflowStatus::Failed,
            error,
            Some(failure),
            now,
            events,
        );
    }

    /// The open timers due at `now` (log time), earliest first, at most
    /// `limit` of them.
    pub fn due_timers(&self, now: u64, limit: usize) -> Vec<TimerKey> {
        self.timers
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The earliest open timer's deadline (log time), if any.
    pub fn next_timer_ms(&self) -> Option<u64> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Open timers in the cluster.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The timers this node saw fire since it started.
    pub fn timer_stats(&self) -> &TimerStats {
        &self.timer_stats
    }

    /// Takes a workflow's open timers out of the table (it finished or was
    /// cancelled: its timers will never fire).
    pub(super) fn drop_timers(&mut self, id: &str) {
        let Some(wf) = self.workflows.get(id) else {
            return;
        };
        for key in keys(wf) {
            self.timers.remove(&key);
        }
    }

    /// Adds a workflow's open timers to the table (a new workflow, or one
    /// read from a snapshot or the store).
    pub(super) fn add_timers(&mut self, wf: &Workflow) {
        self.timers.extend(keys(wf));
    }

    /// Takes one sleep's timer out of the table (cancelled by its owner).
    pub(super) fn drop_sleep(&mut self, id: &str, seq: u64, at: u64) {
        self.timers
            .remove(&(at, id.to_owned(), TimerSlot::Sleep(seq)));
    }
}

/// Every open timer of `wf`.
fn keys(wf: &Workflow) -> Vec<TimerKey> {
    let mut keys: Vec<TimerKey> = wf
        .open_timers()
        .map(|(seq, at)| (at, wf.id.clone(), TimerSlot::Sleep(seq)))
        .collect();
    if wf.start_at_ms > 0 {
        keys.push((wf.start_at_ms, wf.id.clone(), TimerSlot::Start));
    }
    if wf.timeout_at_ms > 0 {
        keys.push((wf.timeout_at_ms, wf.id.clone(), TimerSlot::ExecutionTimeout));
    }
    if wf.cancel_deadline_ms > 0 {
        keys.push((
            wf.cancel_deadline_ms,
            wf.id.clone(),
            TimerSlot::CancelCleanup,
        ));
    }
    keys.extend(
        wf.timed_waits()
            .map(|(seq, at)| (at, wf.id.clone(), TimerSlot::EventTimeout(seq))),
    );
    keys
}

/// The deadline of `slot` when it is open in `wf` (a workflow that has not
/// finished).
fn open_deadline(wf: &Workflow, slot: TimerSlot) -> Option<u64> {
    if wf.is_terminal() {
        return None;
    }
    match slot {
        TimerSlot::Sleep(seq) => wf.open_timer(seq),
        TimerSlot::Start => {
            (wf.status == WorkflowStatus::Pending && wf.start_at_ms > 0).then_some(wf.start_at_ms)
        }
        TimerSlot::ExecutionTimeout => (wf.timeout_at_ms > 0).then_some(wf.timeout_at_ms),
        TimerSlot::CancelCleanup => wf.cancel_requested().then_some(wf.cancel_deadline_ms),
        TimerSlot::EventTimeout(seq) => wf.open_wait(seq).map(|(_, at)| at).filter(|at| *at > 0),
    }
}

/// The `TIMER_FIRED` entry of the open timer at `seq`: the started entry's
/// name and deadline.
fn fired_entry(wf: &Workflow, seq: u64, now: u64) -> Checkpoint {
    let started = wf
        .checkpoints
        .iter()
        .rev()
        .find(|c| c.seq == seq && c.kind == HistoryEntryKind::TimerStarted)
        .expect("an open timer has its started entry");
    Checkpoint {
        seq,
        name: started.name.clone(),
        kind: HistoryEntryKind::TimerFired,
        value: Default::default(),
        failure: None,
        attempt: 1,
        next_attempt_at_ms: started.next_attempt_at_ms,
        committed_at_ms: now,
    }
}
