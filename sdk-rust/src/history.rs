//! A run's committed history as the core keeps it: entries in commit order,
//! found by the step position (seq) they resolve, and the failed attempts
//! of steps not resolved yet with when the next attempt is due here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{CheckpointEvent, CheckpointRecord, Failure, HistoryEntryKind};
use tokio::time::Instant;

/// One committed history entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub name: String,
    pub kind: HistoryEntryKind,
    pub value: Bytes,
    pub failure: Option<Failure>,
    pub attempt: u32,
    pub next_attempt_at_ms: u64,
    pub committed_at_ms: u64,
}

pub(crate) use raftoral_proto::cancel::CANCELLED_FAILURE_TYPE as CANCELLED_TYPE;

/// What the code does at a position: a step, a durable sleep, or a wait
/// for an event. A history entry of one kind at a position the code uses
/// for another is non-determinism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Op {
    /// A step (its value, failure or attempts).
    #[default]
    Step,
    /// A durable timer.
    Timer,
    /// A wait for an event.
    Event,
    /// A readable status value set by the code.
    Status,
    /// A child workflow started by the code.
    Child,
}

impl Op {
    /// The operation an entry (or a proposal) of `kind` is about.
    pub fn of(kind: HistoryEntryKind) -> Op {
        match kind {
            HistoryEntryKind::TimerStarted
            | HistoryEntryKind::TimerFired
            | HistoryEntryKind::TimerCancelled => Op::Timer,
            HistoryEntryKind::EventWaiting
            | HistoryEntryKind::EventReceived
            | HistoryEntryKind::EventTimedOut
            | HistoryEntryKind::EventWaitCancelled => Op::Event,
            HistoryEntryKind::StatusSet => Op::Status,
            HistoryEntryKind::ChildStarted
            | HistoryEntryKind::ChildCompleted
            | HistoryEntryKind::ChildFailed => Op::Child,
            _ => Op::Step,
        }
    }

    /// How a non-determinism error names an operation named `name`.
    pub fn label(self, name: &str) -> String {
        match self {
            Op::Step => name.to_owned(),
            Op::Timer => format!("timer:{name}"),
            Op::Event => format!("event:{name}"),
            Op::Status => format!("status:{name}"),
            Op::Child => format!("child:{name}"),
        }
    }
}

impl Entry {
    /// The operation this entry is about.
    pub fn op(&self) -> Op {
        Op::of(self.kind)
    }

    /// True for an entry that delivered the workflow's cancel request: a
    /// step's final failure or a sleep's cancellation of type
    /// [`CANCELLED_TYPE`].
    pub fn is_cancellation(&self) -> bool {
        raftoral_proto::cancel::delivers_cancel(self.kind, self.failure.as_ref())
    }
}

impl From<CheckpointRecord> for Entry {
    fn from(r: CheckpointRecord) -> Self {
        Entry {
            kind: r.kind(),
            seq: r.seq,
            name: r.checkpoint_name,
            value: r.value,
            failure: r.failure,
            attempt: r.attempt.max(1),
            next_attempt_at_ms: r.next_attempt_at_ms,
            committed_at_ms: r.committed_at_ms,
        }
    }
}

impl From<CheckpointEvent> for Entry {
    fn from(e: CheckpointEvent) -> Self {
        Entry {
            kind: e.kind(),
            seq: e.seq,
            name: e.checkpoint_name,
            value: e.value,
            failure: e.failure,
            attempt: e.attempt.max(1),
            next_attempt_at_ms: e.next_attempt_at_ms,
            committed_at_ms: e.committed_at_ms,
        }
    }
}

/// Marks a child's start in the release order, apart from its seq (which
/// keys the child's end there).
const START_BIT: u64 = 1 << 63;

/// The release-order key of the start (`CHILD_STARTED`) of the child at
/// `seq`: handed out in commit order like a resolution, so code that goes
/// on once a child started goes on at the same point live and in replay.
pub(crate) fn start_key(seq: u64) -> u64 {
    seq | START_BIT
}

/// The failed attempts of one unresolved step.
#[derive(Debug, Clone)]
pub(crate) struct Attempts {
    /// The step's name, as the attempts committed it.
    pub name: String,
    /// The last failed attempt (1-based).
    pub last: u32,
    /// When the next attempt may start on this process's clock.
    pub due: Instant,
}

/// A run's history, and the resolutions the workflow code was handed.
///
/// The release rule: resolutions (a value or a final failure) reach the
/// code in commit order, each once the code asked for its seq and every
/// earlier one was handed out. Live, on a replica and in a replay alike,
/// branches running side by side then continue in the same order, so they
/// take the same positions for their next steps.
#[derive(Debug, Default)]
pub(crate) struct History {
    entries: Vec<Entry>,
    /// seq → index of the entry that resolved it.
    resolved: HashMap<u64, usize>,
    /// Unresolved seqs with failed attempts.
    attempts: HashMap<u64, Attempts>,
    /// Timers started and not fired yet: seq → the timer's name.
    timers: HashMap<u64, String>,
    /// Event waits committed and not resolved yet: seq → the event name.
    waits: HashMap<u64, String>,
    /// Children started and not ended yet: seq → the child's type.
    children: HashMap<u64, String>,
    /// Resolved seqs in commit order.
    order: Vec<u64>,
    /// seq → its place in `order`.
    order_of: HashMap<u64, usize>,
    /// Positions the code gave up on (the losers of a `first`): their
    /// resolutions are skipped when their turn comes.
    abandoned: HashSet<u64>,
    /// Resolutions handed to the code (a prefix of `order`).
    released: usize,
    /// The highest seq any entry names, if any.
    highest: Option<u64>,
    /// Seqs resolved by a delivered cancellation.
    cancellations: Vec<u64>,
    /// Waits that received an event and gave it back once cancelled (the
    /// losers of a `first`): an entry that resolves nothing.
    given_back: HashSet<u64>,
}

impl History {
    /// Entries held (the next one to append has this index).
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Appends the next entry in commit order.
    pub fn push(&mut self, entry: Entry) {
        let index = self.entries.len();
        self.highest = self.highest.max(Some(entry.seq));
        if entry.kind == HistoryEntryKind::EventWaitCancelled
            && self.resolved.contains_key(&entry.seq)
        {
            self.given_back.insert(entry.seq);
            self.entries.push(entry);
            return;
        }
        if entry.kind == HistoryEntryKind::TimerStarted {
            self.timers.insert(entry.seq, entry.name.clone());
        } else if entry.kind == HistoryEntryKind::EventWaiting {
            self.waits.insert(entry.seq, entry.name.clone());
        } else if entry.kind == HistoryEntryKind::ChildStarted {
            self.children.insert(entry.seq, entry.name.clone());
            let key = start_key(entry.seq);
            self.order_of.insert(key, self.order.len());
            self.order.push(key);
        } else if entry.kind == HistoryEntryKind::StepAttemptFailed {
            self.attempts.insert(
                entry.seq,
                Attempts {
                    name: entry.name.clone(),
                    last: entry.attempt,
                    due: due_here(entry.next_attempt_at_ms, entry.committed_at_ms),
                },
            );
        } else {
            self.attempts.remove(&entry.seq);
            self.timers.remove(&entry.seq);
            self.waits.remove(&entry.seq);
            self.children.remove(&entry.seq);
            if entry.is_cancellation() {
                self.cancellations.push(entry.seq);
            }
            self.resolved.insert(entry.seq, index);
            self.order_of.insert(entry.seq, self.order.len());
            self.order.push(entry.seq);
        }
        self.entries.push(entry);
        self.skip_abandoned();
    }

    /// The entry that resolved `seq`, if any.
    pub fn resolution(&self, seq: u64) -> Option<&Entry> {
        self.resolved.get(&seq).map(|i| &self.entries[*i])
    }

    /// True when the resolution of `seq` is the next to hand out.
    pub fn is_next_release(&self, seq: u64) -> bool {
        self.order.get(self.released) == Some(&seq)
    }

    /// The seq whose resolution (or child's start) is the next to hand
    /// out, if any.
    pub fn next_release(&self) -> Option<u64> {
        self.order.get(self.released).map(|key| key & !START_BIT)
    }

    /// True when the start of the child at `seq` is behind the release
    /// cursor, or the position resolved without one (a cancel request
    /// delivered before the start committed).
    pub fn start_passed(&self, seq: u64) -> bool {
        match self.order_of.get(&start_key(seq)) {
            Some(place) => *place < self.released,
            None => self.resolved.contains_key(&seq),
        }
    }

    /// The resolution of `seq` was handed out (it was the next one).
    pub fn release(&mut self) {
        self.released += 1;
        self.skip_abandoned();
    }

    /// The code gave up on `seq`: its resolution, now or when it commits,
    /// is not handed out and holds up no later one.
    pub fn abandon(&mut self, seq: u64) {
        self.abandoned.insert(seq);
        self.skip_abandoned();
    }

    /// True when the resolution of `seq` is behind the release cursor:
    /// handed out, or skipped as abandoned.
    pub fn passed(&self, seq: u64) -> bool {
        self.order_of
            .get(&seq)
            .is_some_and(|place| *place < self.released)
    }

    /// True when a cancellation resolved a position the code did not give
    /// up on: the cancel request reached (or will reach) the code.
    pub fn cancel_delivered(&self) -> bool {
        self.cancellations
            .iter()
            .any(|seq| !self.abandoned.contains(seq))
    }

    /// True when the wait at `seq` needs no (more) cancelling: resolved by
    /// anything but an event it took, or it gave that event back.
    pub fn wait_settled(&self, seq: u64) -> bool {
        self.resolution(seq)
            .is_some_and(|e| e.kind != HistoryEntryKind::EventReceived)
            || self.given_back.contains(&seq)
    }

    /// True when the code gave up on `seq`.
    pub fn is_abandoned(&self, seq: u64) -> bool {
        self.abandoned.contains(&seq)
    }

    /// Among `seqs`, the index of the one resolved first in commit order,
    /// once its resolution is handed out or is the next to be; `None`
    /// before.
    pub fn first_of(&self, seqs: &[u64]) -> Option<usize> {
        let (i, place) = seqs
            .iter()
            .enumerate()
            .filter_map(|(i, seq)| self.order_of.get(seq).map(|place| (i, *place)))
            .min_by_key(|(_, place)| *place)?;
        (place <= self.released).then_some(i)
    }

    fn skip_abandoned(&mut self) {
        while self
            .order
            .get(self.released)
            .is_some_and(|key| self.abandoned.contains(&(key & !START_BIT)))
        {
            self.released += 1;
        }
    }

    /// True when an entry names `seq` or a later position: code that has
    /// not yet taken `seq` is catching up on what happened.
    pub fn reaches(&self, seq: u64) -> bool {
        self.highest.is_some_and(|h| h >= seq)
    }

    /// The name of the timer started at unresolved `seq`, if one is.
    pub fn timer(&self, seq: u64) -> Option<&str> {
        self.timers.get(&seq).map(String::as_str)
    }

    /// The event name of the wait committed at unresolved `seq`, if one is.
    pub fn wait(&self, seq: u64) -> Option<&str> {
        self.waits.get(&seq).map(String::as_str)
    }

    /// What the history says was at `seq`: its name and operation (from
    /// its resolution, a started timer or wait, or failed attempts). A
    /// delivered cancellation says nothing of the operation.
    pub fn known(&self, seq: u64) -> Option<(&str, Option<Op>)> {
        if let Some(entry) = self.resolution(seq) {
            let op = (!entry.is_cancellation()).then(|| entry.op());
            return Some((&entry.name, op));
        }
        if let Some(name) = self.timer(seq) {
            return Some((name, Some(Op::Timer)));
        }
        if let Some(name) = self.wait(seq) {
            return Some((name, Some(Op::Event)));
        }
        if let Some(name) = self.child(seq) {
            return Some((name, Some(Op::Child)));
        }
        self.attempts(seq)
            .map(|a| (a.name.as_str(), Some(Op::Step)))
    }

    /// The type of the child started at unresolved `seq`, if one is.
    pub fn child(&self, seq: u64) -> Option<&str> {
        self.children.get(&seq).map(String::as_str)
    }

    /// The failed attempts of unresolved `seq`, if any.
    pub fn attempts(&self, seq: u64) -> Option<&Attempts> {
        self.attempts.get(&seq)
    }
}

/// When an attempt due at `next_at` (log time) may start here: the
/// remaining wait on this clock, clamped to `[0, next_at − committed_at]`:
/// a clock behind the log's time waits the committed delay at most (never
/// hours for a skewed node), one ahead of it waits less (at worst not at
/// all). Taken when the entry arrives, so later checks do not re-clamp.
fn due_here(next_at_ms: u64, committed_at_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let delay = next_at_ms.saturating_sub(committed_at_ms);
    let left = next_at_ms.saturating_sub(now_ms).min(delay);
    Instant::now() + Duration::from_millis(left)
}
