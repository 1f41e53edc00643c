//! [`WorkerSession`]: the sidecar's half of the app protocol, for one connected
//! app. It turns app messages into proposals and committed events into app
//! messages. Transport-agnostic: the sidecar feeds it a gRPC stream, embedded
//! mode an in-process channel.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointProposal, CheckpointRecord, ErrorCode, ExecuteWorkflowRequest,
    HeartbeatResponse, OwnershipChange, RegisterWorkflowRequest, RegistrationAck, StreamError,
    WorkflowCancellation, WorkflowResult, WorkflowStatus, WorkflowStreamRequest,
    WorkflowStreamResponse, workflow_stream_request::Message as AppMsg,
    workflow_stream_response::Message as SidecarMsg,
};
use tokio::sync::{broadcast, mpsc};

use crate::error::EngineError;
use crate::event::Event;
use crate::node::Node;
use crate::state_machine::Workflow;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd<E> {
    /// The app closed its side of the stream.
    AppClosed,
    /// The app's stream failed (connection reset, undecodable or oversized
    /// frame, ...); the transport's error.
    InboundError(E),
    /// Nobody reads the outbound side any more.
    OutboundClosed,
    /// The app fell too far behind the committed events; it must reconnect
    /// and will be resynchronised from the state (replay).
    Lagged,
    /// The node is shutting down.
    Shutdown,
}

/// One connected app, from the sidecar's side.
pub struct WorkerSession {
    node: Node,
    id: u64,
    out: mpsc::Sender<WorkflowStreamResponse>,
    registered: HashSet<(String, u32)>,
    /// Workflows this session runs → next checkpoint seq to send.
    active: HashMap<String, u64>,
    /// Results of workflows this replica finished before the owner did.
    replica_results: HashMap<String, WorkflowResult>,
}

impl WorkerSession {
    /// A session that writes sidecar messages to `out`.
    pub fn new(node: Node, out: mpsc::Sender<WorkflowStreamResponse>) -> Self {
        let id = node.new_session_id();
        Self {
            node,
            id,
            out,
            registered: HashSet::new(),
            active: HashMap::new(),
            replica_results: HashMap::new(),
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
            self.node.app_left();
        }
        self.node.release_session(self.id);
        tracing::debug!(session = self.id, end = ?end, "app session ended");
        end
    }

    async fn serve<S, E>(
        &mut self,
        mut inbound: S,
        mut events: broadcast::Receiver<Arc<Event>>,
    ) -> SessionEnd<E>
    where
        S: Stream<Item = Result<WorkflowStreamRequest, E>> + Unpin,
        E: Display,
    {
        let mut shutdown = self.node.shutdown_signal();
        loop {
            let step = tokio::select! {
                _ = crate::node::stopped(&mut shutdown) => return SessionEnd::Shutdown,
                message = inbound.next() => match message {
                    None => return SessionEnd::AppClosed,
                    Some(Err(e)) => return SessionEnd::InboundError(e),
                    Some(Ok(message)) => self.on_app_message(message).await,
                },
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(session = self.id, skipped = n, "app session fell behind committed events; closing it so the app reconnects and replays");
                        return SessionEnd::Lagged;
                    }
                    Err(broadcast::error::RecvError::Closed) => return SessionEnd::Shutdown,
                },
            };
            if let Err(end) = step {
                return end.into_end();
            }
        }
    }

    async fn send(&self, message: SidecarMsg) -> Result<(), OutboundClosed> {
        self.out
            .send(WorkflowStreamResponse {
                message: Some(message),
            })
            .await
            .map_err(|_| OutboundClosed)
    }

    async fn on_app_message(
        &mut self,
        message: WorkflowStreamRequest,
    ) -> Result<(), OutboundClosed> {
        match message.message {
            None => {
                self.send(stream_error(
                    ErrorCode::MalformedMessage,
                    "the message is empty: set one of register_workflow, checkpoint_proposal, workflow_result or heartbeat",
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

    async fn on_register(&mut self, r: RegisterWorkflowRequest) -> Result<(), OutboundClosed> {
        // Retried through elections: an app that registered once expects to
        // get its workflows, not a lost registration.
        let mut attempt = 0;
        loop {
            match self.node.register_worker(&r.workflow_name, r.version).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < REGISTER_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "registration not committed yet; retrying");
                    tokio::time::sleep(RESULT_RETRY).await;
                }
                Err(e) => return self.send(error_for(&e, "", 0)).await,
            }
        }
        tracing::info!(session = self.id, workflow = %r.workflow_name, version = r.version, "app registered workflow");
        self.send(SidecarMsg::RegistrationAck(RegistrationAck {
            workflow_name: r.workflow_name.clone(),
            version: r.version,
        }))
        .await?;
        if self.registered.is_empty() {
            self.node.app_arrived();
        }
        self.registered.insert((r.workflow_name, r.version));
        self.dispatch_all().await
    }

    /// Sends every running workflow this app can run and nobody on this node
    /// runs yet, with its history.
    async fn dispatch_all(&mut self) -> Result<(), OutboundClosed> {
        let candidates: Vec<Workflow> = self.node.read(|sm| {
            sm.workflows()
                .filter(|w| {
                    w.status == WorkflowStatus::Running
                        && !self.active.contains_key(&w.id)
                        && self.registered.contains(&(w.name.clone(), w.version))
                })
                .cloned()
                .collect()
        });
        for wf in candidates {
            self.execute(wf).await?;
        }
        Ok(())
    }

    async fn execute(&mut self, wf: Workflow) -> Result<(), OutboundClosed> {
        if !self.node.claim(&wf.id, self.id) {
            return Ok(());
        }
        let history: Vec<CheckpointRecord> = wf
            .checkpoints
            .iter()
            .enumerate()
            .map(|(seq, c)| CheckpointRecord {
                seq: seq as u64,
                checkpoint_name: c.name.clone(),
                value: c.value.clone(),
            })
            .collect();
        self.active.insert(wf.id.clone(), history.len() as u64);
        self.send(SidecarMsg::ExecuteWorkflow(ExecuteWorkflowRequest {
            workflow_id: wf.id,
            workflow_name: wf.name,
            version: wf.version,
            input: wf.input,
            is_owner: wf.owner == self.node.id(),
            history,
        }))
        .await
    }

    async fn on_proposal(&mut self, p: CheckpointProposal) -> Result<(), OutboundClosed> {
        if p.workflow_id.is_empty() || p.checkpoint_name.is_empty() {
            return self
                .send(stream_error(
                    ErrorCode::MalformedMessage,
                    "checkpoint_proposal needs a workflow_id and a checkpoint_name",
                    &p.workflow_id,
                    p.seq,
                ))
                .await;
        }
        if p.value.len() > self.node.config().max_value_bytes {
            let e = EngineError::ValueTooLarge {
                what: "checkpoint value".into(),
                len: p.value.len(),
                max: self.node.config().max_value_bytes,
            };
            return self.send(error_for(&e, &p.workflow_id, p.seq)).await;
        }
        // Only the session that runs the workflow on this node may propose;
        // the state machine fences other nodes, this check fences other apps
        // connected to the same sidecar.
        if !self.active.contains_key(&p.workflow_id) {
            return self
                .send(self.not_running_here(&p.workflow_id, p.seq))
                .await;
        }
        // The commit is awaited off the session loop so that proposals of
        // other workflows are not serialised behind it.
        let node = self.node.clone();
        let out = self.out.clone();
        tokio::spawn(async move {
            let result = node
                .record_checkpoint(&p.workflow_id, p.seq, &p.checkpoint_name, p.value)
                .await;
            if let Err(e) = result {
                tracing::debug!(workflow = %p.workflow_id, seq = p.seq, error = %e, "checkpoint proposal refused");
                let _ = out
                    .send(WorkflowStreamResponse {
                        message: Some(error_for(&e, &p.workflow_id, p.seq)),
                    })
                    .await;
            }
        });
        Ok(())
    }

    async fn on_result(&mut self, r: WorkflowResult) -> Result<(), OutboundClosed> {
        if r.workflow_id.is_empty() {
            return self
                .send(stream_error(
                    ErrorCode::MalformedMessage,
                    "workflow_result needs a workflow_id",
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
            return self.send(self.not_running_here(&r.workflow_id, 0)).await;
        }
        self.propose_result(r);
        Ok(())
    }

    /// Commits a workflow's result as its owner's, off the session loop.
    fn propose_result(&self, r: WorkflowResult) {
        let node = self.node.clone();
        let out = self.out.clone();
        tokio::spawn(async move {
            let outcome = if r.success {
                Ok(r.result)
            } else {
                Err(r.error)
            };
            // The app reports a result once and forgets the run, so the
            // session keeps proposing it through elections and lost
            // forwards: without this a workflow whose result was lost would
            // stay running with all its work done. A retry that finds the
            // workflow already finished is the earlier attempt's success.
            let mut shutdown = node.shutdown_signal();
            loop {
                match node.finish_workflow(&r.workflow_id, outcome.clone()).await {
                    Ok(()) => break,
                    Err(e) if e.is_retryable() => {
                        node.note_result_retry();
                        tracing::debug!(workflow = %r.workflow_id, error = %e, "workflow result not committed yet; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(RESULT_RETRY) => {}
                            _ = crate::node::stopped(&mut shutdown) => break,
                        }
                    }
                    Err(EngineError::Rejected(crate::Rejection::NotRunning { status, .. }))
                        if crate::is_terminal(status) =>
                    {
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(workflow = %r.workflow_id, error = %e, "workflow result refused");
                        let _ = out
                            .send(WorkflowStreamResponse {
                                message: Some(error_for(&e, &r.workflow_id, 0)),
                            })
                            .await;
                        break;
                    }
                }
            }
        });
    }

    /// Reports non-determinism when a replica's result differs from the
    /// owner's committed outcome.
    fn compare_with_owner(&self, wf: &Workflow, r: &WorkflowResult) {
        let same = match wf.status {
            WorkflowStatus::Completed => r.success && r.result == wf.result,
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

    /// The error for a message about a workflow this session does not run.
    fn not_running_here(&self, workflow_id: &str, seq: u64) -> SidecarMsg {
        if self.node.workflow(workflow_id).is_none() {
            return stream_error(
                ErrorCode::UnknownWorkflow,
                &format!("workflow '{workflow_id}' does not exist"),
                workflow_id,
                seq,
            );
        }
        stream_error(
            ErrorCode::NotOwner,
            &format!(
                "workflow '{workflow_id}' is not running on this app session; only the session that \
                 received its ExecuteWorkflowRequest may send checkpoints and results"
            ),
            workflow_id,
            seq,
        )
    }

    async fn on_event(&mut self, event: &Event) -> Result<(), OutboundClosed> {
        match event {
            Event::WorkflowRunning { workflow_id, .. } => {
                if self.active.contains_key(workflow_id) {
                    return Ok(());
                }
                let Some(wf) = self.node.workflow(workflow_id) else {
                    return Ok(());
                };
                if wf.status == WorkflowStatus::Running
                    && self.registered.contains(&(wf.name.clone(), wf.version))
                {
                    self.execute(wf).await?;
                }
                Ok(())
            }
            Event::CheckpointCommitted {
                workflow_id,
                seq,
                name,
                value,
            } => {
                let Some(next) = self.active.get_mut(workflow_id) else {
                    return Ok(());
                };
                // The execute request may already have carried this seq.
                if *seq < *next {
                    return Ok(());
                }
                *next = seq + 1;
                self.send(SidecarMsg::CheckpointEvent(CheckpointEvent {
                    workflow_id: workflow_id.clone(),
                    seq: *seq,
                    checkpoint_name: name.clone(),
                    value: value.clone(),
                }))
                .await
            }
            Event::WorkflowCancelled {
                workflow_id,
                reason,
            } => {
                if self.active.remove(workflow_id).is_none() {
                    return Ok(());
                }
                self.node.release(workflow_id, self.id);
                self.send(SidecarMsg::WorkflowCancellation(WorkflowCancellation {
                    workflow_id: workflow_id.clone(),
                    reason: reason.clone(),
                }))
                .await
            }
            Event::WorkflowFinished { workflow_id, .. } => {
                if self.active.remove(workflow_id).is_some() {
                    self.node.release(workflow_id, self.id);
                }
                if let Some(r) = self.replica_results.remove(workflow_id)
                    && let Some(wf) = self.node.workflow(workflow_id)
                {
                    self.compare_with_owner(&wf, &r);
                }
                Ok(())
            }
            Event::OwnerChanged {
                workflow_id, new, ..
            } => {
                let me = self.node.id();
                if *new == me
                    && let Some(r) = self.replica_results.remove(workflow_id)
                {
                    // This replica finished the run before the owner's result
                    // was committed, and the app has forgotten the run: the
                    // result it reported then is now the owner's. Without
                    // this the workflow stayed running with all its work done.
                    tracing::info!(workflow = %workflow_id, "this node took over a workflow its replica had finished; committing that result");
                    self.propose_result(r);
                    return Ok(());
                }
                if self.active.contains_key(workflow_id) {
                    if *new == me {
                        tracing::info!(workflow = %workflow_id, "this node took over the workflow");
                    }
                    return self
                        .send(SidecarMsg::OwnershipChange(OwnershipChange {
                            workflow_id: workflow_id.clone(),
                            is_owner: *new == me,
                        }))
                        .await;
                }
                if *new == me
                    && let Some(wf) = self.node.workflow(workflow_id)
                    && wf.status == WorkflowStatus::Running
                    && self.registered.contains(&(wf.name.clone(), wf.version))
                {
                    self.execute(wf).await?;
                }
                Ok(())
            }
            Event::SessionsChanged => self.dispatch_all().await,
            Event::WorkerRegistered { .. } | Event::PresenceChanged { .. } => Ok(()),
        }
    }
}

/// The app no longer reads its stream.
struct OutboundClosed;

impl OutboundClosed {
    fn into_end<E>(self) -> SessionEnd<E> {
        SessionEnd::OutboundClosed
    }
}

fn stream_error(code: ErrorCode, message: &str, workflow_id: &str, seq: u64) -> SidecarMsg {
    SidecarMsg::Error(StreamError {
        code: code as i32,
        message: message.to_owned(),
        workflow_id: workflow_id.to_owned(),
        seq,
    })
}

/// The stream error an app gets for a refused request.
fn error_for(e: &EngineError, workflow_id: &str, seq: u64) -> SidecarMsg {
    let code = match e {
        EngineError::Rejected(r) => r.code(),
        EngineError::ValueTooLarge { .. } => ErrorCode::MessageTooLarge,
        EngineError::InvalidArgument(_)
        | EngineError::Config(_)
        | EngineError::AlreadyExists(_)
        | EngineError::NotMember(_) => ErrorCode::MalformedMessage,
        EngineError::NoLeader { .. }
        | EngineError::LeaderChanged
        | EngineError::ProposalTimeout(_)
        | EngineError::TransferTimeout { .. }
        | EngineError::NotLeader { .. }
        | EngineError::QuorumAtRisk(_)
        | EngineError::ShuttingDown
        | EngineError::Raft(_)
        | EngineError::WaitTimeout { .. } => ErrorCode::Unavailable,
    };
    stream_error(code, &e.to_string(), workflow_id, seq)
}

/// Messages from a session to its app, ended by a final status when the
/// session did not end because the app left.
pub type SessionStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<WorkflowStreamResponse, tonic::Status>> + Send>>;

/// Runs a session for `inbound` on its own task and returns what to send
/// back: the session's messages, then a final status telling the app why its
/// stream ended (`inbound_error` turns the app's own stream error into one).
/// The sidecar feeds it a gRPC stream, embedded mode an in-process channel.
pub fn serve_app_stream<S, E>(
    node: Node,
    inbound: S,
    inbound_error: fn(E) -> Option<tonic::Status>,
) -> SessionStream
where
    S: Stream<Item = Result<WorkflowStreamRequest, E>> + Unpin + Send + 'static,
    E: Display + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Option<tonic::Status>>();
    let session = WorkerSession::new(node, tx);
    tokio::spawn(async move {
        let end = session.run(inbound).await;
        tracing::debug!(end = ?end, "app stream ended");
        let status = match end {
            SessionEnd::AppClosed | SessionEnd::OutboundClosed => None,
            SessionEnd::InboundError(e) => inbound_error(e),
            SessionEnd::Lagged => Some(tonic::Status::unavailable(
                "the app fell behind the committed events; reconnect to resume by replay",
            )),
            SessionEnd::Shutdown => Some(tonic::Status::unavailable(
                "the Raftoral node is shutting down",
            )),
        };
        let _ = end_tx.send(status);
    });
    let tail =
        futures::stream::once(end_rx).filter_map(|end| async move { end.ok().flatten().map(Err) });
    Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(Ok)
            .chain(tail),
    )
}

/// Messages buffered towards one app before the session waits for it.
const OUTBOUND_BUFFER: usize = 4096;
/// Attempts to commit a registration before the app is told it failed.
const REGISTER_ATTEMPTS: u32 = 50;
/// Pause between attempts to commit a workflow result or a registration.
const RESULT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
