//! The app stream (`raftoral.sidecar.v1.AppService`) over gRPC: one engine
//! session per connected app.

use raftoral::{Node, SessionStream, serve_app_stream};
use raftoral_proto::sidecar::v1::{WorkflowStreamRequest, app_service_server::AppService};
use tonic::{Request, Response, Status, Streaming};

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

#[tonic::async_trait]
impl AppService for AppApi {
    type WorkflowStreamStream = SessionStream;

    async fn workflow_stream(
        &self,
        request: Request<Streaming<WorkflowStreamRequest>>,
    ) -> Result<Response<SessionStream>, Status> {
        tracing::info!(peer = ?request.remote_addr(), "app connected");
        // The app's own stream error (an oversized or undecodable frame) is
        // sent back to it as the final status, if it still listens.
        let out = serve_app_stream(self.node.clone(), request.into_inner(), Some);
        Ok(Response::new(out))
    }
}
