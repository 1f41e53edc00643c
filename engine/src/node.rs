//! [`Node`]: a running Raftoral node and the API the sidecar and embedded apps
//! call.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::FutureExt as _;
use raftoral_proto::cluster::v1::{
    Command, SetWorkerPresence, WorkflowType as TypeMsg, command::Kind,
};
use raftoral_proto::sidecar::v1::WorkflowStatus;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::consensus::proposal::{Proposal, ProposalReply, random_u64};
use crate::consensus::raft_loop::{LoopInputs, RaftLoop, RaftStatus};
use crate::consensus::snapshot_transfer::SnapshotTransfers;
use crate::consensus::storage::RaftStore;
use crate::consensus::transport::{Faults, Transport};
use crate::error::{EngineError, ProbeFailure};
use crate::workflows::state_machine::{
    Applied, Event, EventAt, NodeId, StateMachine, Workflow, WorkflowType,
};

/// Raft messages queued from peers before new ones are dropped.
const INBOUND_QUEUE: usize = 8192;

/// Outcome of [`Node::start_workflow`].
#[derive(Debug, Clone)]
pub struct Started {
    /// The workflow right after the start was applied.
    pub workflow: Workflow,
    /// True when the id existed already; nothing was started.
    pub already_started: bool,
}

/// Filter and paging for [`Node::list_workflows`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status; `Unspecified` means any.
    pub status: WorkflowStatus,
    /// Only this workflow type; empty means any.
    pub workflow_name: String,
    /// Page size; 0 means 100, capped at 1000.
    pub page_size: usize,
    /// Return workflows with ids after this one (the previous page's last id).
    pub after: String,
    /// Only workflows waiting on a durable timer.
    pub sleeping: bool,
    /// Only the children of this workflow (empty: any).
    pub parent: String,
}

/// A running Raftoral node: one Raft group, its state machine and the local
/// bookkeeping of which app session runs which workflow.
///
/// Cloning is cheap; all clones drive the same node.
///
/// ```no_run
/// # async fn demo() -> Result<(), raftoral::EngineError> {
/// use raftoral::{Node, NodeConfig};
/// let node = Node::start(NodeConfig::default()).await?;
/// let started = node.start_workflow(None, "ping_pong", 1, "\"ping\"".into()).await?;
/// println!("{} is {:?}", started.workflow.id, started.workflow.status);
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    state: Arc<RwLock<StateMachine>>,
    events: broadcast::Sender<Arc<EventAt>>,
    proposals: mpsc::Sender<Proposal>,
    inbound: mpsc::Sender<raft::prelude::Message>,
    transport: Arc<Transport>,
    store: RaftStore,
    /// Snapshot transfers to and from peers.
    snapshots: Arc<SnapshotTransfers>,
    /// Why the Raft loop stopped on its own.
    failure: Arc<Mutex<Option<ProbeFailure>>>,
    next_proposal: AtomicU64,
    /// The stamps of this node's proposals, shared with the Raft loop.
    log_clock: Arc<crate::consensus::log_clock::LogClock>,
    status: watch::Receiver<RaftStatus>,
    /// workflow id → app session that runs it on this node.
    claims: Mutex<HashMap<String, u64>>,
    next_session: AtomicU64,
    /// Replica results that differed from the owner's.
    nondeterminism: AtomicU64,
    /// Workflow results whose commit failed retryably and was tried again.
    result_retries: AtomicU64,
    /// ReadIndex requests sent again because no answer came in time.
    read_retries: AtomicU64,
    /// Connected app sessions with registrations and what they can run
    /// (drives the replicated presence).
    apps: watch::Sender<LocalApps>,
    shutdown: watch::Sender<bool>,
    raft_task: Mutex<Option<JoinHandle<()>>>,
    /// Turns true once the Raft loop has ended and its outcome is recorded.
    loop_done: watch::Receiver<bool>,
}

impl Node {
    /// Starts the node: a new cluster (from `peers`, or alone), a node that
    /// waits to be added (`join`), or a restart from `storage_path`. A node
    /// alone in its cluster elects itself and is ready on return.
    pub async fn start(config: NodeConfig) -> Result<Node, EngineError> {
        config.validate()?;
        let id = config.node_id;
        // Unusable TLS files stop the start here, before the log is opened.
        let tls = match &config.tls {
            Some(files) => Some(
                crate::consensus::tls::Tls::load(files.clone())
                    .map_err(|e| EngineError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let opened = crate::consensus::startup::open(&config)?;
        let mut raw = opened.raw;
        if opened.alone {
            // A group of one elects itself at once instead of waiting for an
            // election timeout.
            raw.campaign()?;
        }
        let mut addresses: HashMap<NodeId, String> = opened
            .state
            .member_addresses()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        addresses.extend(config.peers.iter().map(|(k, v)| (*k, v.clone())));
        addresses.remove(&id);

        let cluster_id = opened.state.cluster_id().to_owned();
        let state = Arc::new(RwLock::new(opened.state));
        let (events, _) = broadcast::channel(config.event_buffer);
        let (proposals_tx, proposals_rx) = mpsc::channel(config.proposal_queue);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (unreachable_tx, unreachable_rx) = mpsc::channel(64);
        let (status_tx, mut status_rx) = watch::channel(RaftStatus::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let transport = Arc::new(Transport::new(
            id,
            config.advertise.clone(),
            addresses,
            unreachable_tx,
            shutdown_rx.clone(),
            Faults::default(),
            tls.clone(),
        ));
        if let Some(tls) = &tls {
            tls.watch(config.tls_reload_interval, shutdown_rx.clone());
        }
        transport.set_cluster_id(&cluster_id);
        let store = raw.store().clone();
        let snapshots = Arc::new(SnapshotTransfers::new(
            config.storage_path.clone(),
            config.snapshot_chunk_bytes,
            config.max_frame_bytes,
        ));
        let raft_loop = RaftLoop::new(
            raw,
            state.clone(),
            events.clone(),
            status_tx,
            crate::consensus::environment::Environment::process(
                transport.clone(),
                snapshots.clone(),
                shutdown_rx.clone(),
            ),
            snapshots.clone(),
            config.clone(),
        );
        // Readers (probes, metrics, waiters) see the real membership and
        // indexes from the start, not an empty default.
        raft_loop.publish_status();
        let log_clock = raft_loop.log_clock();
        let failure = Arc::new(Mutex::new(None));
        let (loop_done_tx, loop_done) = watch::channel(false);
        let task = {
            let failure = failure.clone();
            let shutdown_tx = shutdown_tx.clone();
            let state = state.clone();
            let mut inputs = LoopInputs {
                proposals: proposals_rx,
                inbound: inbound_rx,
                unreachable: unreachable_rx,
                shutdown: shutdown_rx,
            };
            tokio::spawn(async move {
                // Whatever ends the loop (a storage failure, a panic in
                // raft-rs or here, or an exit nobody asked for) is recorded
                // and stops the node: health then fails and the sidecar exits
                // with an error, instead of a process that answers
                // "shutting down" forever while its probes say ok.
                let ended = AssertUnwindSafe(raft_loop.run(&mut inputs))
                    .catch_unwind()
                    .await;
                let failed = match ended {
                    Ok(Ok(())) if *shutdown_tx.borrow() => None,
                    Ok(Ok(())) => Some(ProbeFailure::Stopped(
                        "the Raft loop ended although no shutdown was requested; restart it".into(),
                    )),
                    Ok(Err(e)) => Some(ProbeFailure::StorageFailed(e.to_string())),
                    Err(panic) => Some(ProbeFailure::Stopped(format!(
                        "the Raft loop panicked: {}; restart it",
                        panic_message(panic.as_ref())
                    ))),
                };
                if let Some(failed) = failed {
                    tracing::error!(reason = %failed, "the node stops");
                    *failure.lock().expect("failure lock") = Some(failed);
                    shutdown_tx.send_replace(true);
                }
                // The store's file is released, so the node can be started
                // again in this process (embedded apps, tests).
                state
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .close_archive();
                // Closes the queues only now: a caller that finds them closed
                // finds the failure recorded too.
                drop(inputs);
                loop_done_tx.send_replace(true);
            })
        };
        if opened.alone {
            // The campaign is decided in the first Ready round; wait for it so
            // the first proposal does not race the election.
            let elected =
                tokio::time::timeout(config.proposal_timeout, status_rx.wait_for(|s| s.is_leader))
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false);
            if !elected {
                return Err(EngineError::NoLeader { node: id });
            }
        }
        tracing::info!(
            node = id,
            restarted = opened.restarted,
            storage = ?config.storage_path,
            join = config.join,
            "raftoral node started"
        );
        let node = Node {
            inner: Arc::new(Inner {
                config,
                state,
                events,
                proposals: proposals_tx,
                inbound: inbound_tx,
                transport,
                store,
                snapshots,
                failure,
                // Replies are matched on (proposer, proposal id), and an entry
                // proposed by an earlier run of this node may still be
                // applied after a restart: a random start keeps the ids of
                // two runs apart. Below 2^63, so the counter never wraps to 0
                // (the id of proposals nobody waits for).
                next_proposal: AtomicU64::new((random_u64() >> 1) + 1),
                log_clock,
                status: status_rx,
                claims: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
                apps: watch::channel(LocalApps::default()).0,
                nondeterminism: AtomicU64::new(0),
                result_retries: AtomicU64::new(0),
                read_retries: AtomicU64::new(0),
                shutdown: shutdown_tx,
                raft_task: Mutex::new(Some(task)),
                loop_done,
            }),
        };
        tokio::spawn(reconcile_presence(node.clone()));
        Ok(node)
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Current Raft role, leader and indexes.
    pub fn raft_status(&self) -> RaftStatus {
        self.inner.status.borrow().clone()
    }

    /// Changes of the Raft status: it is published after every round of
    /// the Raft loop that applied entries or changed roles.
    pub(crate) fn status_changes(&self) -> watch::Receiver<RaftStatus> {
        self.inner.status.clone()
    }

    /// Waits until `check` holds for the Raft status, or `timeout` passes.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        check: impl FnMut(&RaftStatus) -> bool,
    ) -> bool {
        let mut rx = self.inner.status.clone();
        tokio::time::timeout(timeout, async move { rx.wait_for(check).await.is_ok() })
            .await
            .unwrap_or(false)
    }

    /// True once the node has begun to shut down.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Connected app sessions that registered workflows.
    pub fn connected_apps(&self) -> usize {
        self.inner.apps.borrow().sessions
    }

    /// Why the node stopped on its own, if it did (a storage failure, or
    /// its Raft loop ended by a panic or otherwise), as one sentence.
    pub fn failure(&self) -> Option<String> {
        self.stopped_because().map(|f| f.to_string())
    }

    /// Stops the node because a task it cannot run without failed (say,
    /// joining the cluster, or a server): health fails with `reason` from
    /// now on and the shutdown signal is raised. The first failure recorded
    /// is the one reported.
    pub fn stop_with_failure(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(%reason, "the node stops");
        self.inner
            .failure
            .lock()
            .expect("failure lock")
            .get_or_insert(ProbeFailure::Stopped(reason));
        self.inner.shutdown.send_replace(true);
    }

    /// Why the node stopped on its own, for the probes.
    pub(crate) fn stopped_because(&self) -> Option<ProbeFailure> {
        self.inner.failure.lock().expect("failure lock").clone()
    }

    /// The error for a call that found the Raft loop gone: its storage
    /// failure, if that is why, or a plain shutdown.
    pub(crate) fn stopped_error(&self) -> EngineError {
        match self.failure() {
            Some(reason) => EngineError::StorageFailed(reason),
            None => EngineError::ShuttingDown,
        }
    }

    /// Waits until the node stops (shutdown or storage failure) and returns
    /// the storage failure, if that is why. An embedding app uses it to learn
    /// that its node is gone and restart it or exit.
    pub async fn stopped(&self) -> Option<String> {
        let _ = self.inner.loop_done.clone().wait_for(|done| *done).await;
        self.failure()
    }

    /// Snapshot transfers to and from peers (counters, test hooks).
    pub fn snapshot_transfers(&self) -> &Arc<SnapshotTransfers> {
        &self.inner.snapshots
    }

    /// The node-to-node transport (addresses, fault injection).
    pub fn transport(&self) -> &Arc<Transport> {
        &self.inner.transport
    }

    /// The node-to-node TLS material, when mutual TLS is on: serve the
    /// node-to-node port with [`crate::consensus::tls::incoming`] over it.
    pub fn tls(&self) -> Option<&Arc<crate::consensus::tls::Tls>> {
        self.inner.transport.tls()
    }

    /// The Raft log store.
    pub fn store(&self) -> &RaftStore {
        &self.inner.store
    }

    /// Hands raft messages received from a peer to the Raft loop; dropped
    /// when the loop is saturated (Raft retransmits).
    pub fn step(&self, message: raft::prelude::Message) {
        if message.get_msg_type() == raft::prelude::MessageType::MsgSnapshot
            && self.inner.transport.faults().drops_snapshot()
        {
            return;
        }
        if self.inner.inbound.try_send(message).is_err() {
            tracing::debug!("raft inbound queue full; message dropped");
        }
    }

    /// Turns true when the node begins to shut down; app sessions and
    /// waiters end on it.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Stops the Raft loop and waits for it. Pending proposals fail with
    /// [`EngineError::ShuttingDown`].
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send_replace(true);
        let task = self.inner.raft_task.lock().expect("lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Proposes one command and waits until it is applied (or rejected).
    pub async fn propose(&self, kind: Kind) -> Result<Applied, EngineError> {
        let (command, reply, answer) = self.command(kind);
        self.submit(Proposal::Command { command, reply }, answer)
            .await
    }

    /// Proposes `kinds` together: one input of the Raft loop, so they are
    /// appended and made durable as one batch (a step each, sent side by
    /// side by an app, cost one fsync instead of two or more). One outcome
    /// per command, in order.
    pub async fn propose_all(&self, kinds: Vec<Kind>) -> Vec<Result<Applied, EngineError>> {
        let (commands, answers): (Vec<_>, Vec<_>) = kinds
            .into_iter()
            .map(|kind| {
                let (command, reply, answer) = self.command(kind);
                ((command, reply), answer)
            })
            .unzip();
        if let Err(e) = self.hand_to_loop(Proposal::Commands(commands)).await {
            let each = || match &e {
                EngineError::ProposalTimeout(t) => EngineError::ProposalTimeout(*t),
                _ => self.stopped_error(),
            };
            return answers.iter().map(|_| Err(each())).collect();
        }
        futures::future::join_all(answers.into_iter().map(|a| self.outcome(a))).await
    }

    /// The stamp of a proposal made now (see `consensus/log_clock.rs`).
    pub(crate) fn stamp(&self) -> u64 {
        self.inner.log_clock.stamp()
    }

    /// A command of this node, stamped, with the channel of its outcome.
    fn command(
        &self,
        kind: Kind,
    ) -> (
        Command,
        ProposalReply,
        oneshot::Receiver<Result<Applied, EngineError>>,
    ) {
        let command = Command {
            proposer_node_id: self.id(),
            proposal_id: self.next_proposal_id(),
            proposed_at_ms: self.stamp(),
            kind: Some(kind),
        };
        let (reply, answer) = oneshot::channel();
        (command, reply, answer)
    }

    /// Hands a request to the Raft loop within the proposal timeout.
    pub(crate) async fn queue(&self, proposal: Proposal) -> Result<(), EngineError> {
        let timeout = self.inner.config.proposal_timeout;
        match tokio::time::timeout(timeout, self.inner.proposals.send(proposal)).await {
            Err(_) => Err(EngineError::ProposalTimeout(timeout)),
            Ok(Err(_)) => Err(self.stopped_error()),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// [`queue`](Self::queue) for a change of the log: during an election
    /// there is no leader to forward to, so it first waits for one (within
    /// the same deadline) instead of failing the caller at once.
    async fn hand_to_loop(&self, proposal: Proposal) -> Result<(), EngineError> {
        if self.raft_status().leader_id == 0 {
            let timeout = self.inner.config.proposal_timeout;
            self.wait_status(timeout, |s| s.leader_id != 0).await;
        }
        self.queue(proposal).await
    }

    /// The outcome of a queued proposal, within the proposal timeout.
    async fn outcome(
        &self,
        answer: oneshot::Receiver<Result<Applied, EngineError>>,
    ) -> Result<Applied, EngineError> {
        let timeout = self.inner.config.proposal_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(EngineError::ProposalTimeout(timeout)),
            Ok(Err(_)) => Err(self.stopped_error()),
            Ok(Ok(outcome)) => outcome,
        }
    }

    /// Queues a proposal and waits for its outcome, each with a deadline.
    pub(crate) async fn submit(
        &self,
        proposal: Proposal,
        answer: oneshot::Receiver<Result<Applied, EngineError>>,
    ) -> Result<Applied, EngineError> {
        self.hand_to_loop(proposal).await?;
        self.outcome(answer).await
    }

    /// Reads the state machine.
    pub fn read<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> T {
        f(&self.inner.state.read().expect("state lock poisoned"))
    }

    /// [`read`](Self::read) for answers to clients: an error instead of a
    /// wrong answer (a workflow called missing) when the state store could
    /// not be read, by this read or an earlier one (the node stops then).
    pub fn read_checked<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> Result<T, EngineError> {
        let state = self.inner.state.read().expect("state lock poisoned");
        let value = f(&state);
        match state.archive_failure() {
            Some(failure) => Err(EngineError::StorageFailed(failure)),
            None => Ok(value),
        }
    }

    /// Subscribes to events and reads the state atomically: every event
    /// received afterwards happened after what `f` saw.
    pub fn subscribe_with<T>(
        &self,
        f: impl FnOnce(&StateMachine) -> T,
    ) -> (broadcast::Receiver<Arc<EventAt>>, T) {
        let state = self.inner.state.read().expect("state lock poisoned");
        let rx = self.inner.events.subscribe();
        (rx, f(&state))
    }

    /// An app session registered `kind` (`first`: its first registration):
    /// this node's app can run it.
    pub(crate) fn app_registered(&self, first: bool, kind: &WorkflowType) {
        self.inner.apps.send_modify(|apps| {
            apps.sessions += usize::from(first);
            *apps.types.entry(kind.clone()).or_default() += 1;
        });
    }

    /// An app session that registered `kinds` ended.
    pub(crate) fn app_left<'a>(&self, kinds: impl IntoIterator<Item = &'a WorkflowType>) {
        self.inner.apps.send_modify(|apps| {
            apps.sessions = apps.sessions.saturating_sub(1);
            for kind in kinds {
                if let Some(n) = apps.types.get_mut(kind) {
                    *n -= 1;
                    if *n == 0 {
                        apps.types.remove(kind);
                    }
                }
            }
        });
    }

    /// Tells this node's subscribers about a node-local event.
    pub(crate) fn notify_local(&self, event: Event) {
        let index = self.raft_status().applied_index;
        let _ = self.inner.events.send(Arc::new(EventAt { index, event }));
    }

    /// Counts a workflow result proposed again after a retryable failure.
    pub(crate) fn note_result_retry(&self) {
        self.inner.result_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Workflow results this node's sessions had to propose again because
    /// an attempt failed retryably (no leader, leader change, timeout);
    /// non-zero after elections or partitions, and each retried result was
    /// kept rather than lost.
    pub fn result_retries(&self) -> u64 {
        self.inner.result_retries.load(Ordering::Relaxed)
    }

    /// Counts a ReadIndex request sent again after no answer came.
    pub(crate) fn note_read_retry(&self) {
        self.inner.read_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// ReadIndex requests of read barriers sent again because the first
    /// got no answer within an election timeout (lost with a leader that
    /// stepped down, or dropped by a leader not settled in its term).
    pub fn read_retries(&self) -> u64 {
        self.inner.read_retries.load(Ordering::Relaxed)
    }

    /// Counts a replica result that differed from the owner's.
    pub(crate) fn report_nondeterminism(&self) {
        self.inner.nondeterminism.fetch_add(1, Ordering::Relaxed);
    }

    /// Replica results on this node that differed from the owner's committed
    /// result since the node started.
    pub fn nondeterminism_reports(&self) -> u64 {
        self.inner.nondeterminism.load(Ordering::Relaxed)
    }

    /// A new proposal id, unique on this node across restarts.
    pub(crate) fn next_proposal_id(&self) -> u64 {
        self.inner.next_proposal.fetch_add(1, Ordering::Relaxed)
    }

    /// A new id for an app session on this node.
    pub fn new_session_id(&self) -> u64 {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Claims a workflow for an app session: exactly one session per node runs
    /// a workflow. True when `session` holds the claim afterwards.
    pub fn claim(&self, workflow_id: &str, session: u64) -> bool {
        let mut claims = self.inner.claims.lock().expect("claims lock");
        *claims.entry(workflow_id.to_owned()).or_insert(session) == session
    }

    /// Drops one claim (the workflow finished).
    pub fn release(&self, workflow_id: &str, session: u64) {
        let mut claims = self.inner.claims.lock().expect("claims lock");
        if claims.get(workflow_id) == Some(&session) {
            claims.remove(workflow_id);
        }
    }

    /// Drops every claim of a session that ended and tells the other sessions,
    /// so one of them can take the workflows over.
    pub fn release_session(&self, session: u64) {
        let released = {
            let mut claims = self.inner.claims.lock().expect("claims lock");
            let before = claims.len();
            claims.retain(|_, s| *s != session);
            before != claims.len()
        };
        if released {
            self.notify_local(Event::SessionsChanged);
        }
    }

    /// Refuses a value over `max_value_bytes`, naming what it was.
    pub(crate) fn check_value_size(&self, what: &str, len: usize) -> Result<(), EngineError> {
        let max = self.inner.config.max_value_bytes;
        if len > max {
            return Err(EngineError::ValueTooLarge {
                what: what.to_owned(),
                len,
                max,
            });
        }
        Ok(())
    }
}

/// The app sessions connected to this node, as presence needs them.
#[derive(Debug, Default)]
pub(crate) struct LocalApps {
    /// Sessions that registered at least one workflow type.
    sessions: usize,
    /// Registered types → sessions that registered them.
    types: std::collections::BTreeMap<WorkflowType, usize>,
}

/// Keeps the replicated presence of this node (which workflow types its
/// connected apps can run) equal to the local truth. One task, so changes
/// are proposed in order; a failed proposal is retried on the next tick.
async fn reconcile_presence(node: Node) {
    let mut apps = node.inner.apps.subscribe();
    let mut shutdown = node.shutdown_signal();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = apps.changed() => {}
            _ = tick.tick() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        }
        let desired: std::collections::BTreeSet<WorkflowType> =
            apps.borrow_and_update().types.keys().cloned().collect();
        let (replicated, level) = node.read(|sm| {
            (
                sm.live_types(node.id()),
                sm.recorded_command_level(node.id()),
            )
        });
        let current = level == crate::workflows::state_machine::COMMAND_LEVEL;
        if (desired != replicated || !current) && node.raft_status().leader_id != 0 {
            let change = Kind::SetWorkerPresence(SetWorkerPresence {
                node_id: node.id(),
                present: !desired.is_empty(),
                live: desired
                    .iter()
                    .map(|(name, version)| TypeMsg {
                        workflow_name: name.clone(),
                        version: *version,
                    })
                    .collect(),
                // Recorded with the presence, so the cluster knows when
                // every member applies the newest commands.
                command_level: crate::workflows::state_machine::COMMAND_LEVEL,
            });
            if let Err(e) = node.propose(change).await {
                tracing::debug!(error = %e, "presence not recorded yet; retrying");
            }
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn proposal_ids_of_two_runs_do_not_overlap() {
        // Two starts stand for two runs of one node: ids restarting at the
        // same value would let an entry of the first run, applied after a
        // restart, answer a proposal of the second.
        let first = Node::start(NodeConfig::default()).await.unwrap();
        let a = first.next_proposal_id();
        first.shutdown().await;
        let second = Node::start(NodeConfig::default()).await.unwrap();
        let b = second.next_proposal_id();
        second.shutdown().await;
        assert_ne!(a, b, "both runs start their proposal ids at {a}");
        assert!(a != 0 && b != 0, "0 is the id of unanswered proposals");
    }
}
