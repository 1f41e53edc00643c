//! The simulated users: clients that start workflows (retrying with the
//! same ids until a start is acknowledged) and cancel some of them with a
//! cleanup window, and one app per node that registers its workflow type
//! and runs the workflows its node owns, step by step, from its replica's
//! state, as the SDK core does (a cancel request delivered at the first
//! open position, then the end as cancelled, or, for a stubborn cleanup,
//! nothing until the window runs out).

use std::collections::{BTreeMap, BTreeSet};

use prost::bytes::Bytes;
use raftoral_proto::cluster::v1::command::Kind;
use raftoral_proto::cluster::v1::{
    CancelWorkflow, Command, FinishWorkflow, RecordCheckpoint, RecordStep, RegisterWorker,
    SetWorkerPresence, StartWorkflow, WorkflowType,
};
use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind, WorkflowStatus};
use tokio::sync::oneshot;

use super::choices::{
    CANCEL_REASON, CancelPlan, EVENT, TYPE, cancel_plan, child_at, child_start, event_command,
    event_payload, outcome, signal_starts, sleep_at, wait_at,
};
use crate::consensus::proposal::Proposal;
use crate::error::EngineError;
use crate::workflows::state_machine::{
    Applied, CANCELLED_FAILURE_TYPE, NodeId, StateMachine, Workflow,
};

/// A caller gives up on a proposal after this long (ms) and retries.
const PROPOSAL_TIMEOUT_MS: u64 = 3_000;

/// One workflow of the workload.
pub(super) struct Flow {
    pub id: String,
    /// Checkpoints before it finishes.
    pub steps: u64,
    /// When its client first starts it (simulation ms).
    pub start_at: u64,
    /// The start was acknowledged; the client stops.
    pub started: bool,
    pending: Option<Pending>,
    /// A cancel its client asks for, if any.
    pub cancel: Option<CancelPlan>,
    /// Events its client sends (one per event wait of its code), and which
    /// were acknowledged.
    pub events_acked: Vec<bool>,
    event_pending: Option<Pending>,
    /// The cancel was acknowledged.
    pub cancel_acked: bool,
    cancel_pending: Option<Pending>,
}

#[derive(Debug)]
enum What {
    Start(usize),
    Cancel(usize),
    Signal(usize, usize),
    Wait(String, u64),
    Register,
    Presence,
    Checkpoint(String, u64, Resolution),
    Attempt(String, u64, u32),
    Sleep(String, u64),
    Child(String, u64),
    Finish(String),
}

struct Pending {
    reply: oneshot::Receiver<Result<Applied, EngineError>>,
    what: What,
    deadline: u64,
}

/// How a step resolved: its value, or a final failure with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolution {
    Value(Bytes),
    Failed(String),
}

/// What the cluster acknowledged: each must survive to the end.
#[derive(Default)]
pub(super) struct Acked {
    pub starts: BTreeSet<String>,
    pub checkpoints: BTreeMap<(String, u64), Resolution>,
    /// Failed attempts: (workflow, seq, attempt).
    pub attempts: BTreeSet<(String, u64, u32)>,
    /// Started timers and event waits: (workflow, seq).
    pub timers: BTreeSet<(String, u64)>,
    /// Delivered events: (workflow, payload).
    pub events: BTreeSet<(String, String)>,
    /// Children started: (parent, seq).
    pub children: BTreeSet<(String, u64)>,
    pub finishes: BTreeSet<String>,
}

/// Clients and apps.
pub(super) struct Workload {
    pub flows: Vec<Flow>,
    /// Per node: the app's proposals in flight, by workflow id or duty.
    apps: BTreeMap<NodeId, BTreeMap<String, Pending>>,
    next_proposal: u64,
    pub acked: Acked,
    /// Times each step (workflow, seq) was computed by an app.
    pub computed: BTreeMap<(String, u64), u32>,
    /// Replies since the trace last took them.
    pub notes: Vec<String>,
}

/// A proposal for a node's loop.
pub(super) type Propose = (NodeId, Proposal);

impl Workload {
    pub(super) fn new(flows: Vec<(u64, u64)>, first_proposal: u64) -> Workload {
        Workload {
            flows: flows
                .into_iter()
                .enumerate()
                .map(|(i, (steps, start_at))| Flow {
                    id: format!("wf-{i}"),
                    steps,
                    start_at,
                    started: false,
                    pending: None,
                    cancel: cancel_plan(&format!("wf-{i}")),
                    events_acked: vec![
                        false;
                        (0..steps)
                            .filter(|seq| wait_at(&format!("wf-{i}"), *seq).is_some())
                            .count()
                    ],
                    event_pending: None,
                    cancel_acked: false,
                    cancel_pending: None,
                })
                .collect(),
            apps: BTreeMap::new(),
            next_proposal: first_proposal,
            acked: Acked::default(),
            computed: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    fn command(&mut self, node: NodeId, stamp: u64, kind: Kind) -> Command {
        self.next_proposal += 1;
        Command {
            proposer_node_id: node,
            proposal_id: self.next_proposal,
            proposed_at_ms: stamp,
            kind: Some(kind),
        }
    }

    fn propose(
        &mut self,
        node: NodeId,
        stamp: u64,
        now: u64,
        kind: Kind,
        what: What,
    ) -> (Proposal, Pending) {
        let command = self.command(node, stamp, kind);
        let (reply, rx) = oneshot::channel();
        (
            Proposal::Command { command, reply },
            Pending {
                reply: rx,
                what,
                deadline: now + PROPOSAL_TIMEOUT_MS,
            },
        )
    }

    /// A node crashed: its app's proposals are lost with it.
    pub(super) fn node_crashed(&mut self, node: NodeId) {
        self.apps.remove(&node);
    }

    fn record(&mut self, what: What, applied: &Applied) {
        match (what, applied) {
            (What::Start(i), Applied::Started { .. }) => {
                let flow = &mut self.flows[i];
                flow.started = true;
                self.acked.starts.insert(flow.id.clone());
            }
            (What::Start(i), Applied::SignalledWithStart { .. }) => {
                let flow = &mut self.flows[i];
                flow.started = true;
                flow.events_acked[0] = true;
                self.acked.starts.insert(flow.id.clone());
                let payload = event_payload(&flow.id, 0);
                self.acked.events.insert((flow.id.clone(), payload));
            }
            (What::Checkpoint(id, seq, resolution), Applied::CheckpointRecorded) => {
                self.acked.checkpoints.insert((id, seq), resolution);
            }
            (What::Attempt(id, seq, attempt), Applied::CheckpointRecorded) => {
                self.acked.attempts.insert((id, seq, attempt));
            }
            (What::Sleep(id, seq), Applied::CheckpointRecorded) => {
                self.acked.timers.insert((id, seq));
            }
            (What::Finish(id), Applied::Finished) => {
                self.acked.finishes.insert(id);
            }
            (What::Cancel(i), Applied::CancelRequested | Applied::Cancelled) => {
                self.flows[i].cancel_acked = true;
            }
            (What::Signal(i, j), Applied::EventSent { .. }) => {
                self.flows[i].events_acked[j] = true;
                self.acked.events.insert((
                    self.flows[i].id.clone(),
                    event_payload(&self.flows[i].id, j),
                ));
            }
            (What::Wait(id, seq), Applied::CheckpointRecorded) => {
                self.acked.timers.insert((id, seq));
            }
            (What::Child(id, seq), Applied::CheckpointRecorded) => {
                self.acked.children.insert((id, seq));
            }
            _ => {}
        }
    }

    /// Collects the replies of `pending`: Some(left) to keep waiting.
    fn settle(&mut self, pending: Pending, now: u64) -> Option<Pending> {
        let mut pending = pending;
        match pending.reply.try_recv() {
            Ok(Ok(applied)) => {
                self.notes
                    .push(format!("{:?} -> {applied:?}", pending.what));
                self.record(pending.what, &applied);
                None
            }
            Ok(Err(e)) => {
                self.notes.push(format!("{:?} -> {e}", pending.what));
                None
            }
            Err(oneshot::error::TryRecvError::Closed) => None,
            Err(oneshot::error::TryRecvError::Empty) if now >= pending.deadline => {
                self.notes.push(format!("{:?} timed out", pending.what));
                None
            }
            Err(oneshot::error::TryRecvError::Empty) => Some(pending),
        }
    }

    /// The clients' turn: starts the workflows due, and cancels those
    /// whose cancel is due, through `node`.
    pub(super) fn clients(&mut self, node: NodeId, stamp: u64, now: u64) -> Vec<Propose> {
        let mut out = Vec::new();
        for i in 0..self.flows.len() {
            if let Some(p) = self.flows[i].pending.take() {
                self.flows[i].pending = self.settle(p, now);
            }
            if let Some(p) = self.flows[i].cancel_pending.take() {
                self.flows[i].cancel_pending = self.settle(p, now);
            }
            if let Some(p) = self.flows[i].event_pending.take() {
                self.flows[i].event_pending = self.settle(p, now);
            }
            // The next event, every 300 ms after the start, retried with
            // its key until acknowledged.
            let flow = &self.flows[i];
            let next = flow.events_acked.iter().position(|acked| !acked);
            if let Some(j) = next
                && flow.started
                && flow.event_pending.is_none()
                && now >= flow.start_at + 300 * (j as u64 + 1)
            {
                let kind = Kind::SendEvent(event_command(&flow.id, j));
                let (proposal, pending) = self.propose(node, stamp, now, kind, What::Signal(i, j));
                self.flows[i].event_pending = Some(pending);
                out.push((node, proposal));
            }
            let flow = &self.flows[i];
            if let Some(plan) = flow.cancel
                && flow.started
                && !flow.cancel_acked
                && flow.cancel_pending.is_none()
                && now >= flow.start_at + plan.after_ms
            {
                let kind = Kind::CancelWorkflow(CancelWorkflow {
                    workflow_id: flow.id.clone(),
                    reason: CANCEL_REASON.into(),
                    cleanup_ms: plan.cleanup_ms,
                });
                let (proposal, pending) = self.propose(node, stamp, now, kind, What::Cancel(i));
                self.flows[i].cancel_pending = Some(pending);
                out.push((node, proposal));
            }
            let flow = &self.flows[i];
            if flow.started || flow.pending.is_some() || flow.start_at > now {
                continue;
            }
            let kind = Kind::StartWorkflow(StartWorkflow {
                workflow_id: flow.id.clone(),
                workflow_name: TYPE.into(),
                version: 1,
                input: Bytes::from(format!("input-{i}")),
                origin_node_id: node,
                start_delay_ms: 0,
                execution_timeout_ms: 0,
                signal: (!flow.events_acked.is_empty() && signal_starts(&flow.id))
                    .then(|| Box::new(event_command(&flow.id, 0))),
            });
            let (proposal, pending) = self.propose(node, stamp, now, kind, What::Start(i));
            self.flows[i].pending = Some(pending);
            out.push((node, proposal));
        }
        out
    }

    /// Node `node`'s app's turn: collect replies, keep its registration
    /// and presence, and run the next step of each workflow it owns.
    pub(super) fn app(
        &mut self,
        node: NodeId,
        stamp: u64,
        now: u64,
        state: &StateMachine,
    ) -> Vec<Propose> {
        let mut app = self.apps.remove(&node).unwrap_or_default();
        let keys: Vec<String> = app.keys().cloned().collect();
        for key in keys {
            let p = app.remove(&key).expect("key");
            if let Some(left) = self.settle(p, now) {
                app.insert(key, left);
            }
        }
        let mut out = Vec::new();
        if !state.is_registered(node, TYPE, 1) {
            if !app.contains_key("\0register") {
                let kind = Kind::RegisterWorker(RegisterWorker {
                    node_id: node,
                    workflow_name: TYPE.into(),
                    version: 1,
                });
                let (proposal, pending) = self.propose(node, stamp, now, kind, What::Register);
                app.insert("\0register".into(), pending);
                out.push((node, proposal));
            }
        } else if !state.is_live(node, TYPE, 1) && !app.contains_key("\0presence") {
            let kind = Kind::SetWorkerPresence(SetWorkerPresence {
                node_id: node,
                present: true,
                live: vec![WorkflowType {
                    workflow_name: TYPE.into(),
                    version: 1,
                }],
                command_level: crate::workflows::state_machine::COMMAND_LEVEL,
            });
            let (proposal, pending) = self.propose(node, stamp, now, kind, What::Presence);
            app.insert("\0presence".into(), pending);
            out.push((node, proposal));
        }
        let owned: Vec<std::sync::Arc<Workflow>> = state
            .active_shared()
            .filter(|w| w.status == WorkflowStatus::Running && w.owner == node)
            .filter(|w| !app.contains_key(&w.id))
            .cloned()
            .collect();
        for w in owned {
            let (steps, stubborn) = self
                .flows
                .iter()
                .find(|f| f.id == w.id)
                .map_or((0, false), |f| {
                    (f.steps, f.cancel.is_some_and(|c| c.stubborn))
                });
            let cancel = w.cancel_requested() && w.first_open_step() < steps;
            let (kind, what) = if cancel {
                match self.cancel_move(node, &w, stubborn) {
                    Some(next) => next,
                    None => continue, // a cleanup that never ends
                }
            } else if w.open_timer(w.first_open_step()).is_some()
                || w.open_wait(w.first_open_step()).is_some()
                || w.open_child(w.first_open_step()).is_some()
            {
                // Asleep, waiting or awaiting a child: the cluster resolves
                // it.
                continue;
            } else {
                self.next_step(node, &w, steps)
            };
            let (proposal, pending) = self.propose(node, stamp, now, kind, what);
            app.insert(w.id.clone(), pending);
            out.push((node, proposal));
        }
        self.apps.insert(node, app);
        out
    }

    /// The owner's move for `w` whose cancel is requested: deliver it at
    /// the first open position (a step's final failure, or the sleep's
    /// cancellation there), then end as cancelled; `None` for a stubborn
    /// cleanup once delivered (the window ends it).
    fn cancel_move(&mut self, node: NodeId, w: &Workflow, stubborn: bool) -> Option<(Kind, What)> {
        let id = w.id.clone();
        let failure = Failure {
            r#type: CANCELLED_FAILURE_TYPE.into(),
            message: CANCEL_REASON.into(),
            ..Failure::default()
        };
        if w.checkpoints.iter().any(|c| c.is_cancellation()) {
            if stubborn {
                return None;
            }
            let finish = Kind::FinishWorkflow(FinishWorkflow {
                workflow_id: id.clone(),
                node_id: node,
                success: false,
                result: Bytes::new(),
                error: format!("{CANCELLED_FAILURE_TYPE}: {CANCEL_REASON}"),
                failure: Some(failure),
            });
            return Some((finish, What::Finish(id)));
        }
        let seq = w.first_open_step();
        let (kind, attempt) = if w.open_timer(seq).is_some() {
            (HistoryEntryKind::TimerCancelled, 1)
        } else {
            (HistoryEntryKind::StepFailed, w.last_failed_attempt(seq) + 1)
        };
        let name = if kind == HistoryEntryKind::TimerCancelled {
            format!("nap-{seq}")
        } else {
            format!("step-{seq}")
        };
        let step = RecordStep {
            workflow_id: id.clone(),
            seq,
            checkpoint_name: name,
            node_id: node,
            kind: kind as i32,
            value: Bytes::new(),
            failure: Some(failure),
            attempt,
            retry_delay_ms: 0,
            timer_duration_ms: 0,
            child: None,
        };
        let what = What::Checkpoint(id, seq, Resolution::Failed(CANCEL_REASON.into()));
        Some((Kind::RecordStep(step), what))
    }

    /// The owner's next move for `w`: the next attempt of its first open
    /// step (a value as before kinds existed while the history is plain, a
    /// `RecordStep` otherwise, as a node proposes them), or its finish.
    fn next_step(&mut self, node: NodeId, w: &Workflow, steps: u64) -> (Kind, What) {
        let id = w.id.clone();
        let seq = w.first_open_step();
        if seq >= steps {
            let finish = Kind::FinishWorkflow(FinishWorkflow {
                workflow_id: id.clone(),
                node_id: node,
                success: true,
                result: Bytes::from(format!("done:{id}")),
                error: String::new(),
                failure: None,
            });
            return (finish, What::Finish(id));
        }
        if let Some(timeout) = wait_at(&id, seq) {
            let wait = RecordStep {
                workflow_id: id.clone(),
                seq,
                checkpoint_name: EVENT.into(),
                node_id: node,
                kind: HistoryEntryKind::EventWaiting as i32,
                value: Bytes::new(),
                failure: None,
                attempt: 1,
                retry_delay_ms: 0,
                timer_duration_ms: timeout,
                child: None,
            };
            return (Kind::RecordStep(wait), What::Wait(id, seq));
        }
        if child_at(&id, seq) {
            let start = child_start(&id, seq, node);
            return (Kind::RecordStep(start), What::Child(id, seq));
        }
        if let Some(duration) = sleep_at(&id, seq) {
            let start = RecordStep {
                workflow_id: id.clone(),
                seq,
                checkpoint_name: format!("nap-{seq}"),
                node_id: node,
                kind: HistoryEntryKind::TimerStarted as i32,
                value: Bytes::new(),
                failure: None,
                attempt: 1,
                retry_delay_ms: 0,
                timer_duration_ms: duration,
                child: None,
            };
            return (Kind::RecordStep(start), What::Sleep(id, seq));
        }
        *self.computed.entry((id.clone(), seq)).or_default() += 1;
        let attempt = w.last_failed_attempt(seq) + 1;
        let name = format!("step-{seq}");
        let Some(kind) = outcome(&id, seq, attempt) else {
            let value = Bytes::from(format!("{id}:{seq}"));
            let what = What::Checkpoint(id.clone(), seq, Resolution::Value(value.clone()));
            if attempt == 1 && w.is_plain_history() && w.checkpoints.len() as u64 == seq {
                let c = RecordCheckpoint {
                    workflow_id: id,
                    seq,
                    checkpoint_name: name,
                    value,
                    node_id: node,
                };
                return (Kind::RecordCheckpoint(c), what);
            }
            let step = RecordStep {
                workflow_id: id,
                seq,
                checkpoint_name: name,
                node_id: node,
                kind: HistoryEntryKind::Unspecified as i32,
                value,
                failure: None,
                attempt,
                retry_delay_ms: 0,
                timer_duration_ms: 0,
                child: None,
            };
            return (Kind::RecordStep(step), what);
        };
        let message = format!("{id}:{seq} attempt {attempt} failed");
        let what = if kind == HistoryEntryKind::StepFailed {
            What::Checkpoint(id.clone(), seq, Resolution::Failed(message.clone()))
        } else {
            What::Attempt(id.clone(), seq, attempt)
        };
        let step = RecordStep {
            workflow_id: id,
            seq,
            checkpoint_name: name,
            node_id: node,
            kind: kind as i32,
            value: Bytes::new(),
            failure: Some(Failure {
                r#type: "Sim".into(),
                message,
                ..Failure::default()
            }),
            attempt,
            retry_delay_ms: u64::from(attempt) * 100,
            timer_duration_ms: 0,
            child: None,
        };
        (Kind::RecordStep(step), what)
    }
}
