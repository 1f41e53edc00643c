//! The app stream (`raftoral.sidecar.v1.AppService`): one [`WorkerSession`]
//! per connected app.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use raftoral::{Node, SessionEnd, WorkerSession};
use raftoral_proto::sidecar::v1::{
    WorkflowStreamRequest, WorkflowStreamResponse, app_service_server::AppService,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Messages buffered towards one app before the session waits for it.
const OUTBOUND_BUFFER: usize = 4096;

/// Serves the app stream.
pub struct AppApi {
    node: Node,
}

impl AppApi {
    /// An app API backed by `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WorkflowStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AppService for AppApi {
    type WorkflowStreamStream = ResponseStream;

    async fn workflow_stream(
        &self,
        request: Request<Streaming<WorkflowStreamRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let (end_tx, end_rx) = oneshot::channel::<Option<Status>>();
        let session = WorkerSession::new(self.node.clone(), tx);
        tokio::spawn(async move {
            tracing::info!(peer = ?peer, "app connected");
            let end = session.run(inbound).await;
            tracing::info!(peer = ?peer, end = ?end, "app disconnected");
            let status = match end {
                SessionEnd::AppClosed | SessionEnd::OutboundClosed => None,
                // Tell the app what was wrong with its stream (e.g. a frame
                // over the size limit), if it still listens.
                SessionEnd::InboundError(status) => Some(status),
                SessionEnd::Lagged => Some(Status::unavailable(
                    "the app fell behind the committed events; reconnect to resume by replay",
                )),
                SessionEnd::Shutdown => Some(Status::unavailable("the sidecar is shutting down")),
            };
            let _ = end_tx.send(status);
        });
        // Session messages, then the final status, if any.
        let tail = futures::stream::once(end_rx)
            .filter_map(|end| async move { end.ok().flatten().map(Err) });
        let out = ReceiverStream::new(rx).map(Ok).chain(tail);
        Ok(Response::new(Box::pin(out)))
    }
}
