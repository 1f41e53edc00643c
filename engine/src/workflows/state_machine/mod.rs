//! The replicated workflow state machine.
//!
//! Every node applies the same committed [`Command`]s in the same order, so
//! everything here must be deterministic: no local clock (times come from the
//! proposer, inside the command), no randomness, ordered maps where iteration
//! order matters.
//!
//! Pure apply: imports nothing of the engine but `error` (and its own
//! files). It does not know the log that feeds it nor who listens to the
//! [`Event`]s applying returns (the node's event bus, app sessions).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raftoral_proto::cluster::v1::{
    ChangeOwner, Command, FinishWorkflow, StartWorkflow, command::Kind,
};
use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::error::Rejection;

pub use archive::{Archive, ArchiveError, Archived};
pub use cancel::CANCEL_LEVEL;
pub use children::{CHILD_CANCELLED_TYPE, CHILD_ID_IN_USE_TYPE, CHILDREN_LEVEL};
pub use events::{Event, EventAt};
pub use inbox::{EVENTS_LEVEL, WAIT_CANCEL_LEVEL};
pub use pages::PageFilter;
pub use snapshot::RestoreError;
pub use status::{MAX_STATUS_BYTES, STATUS_LEVEL};
pub use steps::{
    COMMAND_LEVEL, MAX_OPEN_STEPS, MAX_RETRY_DELAY_MS, MAX_TIMER_MS, STEPS_LEVEL, TIMERS_LEVEL,
};
pub use timers::{LATENESS_BUCKETS_MS, TimerKey, TimerSlot, TimerStats};
pub use workflow::{
    CANCELLED_FAILURE_TYPE, Checkpoint, Inbox, MAX_EVENT_KEYS, MAX_INBOX_BYTES, MAX_INBOX_EVENTS,
    NodeId, StepIndex, Workflow, WorkflowType, is_terminal,
};

/// What applying a command produced, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A worker registration was recorded (or was already known).
    Registered,
    /// A workflow was started; `already_started` when the id existed.
    Started {
        /// The workflow id.
        workflow_id: String,
        /// True when the id existed before this command.
        already_started: bool,
    },
    /// A checkpoint was appended.
    CheckpointRecorded,
    /// The workflow reached a terminal status.
    Finished,
    /// The workflow was cancelled (or was already terminal: a no-op).
    Cancelled,
    /// A cancel request was recorded: the running workflow cleans up.
    CancelRequested,
    /// A membership change was applied.
    MembershipChanged,
    /// A node's app presence was recorded.
    PresenceRecorded,
    /// A workflow changed owner.
    OwnerChanged,
    /// This many finished workflows were removed (retention).
    Purged(u64),
    /// This many timers fired (the others named were not open or not due).
    TimersFired(u64),
    /// An event was delivered (consumed by a wait or kept in the inbox),
    /// or, `duplicate`, its idempotency key was delivered before.
    EventSent {
        /// True when nothing was delivered (a key seen before).
        duplicate: bool,
    },
    /// A signal-with-start was applied: the workflow started (or ran
    /// already) and the event was delivered, or was a `duplicate`.
    SignalledWithStart {
        /// True when this entry started the workflow.
        started: bool,
        /// True when nothing was delivered (a key seen before).
        duplicate: bool,
    },
}

/// The workflow table and the worker registry, identical on every node.
///
/// Memory holds the pending and running workflows and those finished since
/// the last flush; the others are in the [`Archive`] (see `archive.rs`).
/// Every lookup reads memory first, then the archive as of its last flush:
/// together they are exactly the workflows of the applied state.
#[derive(Debug, Default)]
pub struct StateMachine {
    /// A persistent map of shared records: a flush takes a copy in O(1)
    /// and writes it off the Raft loop while applying goes on (a change
    /// copies only the path to the record it changes).
    workflows: imbl::OrdMap<String, Arc<Workflow>>,
    /// Finished workflows as of the last flush, on disk.
    archive: Archive,
    /// Workflows written by the last flush, still in memory too: removed a
    /// batch at a time by the Raft loop.
    evicting: VecDeque<Archived>,
    /// A read of the archive failed: the node must stop (set by lookups
    /// that cannot return an error; the Raft loop checks it after each
    /// command and each Ready round, queries after each read).
    archive_failure: Mutex<Option<String>>,
    /// Ids of pending and running workflows: the work that hot paths
    /// (failover, dispatch, placement of pending work, metrics) look at, so
    /// they do not walk every finished workflow.
    active: BTreeSet<String>,
    /// Finished workflows by status (completed, failed, cancelled).
    finished: BTreeMap<i32, u64>,
    /// Pending and running workflows by status: counters, so `/metrics`
    /// does not walk the active workflows.
    active_by_status: BTreeMap<i32, u64>,
    /// Finished workflows still in memory by (last change, id): what
    /// retention removes first (the archive has its own index).
    finished_at: BTreeSet<(u64, String)>,
    /// Finished workflows older than this were removed (retention).
    purged_before_ms: u64,
    /// Open durable timers by deadline (`timers.rs`): derived from the
    /// running workflows' histories.
    timers: BTreeSet<timers::TimerKey>,
    /// Timers fired here since this process started (`/metrics` only).
    timer_stats: timers::TimerStats,
    /// The log's own time: the highest stamp applied so far (ms since the
    /// Unix epoch). Every command applies at `max(this, its stamp)`, so
    /// time never runs backwards in the replicated state whatever the
    /// proposers' clocks say, and a record changed after a purge is never
    /// older than the purge's cut-off.
    log_time_ms: u64,
    /// (name, version) → nodes whose app registered it.
    registry: BTreeMap<(String, u32), BTreeSet<NodeId>>,
    /// Node-to-node addresses of members (from conf changes).
    addresses: BTreeMap<NodeId, String>,
    /// Ids removed from the cluster; never reused.
    removed: BTreeSet<NodeId>,
    /// Per node, the (name, version) pairs its connected apps can run now;
    /// a node without an entry has no app connected.
    present: BTreeMap<NodeId, BTreeSet<WorkflowType>>,
    /// Per node, the command level its engine recorded (0: none yet).
    levels: BTreeMap<NodeId, u32>,
    /// Fixed at bootstrap; empty in state from before it existed.
    cluster_id: String,
    applied_index: u64,
    /// Test hook: per purge applied, how many workflows it removed and
    /// over how many distinct milliseconds (the simulation checks that a
    /// purge's work is bounded).
    #[cfg(test)]
    pub(crate) purges: Vec<(u64, usize)>,
}

impl StateMachine {
    /// An empty state machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster's identity; empty when unknown (a node waiting to join,
    /// or state written before ids existed).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Sets the identity (bootstrap only).
    pub fn set_cluster_id(&mut self, cluster_id: String) {
        self.cluster_id = cluster_id;
    }

    /// Index of the last applied Raft entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Records that entries up to `index` are applied (including entries that
    /// carry no command, such as a new leader's empty entry).
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// Records a member's address (a node was added, or bootstrap).
    pub fn set_member_address(&mut self, node: NodeId, address: String) {
        self.addresses.insert(node, address);
    }

    /// Records that a node left the cluster; its id is never reused. Its
    /// registrations and presence go with it, and its running workflows move
    /// to a live node that can run them, or back to PENDING with the reason
    /// (a non-member can never run them). Returns the events of the moves.
    /// Advances the log's time to `stamp` (a committed entry's proposer
    /// time) and returns the time the entry applies at: never earlier than
    /// an entry applied before it.
    pub fn advance_log_time(&mut self, stamp: u64) -> u64 {
        self.log_time_ms = self.log_time_ms.max(stamp);
        self.log_time_ms
    }

    /// The log's own time: the highest stamp applied (ms since the epoch).
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// Removes `node` from the members at the log time of the entry that
    /// removed it (see [`advance_log_time`](Self::advance_log_time)).
    pub fn remove_member(&mut self, node: NodeId, now: u64) -> Vec<Event> {
        self.addresses.remove(&node);
        self.removed.insert(node);
        self.present.remove(&node);
        self.levels.remove(&node);
        for nodes in self.registry.values_mut() {
            nodes.remove(&node);
        }
        let orphans: Vec<(String, WorkflowType)> = self
            .active_workflows()
            .filter(|w| w.status == WorkflowStatus::Running && w.owner == node)
            .map(|w| (w.id.clone(), (w.name.clone(), w.version)))
            .collect();
        let mut events = Vec::new();
        let mut back_to_pending = 0;
        for (id, (name, version)) in orphans {
            let pool = self.live_nodes(&name, version);
            let wf = self
                .workflows
                .get_mut(&id)
                .map(Arc::make_mut)
                .expect("listed above");
            wf.updated_at_ms = now;
            if pool.is_empty() {
                back_to_pending += 1;
                wf.status = WorkflowStatus::Pending;
                wf.owner = 0;
                wf.pending_reason = format!(
                    "its owner node {node} was removed from the cluster and no connected app \
                     can run workflow '{name}' version {version}; it resumes when one registers it"
                );
            } else {
                wf.owner = pick(&pool, &id);
                events.push(Event::OwnerChanged {
                    workflow_id: id,
                    old: node,
                    new: wf.owner,
                });
            }
        }
        self.count_active(
            Some(WorkflowStatus::Running),
            Some(WorkflowStatus::Pending),
            back_to_pending,
        );
        events
    }

    /// Known member addresses.
    pub fn member_addresses(&self) -> &BTreeMap<NodeId, String> {
        &self.addresses
    }

    /// True when `node` was removed from the cluster at some point.
    pub fn was_removed(&self, node: NodeId) -> bool {
        self.removed.contains(&node)
    }

    /// Looks a workflow up (memory, then the archive): shared with the
    /// state when it is in memory (no copy of its history).
    pub fn workflow(&self, id: &str) -> Option<Arc<Workflow>> {
        match self.workflows.get(id) {
            Some(w) => Some(w.clone()),
            None => self.archived(id).map(Arc::new),
        }
    }

    /// True when a workflow with this id exists.
    fn exists(&self, id: &str) -> bool {
        self.workflows.contains_key(id) || self.archived(id).is_some()
    }

    /// A finished workflow from the archive, unless retention removed it
    /// since the last flush.
    fn archived(&self, id: &str) -> Option<Workflow> {
        match self.archive.get(id) {
            Ok(found) => found.filter(|w| w.updated_at_ms >= self.purged_before_ms),
            Err(e) => {
                self.archive_failed(e);
                None
            }
        }
    }

    fn archive_failed(&self, e: ArchiveError) {
        tracing::error!(error = %e, "the workflow store failed");
        let mut failure = self.archive_failure.lock().expect("failure lock");
        failure.get_or_insert_with(|| e.to_string());
    }

    /// Why the node must stop, once a read of the archive failed. Sticky:
    /// every later query answers with it too.
    pub fn archive_failure(&self) -> Option<String> {
        self.archive_failure.lock().expect("failure lock").clone()
    }

    /// Pending and running workflows ordered by id, shared with the state.
    pub fn active_shared(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.active.iter().filter_map(|id| self.workflows.get(id))
    }

    /// True while this workflow's record is held in memory (tests).
    #[cfg(test)]
    pub(crate) fn is_resident(&self, id: &str) -> bool {
        self.workflows.contains_key(id)
    }

    /// How many workflows memory holds: the active ones and those
    /// finished since the last flush (the others are in the archive).
    pub fn resident_workflows(&self) -> usize {
        self.workflows.len()
    }

    /// How many workflows there are (kept as counters).
    pub fn workflow_count(&self) -> u64 {
        self.active.len() as u64 + self.finished.values().sum::<u64>()
    }

    /// Pending and running workflows ordered by id (an index: no finished
    /// workflow is visited).
    pub fn active_workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.active
            .iter()
            .filter_map(|id| self.workflows.get(id).map(|w| &**w))
    }

    /// How many workflows have `status` (kept as counters).
    pub fn count(&self, status: WorkflowStatus) -> u64 {
        let counters = match status {
            WorkflowStatus::Pending | WorkflowStatus::Running => &self.active_by_status,
            _ => &self.finished,
        };
        counters.get(&(status as i32)).copied().unwrap_or(0)
    }

    /// Counts `n` active workflows moving from status `from` to `to` (`None`:
    /// arriving or leaving the active ones).
    fn count_active(&mut self, from: Option<WorkflowStatus>, to: Option<WorkflowStatus>, n: u64) {
        if let Some(from) = from
            && let Some(c) = self.active_by_status.get_mut(&(from as i32))
        {
            *c = c.saturating_sub(n);
        }
        if let Some(to) = to {
            *self.active_by_status.entry(to as i32).or_default() += n;
        }
    }

    /// Moves a workflow that just reached a terminal status (at `now`) from
    /// status `was` out of the active index.
    /// Its parent learns of its end, and its open children meet their
    /// parent-close policy (`children.rs`).
    fn note_finished(
        &mut self,
        id: &str,
        was: WorkflowStatus,
        status: WorkflowStatus,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        self.drop_timers(id);
        if self.active.remove(id) {
            self.count_active(Some(was), None, 1);
            *self.finished.entry(status as i32).or_default() += 1;
            self.finished_at.insert((now, id.to_owned()));
        }
        self.workflow_ended(id, now, events);
    }

    fn change_owner(
        &mut self,
        c: &ChangeOwner,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        self.running_owned_by(&c.workflow_id, c.from_node_id)?;
        let wf = self
            .workflows
            .get_mut(&c.workflow_id)
            .map(Arc::make_mut)
            .expect("checked above");
        wf.owner = c.to_node_id;
        wf.updated_at_ms = now;
        events.push(Event::OwnerChanged {
            workflow_id: c.workflow_id.clone(),
            old: c.from_node_id,
            new: c.to_node_id,
        });
        Ok(Applied::OwnerChanged)
    }

    /// Applies one committed command and returns its outcome plus the events
    /// it produced. Rejections change nothing.
    pub fn apply(&mut self, command: &Command) -> (Result<Applied, Rejection>, Vec<Event>) {
        // Times come from the log, never from this node's clock, and only
        // move forward: replicas agree on every time they record.
        let now = self.advance_log_time(command.proposed_at_ms);
        let mut events = Vec::new();
        let outcome = match &command.kind {
            None => Err(Rejection::EmptyCommand),
            Some(Kind::RegisterWorker(c)) => Ok(self.register_worker(c, now, &mut events)),
            Some(Kind::StartWorkflow(c)) => match &c.signal {
                Some(signal) => self.signal_with_start(c, signal, now, &mut events),
                None => Ok(self.start_workflow(c, now, &mut events)),
            },
            Some(Kind::RecordCheckpoint(c)) => self.record_checkpoint(c, now, &mut events),
            Some(Kind::FinishWorkflow(c)) => self.finish_workflow(c, now, &mut events),
            Some(Kind::CancelWorkflow(c)) => self.cancel_workflow(c, now, &mut events),
            Some(Kind::SetWorkerPresence(c)) => Ok(self.set_presence(c, now, &mut events)),
            Some(Kind::ChangeOwner(c)) => self.change_owner(c, now, &mut events),
            Some(Kind::PurgeFinished(c)) => Ok(self.purge_finished(c, now)),
            Some(Kind::RecordStep(c)) => self.record_step(c, now, &mut events),
            Some(Kind::FireTimers(c)) => Ok(self.fire_timers(c, now, &mut events)),
            Some(Kind::SendEvent(c)) => self.send_event(c, now, &mut events),
        };
        (outcome, events)
    }

    pub(super) fn start_workflow(
        &mut self,
        c: &StartWorkflow,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Applied {
        if self.exists(&c.workflow_id) {
            return Applied::Started {
                workflow_id: c.workflow_id.clone(),
                already_started: true,
            };
        }
        let start_at_ms = match c.start_delay_ms.min(MAX_TIMER_MS) {
            0 => 0,
            delay => now.saturating_add(delay),
        };
        let timeout_at_ms = match c.execution_timeout_ms.min(MAX_TIMER_MS) {
            0 => 0,
            timeout => now.max(start_at_ms).saturating_add(timeout),
        };
        let (status, owner, pending_reason) = if start_at_ms > 0 {
            (
                WorkflowStatus::Pending,
                0,
                format!("scheduled: starts at {start_at_ms} (log time, ms since the Unix epoch)"),
            )
        } else {
            match self.place(
                &c.workflow_name,
                c.version,
                &c.workflow_id,
                c.origin_node_id,
            ) {
                Ok(owner) => (WorkflowStatus::Running, owner, String::new()),
                Err(reason) => (WorkflowStatus::Pending, 0, reason),
            }
        };
        let wf = Workflow {
            id: c.workflow_id.clone(),
            name: c.workflow_name.clone(),
            version: c.version,
            input: c.input.clone(),
            status,
            owner,
            checkpoints: Vec::new(),
            steps: StepIndex::default(),
            result: Bytes::new(),
            error: String::new(),
            failure: None,
            pending_reason,
            created_at_ms: now,
            updated_at_ms: now,
            start_at_ms,
            timeout_at_ms,
            cancel_reason: String::new(),
            cancel_deadline_ms: 0,
            inbox: None,
            parent: None,
        };
        self.add_timers(&wf);
        if status == WorkflowStatus::Running {
            events.push(Event::WorkflowRunning {
                workflow_id: wf.id.clone(),
                owner,
            });
        }
        self.active.insert(wf.id.clone());
        self.workflows.insert(wf.id.clone(), Arc::new(wf));
        self.count_active(None, Some(status), 1);
        Applied::Started {
            workflow_id: c.workflow_id.clone(),
            already_started: false,
        }
    }

    fn running_owned_by(&self, id: &str, node: NodeId) -> Result<&Workflow, Rejection> {
        let Some(wf) = self.workflows.get(id).map(|w| &**w) else {
            // Finished and flushed, or unknown.
            return Err(match self.archived(id) {
                Some(w) => Rejection::NotRunning {
                    workflow_id: id.to_owned(),
                    status: w.status,
                },
                None => Rejection::UnknownWorkflow(id.to_owned()),
            });
        };
        if wf.status != WorkflowStatus::Running {
            return Err(Rejection::NotRunning {
                workflow_id: id.to_owned(),
                status: wf.status,
            });
        }
        if wf.owner != node {
            return Err(Rejection::NotOwner {
                workflow_id: id.to_owned(),
                owner: wf.owner,
                node,
            });
        }
        Ok(wf)
    }

    fn finish_workflow(
        &mut self,
        c: &FinishWorkflow,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        self.running_owned_by(&c.workflow_id, c.node_id)?;
        let wf = self
            .workflows
            .get_mut(&c.workflow_id)
            .map(Arc::make_mut)
            .expect("checked above");
        if c.success {
            wf.status = WorkflowStatus::Completed;
            wf.result = c.result.clone();
        } else if cancel::ends_cancelled(wf, c.failure.as_ref()) {
            // The code ended with the cancellation it was delivered.
            wf.status = WorkflowStatus::Cancelled;
            wf.error = wf.cancel_reason.clone();
        } else {
            wf.status = WorkflowStatus::Failed;
            wf.error = c.error.clone();
            wf.failure = c.failure.clone().map(Box::new);
        }
        wf.updated_at_ms = now;
        let status = wf.status;
        events.push(Event::WorkflowFinished {
            workflow_id: c.workflow_id.clone(),
            status,
        });
        self.note_finished(&c.workflow_id, WorkflowStatus::Running, status, now, events);
        Ok(Applied::Finished)
    }
}

/// A deterministic choice among `nodes` (non-empty) for `workflow_id`:
/// spreads workflows, and is the same on every replica.
pub fn pick(nodes: &[NodeId], workflow_id: &str) -> NodeId {
    nodes[(stable_hash(workflow_id) % nodes.len() as u64) as usize]
}

/// FNV-1a: stable across processes and versions, unlike `DefaultHasher`.
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub mod archive;
mod cancel;
#[cfg(test)]
mod cancel_tests;
mod children;
#[cfg(test)]
mod children_tests;
mod events;
mod inbox;
#[cfg(test)]
mod inbox_tests;
mod pages;
mod record;
mod retention;
mod snapshot;
mod status;
#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod step_tests;
mod steps;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timer_tests;
mod timers;
mod workers;
mod workflow;
