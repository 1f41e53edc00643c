//! The replicated record of one workflow, and its form in snapshots and in
//! the store (`raftoral.cluster.v1.WorkflowRecord`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raftoral_proto::cluster::v1::InboxEvent;
use raftoral_proto::sidecar::v1::{
    EventWait, Failure, HistoryEntryKind, ParentClosePolicy, PendingTimer, WorkflowInfo,
    WorkflowStatus,
};

/// Raft node id.
pub type NodeId = u64;

pub use raftoral_proto::cancel::CANCELLED_FAILURE_TYPE;

/// A workflow type: (name, version).
pub type WorkflowType = (String, u32);

/// One entry of a workflow's history: a step's value, its final failure,
/// or one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step position this entry is about.
    pub seq: u64,
    /// Name given by the workflow code.
    pub name: String,
    /// What the entry records (`Unspecified`: a value).
    pub kind: HistoryEntryKind,
    /// Encoded value (values only).
    pub value: Bytes,
    /// The failure (failed steps and attempts only); boxed, as most entries
    /// are values.
    pub failure: Option<Box<Failure>>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// For a failed attempt: when the next one may start (log time).
    pub next_attempt_at_ms: u64,
    /// The log's time at commit, ms since the Unix epoch.
    pub committed_at_ms: u64,
}

impl Checkpoint {
    /// A step's value at `seq`, attempt 1.
    pub fn value(seq: u64, name: impl Into<String>, value: Bytes, committed_at_ms: u64) -> Self {
        Checkpoint {
            seq,
            name: name.into(),
            kind: HistoryEntryKind::Unspecified,
            value,
            failure: None,
            attempt: 1,
            next_attempt_at_ms: 0,
            committed_at_ms,
        }
    }

    /// True when this entry, at `position` in its history, is what a plain
    /// history holds there: a value of seq `position`.
    pub fn is_plain_at(&self, position: u64) -> bool {
        self.kind == HistoryEntryKind::Unspecified && self.seq == position
    }

    /// True when the entry resolves its position (a value, a final
    /// failure, a fired timer, a received or timed-out event).
    pub fn resolves(&self) -> bool {
        !matches!(
            self.kind,
            HistoryEntryKind::StepAttemptFailed
                | HistoryEntryKind::TimerStarted
                | HistoryEntryKind::EventWaiting
                | HistoryEntryKind::ChildStarted
        )
    }

    /// True for the entries of a child workflow.
    pub fn is_child(&self) -> bool {
        matches!(
            self.kind,
            HistoryEntryKind::ChildStarted
                | HistoryEntryKind::ChildCompleted
                | HistoryEntryKind::ChildFailed
        )
    }

    /// True for the entries of an event wait.
    pub fn is_event(&self) -> bool {
        matches!(
            self.kind,
            HistoryEntryKind::EventWaiting
                | HistoryEntryKind::EventReceived
                | HistoryEntryKind::EventTimedOut
                | HistoryEntryKind::EventWaitCancelled
        )
    }

    /// True for the entries of a durable timer.
    pub fn is_timer(&self) -> bool {
        matches!(
            self.kind,
            HistoryEntryKind::TimerStarted
                | HistoryEntryKind::TimerFired
                | HistoryEntryKind::TimerCancelled
        )
    }

    /// A timer's deadline, or an event wait's timeout (log time; 0: none);
    /// 0 for other entries. Kept in `next_attempt_at_ms`, the field of
    /// "when the next thing happens".
    pub fn fire_at_ms(&self) -> u64 {
        if self.is_timer() || self.is_event() {
            self.next_attempt_at_ms
        } else {
            0
        }
    }

    /// True for an entry that delivered a cancel request: a step's final
    /// failure or a timer's cancellation of type
    /// [`CANCELLED_FAILURE_TYPE`](CANCELLED_FAILURE_TYPE).
    pub fn is_cancellation(&self) -> bool {
        raftoral_proto::cancel::delivers_cancel(self.kind, self.failure.as_deref())
    }

    /// The app protocol that reads this entry, the history's entry number
    /// `position`: 0 for a plain value, 2 for failures and out-of-order
    /// seqs, 3 for timers, 4 for a delivered cancellation, 5 for event
    /// waits, 6 for status values and awakeables, 7 for cancelled waits, 8
    /// for child workflows (app.proto).
    pub fn protocol_at(&self, position: u64) -> u32 {
        let awakeable = self.is_event()
            && self
                .name
                .starts_with(raftoral_proto::awakeable::EVENT_PREFIX);
        if self.is_child() {
            8
        } else if self.kind == HistoryEntryKind::EventWaitCancelled {
            7
        } else if self.kind == HistoryEntryKind::StatusSet || awakeable {
            6
        } else if self.is_event() {
            5
        } else if self.is_cancellation() {
            4
        } else if self.is_timer() {
            3
        } else if self.is_plain_at(position) {
            0
        } else {
            2
        }
    }
}

/// Most events an inbox holds.
pub const MAX_INBOX_EVENTS: usize = 1_000;
/// Most payload bytes an inbox holds.
pub const MAX_INBOX_BYTES: usize = 16 * 1024 * 1024;
/// Most idempotency keys a workflow remembers (the oldest are forgotten).
pub const MAX_EVENT_KEYS: usize = 10_000;

/// A workflow's events not consumed yet, in the order they were sent, and
/// the idempotency keys of the events delivered to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Events waiting for a wait of their name.
    pub events: VecDeque<InboxEvent>,
    /// Payload bytes of `events`.
    pub bytes: usize,
    /// Delivered keys, oldest first (at most [`MAX_EVENT_KEYS`]).
    pub keys: VecDeque<String>,
    /// The same keys, to look up.
    pub key_set: BTreeSet<String>,
}

impl Inbox {
    /// Remembers a delivered key, forgetting the oldest beyond the limit.
    pub fn remember(&mut self, key: &str) {
        if key.is_empty() || !self.key_set.insert(key.to_owned()) {
            return;
        }
        self.keys.push_back(key.to_owned());
        if self.keys.len() > MAX_EVENT_KEYS
            && let Some(old) = self.keys.pop_front()
        {
            self.key_set.remove(&old);
        }
    }

    /// Takes the first event named `name`, if any.
    pub fn take(&mut self, name: &str) -> Option<InboxEvent> {
        let at = self.events.iter().position(|e| e.name == name)?;
        let event = self.events.remove(at)?;
        self.bytes -= event.payload.len();
        Some(event)
    }
}

/// The replicated state of one workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Unique id.
    pub id: String,
    /// Workflow type.
    pub name: String,
    /// Workflow version.
    pub version: u32,
    /// Encoded input.
    pub input: Bytes,
    /// Lifecycle state.
    pub status: WorkflowStatus,
    /// Owner node; 0 while pending.
    pub owner: NodeId,
    /// The history: committed entries in commit order (for a history of
    /// values written in order, entry i is seq i).
    pub checkpoints: Vec<Checkpoint>,
    /// Which steps the history resolved (derived from `checkpoints`).
    pub(super) steps: StepIndex,
    /// Encoded result when completed.
    pub result: Bytes,
    /// Error when failed, reason when cancelled.
    pub error: String,
    /// The structured failure when failed (from apps that give one).
    pub failure: Option<Box<Failure>>,
    /// Why the workflow is pending.
    pub pending_reason: String,
    /// Start time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// A delayed start not due yet (log time); 0: none.
    pub start_at_ms: u64,
    /// When the workflow times out (log time); 0: no execution timeout.
    pub timeout_at_ms: u64,
    /// The reason of a cancel request (`cancel.rs`); empty: none.
    pub cancel_reason: String,
    /// When a cancel request's cleanup window ends (log time); 0: no cancel
    /// was requested. Kept once the workflow finished (its timer is gone).
    pub cancel_deadline_ms: u64,
    /// Events sent and not consumed, and the idempotency keys delivered
    /// (`inbox.rs`); none for most workflows.
    pub inbox: Option<Box<Inbox>>,
    /// The parent of a child workflow (`children.rs`); none at top level.
    pub parent: Option<Box<ParentLink>>,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// A child workflow's parent: the workflow and position that started it,
/// and what happens to the child when the parent ends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLink {
    /// The parent's workflow id.
    pub workflow_id: String,
    /// The parent's position (seq) that started the child.
    pub seq: u64,
    /// The parent-close policy.
    pub close: ParentClosePolicy,
}

impl Workflow {
    /// True once completed, failed or cancelled.
    pub fn is_terminal(&self) -> bool {
        is_terminal(self.status)
    }

    /// The client API view of this workflow.
    pub fn to_info(&self) -> WorkflowInfo {
        WorkflowInfo {
            workflow_id: self.id.clone(),
            workflow_name: self.name.clone(),
            version: self.version,
            status: self.status as i32,
            owner_node_id: self.owner,
            checkpoint_count: self.steps.resolved(),
            input: self.input.clone(),
            result: self.result.clone(),
            error: self.error.clone(),
            pending_reason: self.pending_reason.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            history_length: self.checkpoints.len() as u64,
            failure: self.failure.as_deref().cloned(),
            pending_timers: self.pending_timers(),
            start_at_ms: self.start_at_ms,
            timeout_at_ms: self.timeout_at_ms,
            cancel_reason: if self.is_terminal() {
                String::new()
            } else {
                self.cancel_reason.clone()
            },
            cancel_deadline_ms: if self.is_terminal() {
                0
            } else {
                self.cancel_deadline_ms
            },
            inbox_size: self.inbox.as_ref().map_or(0, |i| i.events.len() as u64),
            event_waits: self.event_waits(),
            parent_id: self
                .parent
                .as_ref()
                .map_or_else(String::new, |p| p.workflow_id.clone()),
            parent_seq: self.parent.as_ref().map_or(0, |p| p.seq),
            parent_close: self.parent.as_ref().map_or(0, |p| p.close as i32),
            open_children: self.open_children().map(str::to_owned).collect(),
        }
    }

    /// The open event waits, by position; none once the workflow finished.
    pub fn event_waits(&self) -> Vec<EventWait> {
        if self.is_terminal() {
            return Vec::new();
        }
        self.steps
            .waits
            .iter()
            .map(|(seq, (name, at))| EventWait {
                seq: *seq,
                name: name.clone(),
                timeout_at_ms: *at,
            })
            .collect()
    }

    /// The ids of the children this workflow started that have not ended
    /// (none once it finished).
    pub fn open_children(&self) -> impl Iterator<Item = &str> + '_ {
        self.steps.children.values().map(String::as_str)
    }

    /// The id of the open child at `seq`, if one is.
    pub fn open_child(&self, seq: u64) -> Option<&str> {
        self.steps.children.get(&seq).map(String::as_str)
    }

    /// The open wait at `seq`: its event name and timeout (0: none).
    pub fn open_wait(&self, seq: u64) -> Option<(&str, u64)> {
        self.steps
            .waits
            .get(&seq)
            .map(|(name, at)| (name.as_str(), *at))
    }

    /// The earliest open wait (lowest position) for events named `name`.
    pub fn first_wait_for(&self, name: &str) -> Option<u64> {
        self.steps
            .waits
            .iter()
            .find(|(_, (n, _))| n == name)
            .map(|(seq, _)| *seq)
    }

    /// The open event waits with a timeout: (seq, timeout in log time).
    pub fn timed_waits(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.steps
            .waits
            .iter()
            .filter(|(_, (_, at))| *at > 0)
            .map(|(seq, (_, at))| (*seq, *at))
    }

    /// True while a cancel request's cleanup runs (`cancel.rs`).
    pub fn cancel_requested(&self) -> bool {
        self.cancel_deadline_ms > 0 && !self.is_terminal()
    }

    /// The open timers with their names, earliest deadline first; none
    /// once the workflow finished (they will never fire).
    pub fn pending_timers(&self) -> Vec<PendingTimer> {
        if self.is_terminal() {
            return Vec::new();
        }
        let mut timers: Vec<PendingTimer> = self
            .open_timers()
            .map(|(seq, fire_at_ms)| PendingTimer {
                seq,
                fire_at_ms,
                name: self
                    .checkpoints
                    .iter()
                    .rev()
                    .find(|c| c.seq == seq && c.kind == HistoryEntryKind::TimerStarted)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
            })
            .collect();
        timers.sort_by_key(|t| (t.fire_at_ms, t.seq));
        timers
    }

    /// Seed of the run's deterministic random numbers
    /// (`ExecuteWorkflowRequest.random_seed`): a function of the id and the
    /// start's log time only, so every replica and replay draws the same
    /// numbers, and a later workflow reusing the id draws others. Never 0
    /// (0 means "no seed" to the SDKs).
    pub fn random_seed(&self) -> u64 {
        // The SDKs' generator mixes its state before every draw, so the
        // seed needs no mixing of its own.
        (super::stable_hash(&self.id) ^ self.created_at_ms).max(1)
    }

    /// The number of resolved steps.
    pub fn resolved_steps(&self) -> u64 {
        self.steps.resolved()
    }

    /// True while every entry is a value and entry i is seq i: the history
    /// an app of any protocol version reads.
    pub fn is_plain_history(&self) -> bool {
        self.steps.is_plain()
    }

    /// The app protocol that reads this history (see
    /// [`Checkpoint::protocol_at`]).
    pub fn protocol_needed(&self) -> u32 {
        self.steps.protocol
    }

    /// The open timers: (seq, deadline in log time).
    pub fn open_timers(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.steps.timers.iter().map(|(seq, at)| (*seq, *at))
    }

    /// The deadline of the open timer at `seq`, if there is one.
    pub fn open_timer(&self, seq: u64) -> Option<u64> {
        self.steps.timers.get(&seq).copied()
    }

    /// True when step `seq` has its value or final failure.
    pub fn is_step_resolved(&self, seq: u64) -> bool {
        self.steps.is_resolved(seq)
    }

    /// The last failed attempt of unresolved step `seq` (0: none).
    pub fn last_failed_attempt(&self, seq: u64) -> u32 {
        self.steps.last_attempt(seq)
    }

    /// The first step position not resolved yet.
    pub fn first_open_step(&self) -> u64 {
        self.steps.low()
    }
}

/// True for the statuses a workflow never leaves.
pub fn is_terminal(status: WorkflowStatus) -> bool {
    matches!(
        status,
        WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
    )
}

/// Which steps a history resolved, derived from its entries (never
/// serialized: rebuilt when a record is read, kept up to date on apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepIndex {
    /// Every seq below this is resolved.
    low: u64,
    /// Resolved seqs above `low` (steps that finished out of order).
    above: BTreeSet<u64>,
    /// The last failed attempt of each unresolved seq that has one.
    attempts: BTreeMap<u64, u32>,
    /// Some entry is not a value or is not at its own seq's index.
    mixed: bool,
    /// Resolved steps.
    resolved: u64,
    /// Open timers: seq → deadline (log time).
    pub(super) timers: BTreeMap<u64, u64>,
    /// Open event waits: seq → (event name, timeout in log time; 0: none).
    pub(super) waits: BTreeMap<u64, (String, u64)>,
    /// Children started and not ended: seq → the child's workflow id.
    pub(super) children: BTreeMap<u64, String>,
    /// The highest app protocol an entry needs (`Checkpoint::protocol_at`).
    pub(super) protocol: u32,
}

impl StepIndex {
    /// The index of `entries`, in commit order.
    pub fn of(entries: &[Checkpoint]) -> Self {
        let mut index = StepIndex::default();
        for (i, entry) in entries.iter().enumerate() {
            index.add(i as u64, entry);
        }
        index
    }

    /// Notes `entry`, the history's entry number `position`.
    pub(super) fn add(&mut self, position: u64, entry: &Checkpoint) {
        if !entry.is_plain_at(position) {
            self.mixed = true;
        }
        self.protocol = self.protocol.max(entry.protocol_at(position));
        // A wait cancelled after it received an event gave the event back:
        // it resolves nothing (the receipt did).
        if entry.kind == HistoryEntryKind::EventWaitCancelled && self.is_resolved(entry.seq) {
            return;
        }
        if entry.kind == HistoryEntryKind::EventWaiting {
            self.waits
                .insert(entry.seq, (entry.name.clone(), entry.next_attempt_at_ms));
            return;
        }
        if entry.kind == HistoryEntryKind::ChildStarted {
            let child = String::from_utf8_lossy(&entry.value).into_owned();
            self.children.insert(entry.seq, child);
            return;
        }
        if entry.resolves() {
            // A received or timed-out event, a child's end, or a
            // cancellation delivered at a wait or a child.
            self.waits.remove(&entry.seq);
            self.children.remove(&entry.seq);
        }
        if entry.is_timer() {
            if entry.kind == HistoryEntryKind::TimerStarted {
                self.timers.insert(entry.seq, entry.next_attempt_at_ms);
                return;
            }
            self.timers.remove(&entry.seq);
        }
        if !entry.resolves() {
            self.attempts.insert(entry.seq, entry.attempt);
            return;
        }
        self.attempts.remove(&entry.seq);
        self.resolved += 1;
        if entry.seq == self.low {
            self.low += 1;
            while self.above.remove(&self.low) {
                self.low += 1;
            }
        } else {
            self.above.insert(entry.seq);
        }
    }

    /// True when `seq` has its value or final failure.
    pub fn is_resolved(&self, seq: u64) -> bool {
        seq < self.low || self.above.contains(&seq)
    }

    /// The first unresolved seq.
    pub fn low(&self) -> u64 {
        self.low
    }

    /// Resolved steps.
    pub fn resolved(&self) -> u64 {
        self.resolved
    }

    /// The last failed attempt of unresolved `seq` (0: none).
    pub fn last_attempt(&self, seq: u64) -> u32 {
        self.attempts.get(&seq).copied().unwrap_or(0)
    }

    /// Every entry is a value at its own seq's index: the history reads the
    /// same to apps that predate kinds.
    pub fn is_plain(&self) -> bool {
        !self.mixed
    }
}
