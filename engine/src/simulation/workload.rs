//! The simulated users: clients that start workflows (retrying with the
//! same ids until a start is acknowledged) and one app per node that
//! registers its workflow type and runs the workflows its node owns, step
//! by step, from its replica's state, as the SDK core does.

use std::collections::{BTreeMap, BTreeSet};

use prost::bytes::Bytes;
use raftoral_proto::cluster::v1::command::Kind;
use raftoral_proto::cluster::v1::{
    Command, FinishWorkflow, RecordCheckpoint, RegisterWorker, SetWorkerPresence, StartWorkflow,
    WorkflowType,
};
use raftoral_proto::sidecar::v1::WorkflowStatus;
use tokio::sync::oneshot;

use crate::consensus::proposal::Proposal;
use crate::error::EngineError;
use crate::workflows::state_machine::{Applied, NodeId, StateMachine};

/// The workflow type every app runs.
pub(super) const TYPE: &str = "sim";

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
}

#[derive(Debug)]
enum What {
    Start(usize),
    Register,
    Presence,
    Checkpoint(String, u64, Bytes),
    Finish(String),
}

struct Pending {
    reply: oneshot::Receiver<Result<Applied, EngineError>>,
    what: What,
    deadline: u64,
}

/// What the cluster acknowledged: each must survive to the end.
#[derive(Default)]
pub(super) struct Acked {
    pub starts: BTreeSet<String>,
    pub checkpoints: BTreeMap<(String, u64), Bytes>,
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
            (What::Checkpoint(id, seq, value), Applied::CheckpointRecorded) => {
                self.acked.checkpoints.insert((id, seq), value);
            }
            (What::Finish(id), Applied::Finished) => {
                self.acked.finishes.insert(id);
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

    /// The clients' turn: starts the workflows due, through `node`.
    pub(super) fn clients(&mut self, node: NodeId, stamp: u64, now: u64) -> Vec<Propose> {
        let mut out = Vec::new();
        for i in 0..self.flows.len() {
            if let Some(p) = self.flows[i].pending.take() {
                self.flows[i].pending = self.settle(p, now);
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
            });
            let (proposal, pending) = self.propose(node, stamp, now, kind, What::Presence);
            app.insert("\0presence".into(), pending);
            out.push((node, proposal));
        }
        let owned: Vec<(String, u64)> = state
            .active_workflows()
            .filter(|w| w.status == WorkflowStatus::Running && w.owner == node)
            .filter(|w| !app.contains_key(&w.id))
            .map(|w| (w.id.clone(), w.checkpoints.len() as u64))
            .collect();
        for (id, seq) in owned {
            let steps = self
                .flows
                .iter()
                .find(|f| f.id == id)
                .map_or(0, |f| f.steps);
            // Checkpoint sequence numbers start at 0.
            let (kind, what) = if seq < steps {
                *self.computed.entry((id.clone(), seq)).or_default() += 1;
                let value = Bytes::from(format!("{id}:{seq}"));
                (
                    Kind::RecordCheckpoint(RecordCheckpoint {
                        workflow_id: id.clone(),
                        seq,
                        checkpoint_name: format!("step-{seq}"),
                        value: value.clone(),
                        node_id: node,
                    }),
                    What::Checkpoint(id.clone(), seq, value),
                )
            } else {
                (
                    Kind::FinishWorkflow(FinishWorkflow {
                        workflow_id: id.clone(),
                        node_id: node,
                        success: true,
                        result: Bytes::from(format!("done:{id}")),
                        error: String::new(),
                    }),
                    What::Finish(id.clone()),
                )
            };
            let (proposal, pending) = self.propose(node, stamp, now, kind, what);
            app.insert(id, pending);
            out.push((node, proposal));
        }
        self.apps.insert(node, app);
        out
    }
}
