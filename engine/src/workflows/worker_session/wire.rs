//! What a session sends besides events: stream errors for refused requests,
//! and the adapter that runs a session behind a gRPC (or in-process) stream.

use std::fmt::Display;

use futures::{Stream, StreamExt};
use raftoral_proto::sidecar::v1::{
    ErrorCode, StreamError, WorkflowStreamRequest, WorkflowStreamResponse,
    workflow_stream_response::Message as SidecarMsg,
};
use tokio::sync::mpsc;

pub(super) use raftoral_proto::sidecar::v1::StreamErrorSubject as Subject;

use super::{SessionEnd, WorkerSession};
use crate::error::EngineError;
use crate::node::Node;

pub(super) fn stream_error(
    code: ErrorCode,
    message: &str,
    subject: Subject,
    workflow_id: &str,
    seq: u64,
) -> SidecarMsg {
    SidecarMsg::Error(StreamError {
        code: code as i32,
        message: message.to_owned(),
        workflow_id: workflow_id.to_owned(),
        seq,
        subject: subject as i32,
    })
}

/// The stream error an app gets for a refused request.
pub(super) fn error_for(
    e: &EngineError,
    subject: Subject,
    workflow_id: &str,
    seq: u64,
) -> SidecarMsg {
    let code = match e {
        EngineError::Rejected(r) => r.code(),
        EngineError::ValueTooLarge { .. } => ErrorCode::MessageTooLarge,
        EngineError::InvalidArgument(_)
        | EngineError::Config(_)
        | EngineError::AlreadyExists(_)
        | EngineError::NotMember(_) => ErrorCode::MalformedMessage,
        EngineError::NoLeader { .. }
        | EngineError::Upgrading(_)
        | EngineError::LeaderChanged
        | EngineError::ProposalTimeout(_)
        | EngineError::TransferTimeout { .. }
        | EngineError::NotLeader { .. }
        | EngineError::QuorumAtRisk(_)
        | EngineError::ShuttingDown
        | EngineError::StorageFailed(_)
        | EngineError::Raft(_)
        | EngineError::WaitTimeout { .. } => ErrorCode::Unavailable,
    };
    stream_error(code, &e.to_string(), subject, workflow_id, seq)
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
            SessionEnd::Silent(after) => Some(tonic::Status::unavailable(format!(
                "the app sent nothing for {after:?} (the app timeout): it counts as gone and its \
                 workflows move; reconnect to resume by replay"
            ))),
            SessionEnd::NotCaughtUp(reason) => Some(tonic::Status::unavailable(format!(
                "this node cannot serve workflows yet: {reason}; reconnect later"
            ))),
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
