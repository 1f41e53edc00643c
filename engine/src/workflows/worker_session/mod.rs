//! [`WorkerSession`]: the sidecar's half of the app protocol, for one connected
//! app. It turns app messages into proposals and committed events into app
//! messages. Transport-agnostic: the sidecar feeds it a gRPC stream, embedded
//! mode an in-process channel.
//!
//! Order is part of the protocol: everything the app learns about one
//! workflow reaches it in commit order. Committed events carry their log
//! index; an execute request records the index of the state it was built
//! from, and older events for that workflow are skipped. Refusals of
//! proposals (computed on other tasks) pass through the session loop, which
//! first forwards every event committed before them.
//!
//! Imports the node, the state machine and the limits; never the APIs.

mod cancel;
mod dispatch;
mod proposals;
mod retry;
mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use raftoral_proto::sidecar::v1::{
    CheckpointProposal, ErrorCode, HeartbeatResponse, RegisterWorkflowRequest, RegistrationAck,
    WorkflowResult, WorkflowStatus, WorkflowStreamRequest, WorkflowStreamResponse,
    workflow_stream_request::Message as AppMsg, workflow_stream_response::Message as SidecarMsg,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::time::Instant;

use crate::error::EngineError;
use crate::node::Node;
use crate::workflows::state_machine::EventAt;
use crate::workflows::state_machine::{Workflow, WorkflowType};

pub use wire::{SessionStream, serve_app_stream};
use wire::{Subject, error_for, stream_error};

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd<E> {
    /// The app closed its side of the stream.
    AppClosed,
    /// The app's stream failed (connection reset, undecodable or oversized
    /// frame, ...); the transport's error.
    InboundError(E),
    /// Nobody reads the outbound side any more, or the app stopped reading
    /// it for longer than the app timeout.
    OutboundClosed,
    /// The app fell too far behind the committed events; it must reconnect
    /// and will be resynchronised from the state (replay).
    Lagged,
    /// The app sent nothing (not even a heartbeat) for the app timeout: a
    /// frozen app counts as gone, like a closed stream.
    Silent(Duration),
    /// The node could not make sure it had applied everything committed
    /// (no leader reachable): it must not hand out histories yet.
    NotCaughtUp(String),
    /// The node is shutting down.
    Shutdown,
}

/// A workflow this session runs.
struct Run {
    /// History entries the app has (sent, or declared held): the next
    /// entry to send is this one in commit order.
    sent: u64,
    /// Applied index of the state the execute request was built from: events
    /// up to it are already in what the app got.
    since: u64,
    /// What the app was last told about its ownership.
    is_owner: bool,
}

/// A proposal's refusal, from the task that awaited its commit.
struct Refusal {
    message: SidecarMsg,
}

/// One connected app, from the sidecar's side.
pub struct WorkerSession {
    node: Node,
    id: u64,
    out: mpsc::Sender<WorkflowStreamResponse>,
    registered: HashSet<WorkflowType>,
    /// Workflows this session runs.
    active: HashMap<String, Run>,
    /// Results of workflows this replica finished before the owner did.
    replica_results: HashMap<String, WorkflowResult>,
    /// Runs the app declared it holds from an earlier stream, with the
    /// committed checkpoints each knows: their histories are sent from
    /// there (`RegisterWorkflowRequest.held_runs`).
    held: HashMap<String, u64>,
    /// True once the node has applied everything committed before the
    /// session's first registration: only then are histories handed out.
    synced: bool,
    /// The app protocol the app declared (the highest of its
    /// registrations): below 2 it gets only plain histories.
    protocol: u32,
    refusals_tx: mpsc::UnboundedSender<Refusal>,
    refusals: mpsc::UnboundedReceiver<Refusal>,
    /// Bounds the proposals awaiting their commit (each may hold a value of
    /// up to the size limit): an app that floods waits for room.
    in_flight: Arc<Semaphore>,
    /// Proposals received together, proposed together once no other app
    /// message is waiting (`proposals.rs`).
    batch: Vec<(CheckpointProposal, OwnedSemaphorePermit)>,
    last_heard: Instant,
    /// Notices that this node was stopped (paused): what it would forward
    /// next is old news then, and its workflows may have moved.
    freeze: raftoral_proto::freeze::FreezeWatch,
}

/// Proposals of one session awaiting their commit at once.
const MAX_IN_FLIGHT: usize = 1024;

/// App messages handled in one go when they arrive together, before the
/// session looks at committed events again.
const READY_AT_ONCE: usize = 256;

impl WorkerSession {
    /// A session that writes sidecar messages to `out`.
    pub fn new(node: Node, out: mpsc::Sender<WorkflowStreamResponse>) -> Self {
        let id = node.new_session_id();
        let node_config = node.config().clone();
        let (refusals_tx, refusals) = mpsc::unbounded_channel();
        Self {
            node,
            id,
            out,
            registered: HashSet::new(),
            active: HashMap::new(),
            replica_results: HashMap::new(),
            held: HashMap::new(),
            synced: false,
            protocol: 0,
            refusals_tx,
            refusals,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            batch: Vec::new(),
            last_heard: Instant::now(),
            freeze: raftoral_proto::freeze::FreezeWatch::start(stall_limit(&node_config)),
        }
    }

    /// Runs until the app goes away or the node stops. Workflows this session
    /// ran are released so another session (or a reconnect) takes them over.
    pub async fn run<S, E>(mut self, inbound: S) -> SessionEnd<E>
    where
        S: Stream<Item = Result<WorkflowStreamRequest, E>> + Unpin,
        E: Display + std::fmt::Debug,
    {
        let (events, ()) = self.node.subscribe_with(|_| ());
        let end = self.serve(inbound, events).await;
        if !self.registered.is_empty() {
            self.node.app_left(self.registered.iter());
        }
        self.node.release_session(self.id);
        tracing::debug!(session = self.id, end = ?end, "app session ended");
        end
    }

    async fn serve<S, E>(
        &mut self,
        mut inbound: S,
        mut events: broadcast::Receiver<Arc<EventAt>>,
    ) -> SessionEnd<E>
    where
        S: Stream<Item = Result<WorkflowStreamRequest, E>> + Unpin,
        E: Display,
    {
        let mut shutdown = self.node.shutdown_signal();
        let app_timeout = self.node.config().app_timeout;
        let mut silence = tokio::time::interval(app_timeout / 4);
        silence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                _ = crate::shutdown::stopped(&mut shutdown) => return SessionEnd::Shutdown,
                message = inbound.next() => match message {
                    None => return SessionEnd::AppClosed,
                    Some(Err(e)) => return SessionEnd::InboundError(e),
                    Some(Ok(message)) => {
                        if let Some(end) = self.stopped_meanwhile() {
                            return end;
                        }
                        self.last_heard = Instant::now();
                        // Messages received together are handled together:
                        // proposals among them share one Raft append.
                        let mut handled = self.on_app_message(message).await;
                        let mut more = READY_AT_ONCE;
                        while handled.is_ok() && more > 0 {
                            match inbound.next().now_or_never() {
                                Some(Some(Ok(message))) => {
                                    handled = self.on_app_message(message).await;
                                    more -= 1;
                                }
                                Some(Some(Err(e))) => return SessionEnd::InboundError(e),
                                Some(None) | None => break,
                            }
                        }
                        handled.map(|()| self.flush_proposals())
                    }
                },
                event = events.recv() => match event {
                    Ok(event) => {
                        if let Some(end) = self.stopped_meanwhile() {
                            return end;
                        }
                        self.on_event(&event).await
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(session = self.id, skipped = n, "app session fell behind committed events; closing it so the app reconnects and replays");
                        return SessionEnd::Lagged;
                    }
                    Err(broadcast::error::RecvError::Closed) => return SessionEnd::Shutdown,
                },
                Some(refusal) = self.refusals.recv() => {
                    if let Some(end) = self.stopped_meanwhile() {
                        return end;
                    }
                    // Everything committed before the refused entry is in
                    // `events` already: forward it first, so the app learns
                    // of a commit (or an ownership change) before the
                    // refusal it explains.
                    match self.drain(&mut events).await {
                        Ok(()) => self.send(refusal.message).await,
                        Err(end) => Err(end),
                    }
                }
                _ = silence.tick() => {
                    if let Some(end) = self.stopped_meanwhile() {
                        return end;
                    }
                    // Only an app that registered has workflows to lose.
                    if !self.registered.is_empty() && self.last_heard.elapsed() > app_timeout {
                        // The session may have been busy for that long
                        // itself (a registration waits for a restarted
                        // node to catch up, then sends every running
                        // workflow): what the app sent meanwhile waits
                        // unread, and is not silence.
                        match inbound.next().now_or_never() {
                            Some(Some(Ok(message))) => {
                                self.last_heard = Instant::now();
                                self.on_app_message(message)
                                    .await
                                    .map(|()| self.flush_proposals())
                            }
                            Some(Some(Err(e))) => return SessionEnd::InboundError(e),
                            Some(None) => return SessionEnd::AppClosed,
                            None => {
                                tracing::warn!(session = self.id, silent_for = ?self.last_heard.elapsed(), "app sent nothing for the app timeout; treating it as gone");
                                return SessionEnd::Silent(app_timeout);
                            }
                        }
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(end) = step {
                return end.into_end();
            }
        }
    }

    /// Ends the session when this node was stopped for long enough that its
    /// workflows may have moved: the events it holds are old news (an app
    /// told of a commit made before the move would compute the next step as
    /// if it still owned the workflow). The app reconnects and gets the
    /// current state after a read barrier.
    fn stopped_meanwhile<E>(&mut self) -> Option<SessionEnd<E>> {
        let stopped = self.freeze.frozen()?;
        tracing::warn!(
            session = self.id,
            ?stopped,
            "this node was stopped; ending the app session so the app resyncs"
        );
        Some(SessionEnd::NotCaughtUp(format!(
            "this node was stopped for about {stopped:?}"
        )))
    }

    /// Handles every event already queued for this session.
    async fn drain(&mut self, events: &mut broadcast::Receiver<Arc<EventAt>>) -> Result<(), End> {
        loop {
            match events.try_recv() {
                Ok(event) => self.on_event(&event).await?,
                Err(broadcast::error::TryRecvError::Empty) => return Ok(()),
                Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(End::Lagged),
                Err(broadcast::error::TryRecvError::Closed) => return Err(End::Shutdown),
            }
        }
    }

    /// Sends one message; an app that does not read for the app timeout
    /// ends the session (its workflows are released), as a closed one does.
    async fn send(&self, message: SidecarMsg) -> Result<(), End> {
        let timeout = self.node.config().app_timeout;
        let response = WorkflowStreamResponse {
            message: Some(message),
        };
        match tokio::time::timeout(timeout, self.out.send(response)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::OutboundClosed),
            Err(_) => {
                tracing::warn!(
                    session = self.id,
                    "app has not read its stream for the app timeout; closing it"
                );
                Err(End::OutboundClosed)
            }
        }
    }

    async fn on_app_message(&mut self, message: WorkflowStreamRequest) -> Result<(), End> {
        // Anything but a proposal keeps its place after the proposals
        // received before it.
        if !matches!(message.message, Some(AppMsg::CheckpointProposal(_))) {
            self.flush_proposals();
        }
        match message.message {
            None => {
                self.send(stream_error(
                    ErrorCode::MalformedMessage,
                    "the message is empty: set one of register_workflow, checkpoint_proposal, workflow_result or heartbeat",
                    Subject::Message,
                    "",
                    0,
                ))
                .await
            }
            Some(AppMsg::Heartbeat(hb)) => {
                self.send(SidecarMsg::HeartbeatResponse(HeartbeatResponse {
                    timestamp: hb.timestamp,
                }))
                .await
            }
            Some(AppMsg::RegisterWorkflow(r)) => self.on_register(r).await,
            Some(AppMsg::CheckpointProposal(p)) => self.on_proposal(p).await,
            Some(AppMsg::WorkflowResult(r)) => self.on_result(r).await,
        }
    }

    async fn on_register(&mut self, r: RegisterWorkflowRequest) -> Result<(), End> {
        if let Err(e) = crate::workflows::limits::check_name("workflow_name", &r.workflow_name) {
            return self.send(error_for(&e, Subject::Registration, "", 0)).await;
        }
        // The ack echoes what the app asked for; the registry holds 0 as 1.
        let asked = r.version;
        let version = crate::workflows::limits::version_or_first(r.version);
        let r = RegisterWorkflowRequest { version, ..r };
        for run in &r.held_runs {
            self.held.insert(run.workflow_id.clone(), run.checkpoints);
        }
        self.protocol = self.protocol.max(r.protocol_version);
        let kind = (r.workflow_name.clone(), r.version);
        // Counted as live before the registration is proposed, so the
        // presence reconciler never proposes a set without it afterwards.
        if self.registered.insert(kind.clone()) {
            self.node.app_registered(self.registered.len() == 1, &kind);
        }
        // Retried through elections: an app that registered once expects to
        // get its workflows, not a lost registration.
        let mut attempt = 0;
        let mut backoff = retry::Backoff::new();
        loop {
            match self.node.register_worker(&r.workflow_name, r.version).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < REGISTER_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "registration not committed yet; retrying");
                    tokio::time::sleep(backoff.pause()).await;
                }
                Err(e) => {
                    return Err(End::NotCaughtUp(format!(
                        "the registration of '{}' could not be committed: {e}",
                        r.workflow_name
                    )));
                }
            }
        }
        // A node that restarted applies its committed log after it starts
        // serving. Handing out histories (or deciding ownership) from that
        // lagging state made apps recompute committed steps: first make
        // sure everything committed anywhere is applied here.
        if !self.synced {
            self.node
                .read_barrier()
                .await
                .map_err(|e| End::NotCaughtUp(e.to_string()))?;
            self.synced = true;
        }
        tracing::info!(session = self.id, workflow = %r.workflow_name, version = r.version, "app registered workflow");
        // Every running workflow of the type goes out before the ack, so an
        // app that reconnects knows, at the ack, that a run it still holds
        // and was not sent again is not running any more (it finished or
        // was cancelled while the app was away) and can end it.
        self.dispatch_all().await?;
        // Declared runs not dispatched are not running any more.
        for run in &r.held_runs {
            self.held.remove(&run.workflow_id);
        }
        let app_timeout = self.node.config().app_timeout;
        self.send(SidecarMsg::RegistrationAck(RegistrationAck {
            workflow_name: r.workflow_name,
            version: asked,
            heartbeat_interval_ms: (app_timeout / 4).as_millis().max(1) as u64,
        }))
        .await
    }

    async fn on_result(&mut self, r: WorkflowResult) -> Result<(), End> {
        if r.workflow_id.is_empty() {
            return self
                .send(stream_error(
                    ErrorCode::MalformedMessage,
                    "workflow_result needs a workflow_id",
                    Subject::WorkflowResult,
                    "",
                    0,
                ))
                .await;
        }
        // A replica's result is not an outcome: it is checked against the
        // owner's committed one (now, or when the workflow finishes).
        if let Some(wf) = self.node.workflow(&r.workflow_id)
            && wf.owner != self.node.id()
            && (self.active.contains_key(&r.workflow_id) || wf.is_terminal())
        {
            if wf.is_terminal() {
                self.compare_with_owner(&wf, &r);
            } else {
                self.replica_results.insert(r.workflow_id.clone(), r);
            }
            return Ok(());
        }
        if !self.active.contains_key(&r.workflow_id) {
            return self
                .send(self.not_running_here(Subject::WorkflowResult, &r.workflow_id, 0))
                .await;
        }
        self.propose_result(r);
        Ok(())
    }

    /// Commits a workflow's result as its owner's, off the session loop.
    fn propose_result(&self, r: WorkflowResult) {
        let node = self.node.clone();
        let refusals = self.refusals_tx.clone();
        tokio::spawn(async move {
            let outcome = if r.success {
                Ok(r.result)
            } else {
                Err(r.error)
            };
            let failure = r.failure;
            // The app reports a result once and forgets the run, so the
            // session keeps proposing it through elections and lost
            // forwards: without this a workflow whose result was lost would
            // stay running with all its work done. A retry that finds the
            // workflow already finished is the earlier attempt's success.
            let settled = retry::until_settled(
                &node,
                || node.finish_workflow(&r.workflow_id, outcome.clone(), failure.clone()),
                |e| {
                    node.note_result_retry();
                    tracing::debug!(workflow = %r.workflow_id, error = %e, "workflow result not committed yet; retrying");
                },
            )
            .await;
            match settled {
                None | Some(Ok(())) => {}
                Some(Err(EngineError::Rejected(crate::Rejection::NotRunning {
                    status, ..
                }))) if crate::is_terminal(status) => {}
                Some(Err(e)) => {
                    tracing::debug!(workflow = %r.workflow_id, error = %e, "workflow result refused");
                    let _ = refusals.send(Refusal {
                        message: error_for(&e, Subject::WorkflowResult, &r.workflow_id, 0),
                    });
                }
            }
        });
    }

    /// Reports non-determinism when a replica's result differs from the
    /// owner's committed outcome.
    fn compare_with_owner(&self, wf: &Workflow, r: &WorkflowResult) {
        let same = match wf.status {
            WorkflowStatus::Completed => r.success && same_result(&r.result, &wf.result),
            WorkflowStatus::Failed => !r.success && r.error == wf.error,
            // Cancelled: replicas report nothing; nothing to compare.
            _ => true,
        };
        if !same {
            self.node.report_nondeterminism();
            tracing::warn!(
                workflow = %wf.id,
                owner = wf.owner,
                replica = self.node.id(),
                owner_success = wf.status == WorkflowStatus::Completed,
                replica_success = r.success,
                replica_error = %r.error,
                "non-determinism: this replica's result differs from the owner's committed result"
            );
        }
    }

    /// The error for a message about a workflow this session does not run:
    /// unknown, not running any more (say, cancelled: the app's run should
    /// end quietly), or run by another session.
    fn not_running_here(&self, subject: Subject, workflow_id: &str, seq: u64) -> SidecarMsg {
        let Some(wf) = self.node.workflow(workflow_id) else {
            return stream_error(
                ErrorCode::UnknownWorkflow,
                &format!("workflow '{workflow_id}' does not exist"),
                subject,
                workflow_id,
                seq,
            );
        };
        if wf.status != WorkflowStatus::Running {
            let e = EngineError::Rejected(crate::Rejection::NotRunning {
                workflow_id: workflow_id.to_owned(),
                status: wf.status,
            });
            return error_for(&e, subject, workflow_id, seq);
        }
        stream_error(
            ErrorCode::NotOwner,
            &format!(
                "workflow '{workflow_id}' is not running on this app session; only the session that \
                 received its ExecuteWorkflowRequest may send checkpoints and results"
            ),
            subject,
            workflow_id,
            seq,
        )
    }
}

/// Why a step of the session loop ends the session.
enum End {
    OutboundClosed,
    Lagged,
    NotCaughtUp(String),
    Shutdown,
}

impl End {
    fn into_end<E>(self) -> SessionEnd<E> {
        match self {
            End::OutboundClosed => SessionEnd::OutboundClosed,
            End::Lagged => SessionEnd::Lagged,
            End::NotCaughtUp(reason) => SessionEnd::NotCaughtUp(reason),
            End::Shutdown => SessionEnd::Shutdown,
        }
    }
}

/// A stop of the node longer than this ends its app sessions: half the
/// owner timeout (after which its workflows may move), at least 500 ms so
/// the scheduling hiccups of a busy machine do not count.
fn stall_limit(config: &crate::config::NodeConfig) -> std::time::Duration {
    (config.owner_timeout / 2).max(std::time::Duration::from_millis(500))
}

/// Attempts to commit a registration before the session gives up: with the
/// backoff's pauses (20 ms doubling to 1 s), about 5 s of trying, as before
/// the backoff (50 tries 100 ms apart).
const REGISTER_ATTEMPTS: u32 = 10;

/// Two encoded results are the same outcome: the same bytes, or the same
/// JSON value (languages write object keys in different orders: Rust sorts
/// them, Python and JavaScript keep insertion order, so a mixed cluster's
/// replicas would otherwise report false non-determinism). Parsed only when
/// the bytes differ.
fn same_result(a: &[u8], b: &[u8]) -> bool {
    a == b
        || matches!(
            (
                serde_json::from_slice::<serde_json::Value>(a),
                serde_json::from_slice::<serde_json::Value>(b),
            ),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod result_tests {
    use super::same_result;

    #[test]
    fn results_compare_as_json_values_whatever_the_key_order() {
        assert!(same_result(
            br#"{"a":1,"b":[2,3]}"#,
            br#"{"b":[2,3],"a":1}"#
        ));
        assert!(
            same_result(b"\x00raw", b"\x00raw"),
            "non-JSON bytes: equal bytes"
        );
        assert!(!same_result(br#"{"a":1}"#, br#"{"a":2}"#));
        assert!(!same_result(b"\x00raw", b"\x00raW"));
        assert!(!same_result(b"1", b"1.5"));
    }
}
