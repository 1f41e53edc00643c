//! [`SidecarLink`]: how the SDK reaches its sidecar. [`GrpcLink`] speaks gRPC
//! to a `raftoral serve` process; `raftoral-embedded` implements the same trait
//! in-process for embedded mode, so the checkpoint logic exists once and
//! "sidecar vs embedded" differs by exactly the gRPC hop.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, CompleteAwakeableRequest,
    CompleteAwakeableResponse, GetStatusRequest, GetStatusResponse, GetWorkflowHistoryRequest,
    GetWorkflowHistoryResponse, GetWorkflowRequest, GetWorkflowResponse, ListWorkflowsRequest,
    ListWorkflowsResponse, SignalWithStartRequest, SignalWithStartResponse, SignalWorkflowRequest,
    SignalWorkflowResponse, StartWorkflowRequest, StartWorkflowResponse, WaitWorkflowRequest,
    WaitWorkflowResponse, WorkflowStreamRequest, WorkflowStreamResponse,
    app_service_client::AppServiceClient, workflow_service_client::WorkflowServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;
use crate::security::{AddToken, AppToken, ClientTls};
use tonic::service::interceptor::InterceptedService;

/// Messages from the sidecar on an open app stream.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<WorkflowStreamResponse, Status>> + Send>>;

/// The calls the SDK makes on a sidecar.
#[tonic::async_trait]
pub trait SidecarLink: Send + Sync + 'static {
    /// Opens the app stream; `requests` carries the app's messages.
    async fn open_stream(
        &self,
        requests: mpsc::Receiver<WorkflowStreamRequest>,
    ) -> Result<ResponseStream, Status>;
    /// `WorkflowService.StartWorkflow`.
    async fn start_workflow(
        &self,
        request: StartWorkflowRequest,
    ) -> Result<StartWorkflowResponse, Status>;
    /// `WorkflowService.GetWorkflow`.
    async fn get_workflow(
        &self,
        request: GetWorkflowRequest,
    ) -> Result<GetWorkflowResponse, Status>;
    /// `WorkflowService.WaitWorkflow`.
    async fn wait_workflow(
        &self,
        request: WaitWorkflowRequest,
    ) -> Result<WaitWorkflowResponse, Status>;
    /// `WorkflowService.CancelWorkflow`.
    async fn cancel_workflow(
        &self,
        request: CancelWorkflowRequest,
    ) -> Result<CancelWorkflowResponse, Status>;
    /// `WorkflowService.ListWorkflows`. Provided so that links written
    /// before it existed keep compiling; they answer UNIMPLEMENTED.
    async fn list_workflows(
        &self,
        request: ListWorkflowsRequest,
    ) -> Result<ListWorkflowsResponse, Status> {
        let _ = request;
        Err(Status::unimplemented(
            "this link does not serve ListWorkflows",
        ))
    }
    /// `WorkflowService.GetWorkflowHistory`. Provided like
    /// [`list_workflows`](Self::list_workflows).
    async fn get_workflow_history(
        &self,
        request: GetWorkflowHistoryRequest,
    ) -> Result<GetWorkflowHistoryResponse, Status> {
        let _ = request;
        Err(Status::unimplemented(
            "this link does not serve GetWorkflowHistory",
        ))
    }
    /// `WorkflowService.SignalWorkflow`. Provided like
    /// [`list_workflows`](Self::list_workflows).
    async fn signal_workflow(
        &self,
        request: SignalWorkflowRequest,
    ) -> Result<SignalWorkflowResponse, Status> {
        let _ = request;
        Err(Status::unimplemented(
            "this link does not serve SignalWorkflow",
        ))
    }
    /// `WorkflowService.SignalWithStart`. Provided like
    /// [`list_workflows`](Self::list_workflows).
    async fn signal_with_start(
        &self,
        request: SignalWithStartRequest,
    ) -> Result<SignalWithStartResponse, Status> {
        let _ = request;
        Err(Status::unimplemented(
            "this link does not serve SignalWithStart",
        ))
    }
    /// `WorkflowService.CompleteAwakeable`. Provided like
    /// [`list_workflows`](Self::list_workflows).
    async fn complete_awakeable(
        &self,
        request: CompleteAwakeableRequest,
    ) -> Result<CompleteAwakeableResponse, Status> {
        let _ = request;
        Err(Status::unimplemented(
            "this link does not serve CompleteAwakeable",
        ))
    }
    /// `WorkflowService.GetStatus`. Provided like
    /// [`list_workflows`](Self::list_workflows).
    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, Status> {
        let _ = request;
        Err(Status::unimplemented("this link does not serve GetStatus"))
    }
}

/// The link to a sidecar process over gRPC.
pub struct GrpcLink {
    channel: Channel,
    token: AddToken,
    max_message_bytes: usize,
}

/// The gRPC channel with the app token added to every call.
type Authed = InterceptedService<Channel, AddToken>;

impl GrpcLink {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:9001`); fails fast when
    /// nothing listens there.
    pub async fn connect(
        endpoint: &str,
        max_message_bytes: usize,
    ) -> Result<GrpcLink, ClientError> {
        Self::connect_secure(endpoint, max_message_bytes, None, None).await
    }

    /// [`connect`](Self::connect) to a protected sidecar: `token` goes with
    /// every call; `tls` (with an `https://` endpoint) checks the sidecar's
    /// certificate and may present a client certificate.
    pub async fn connect_secure(
        endpoint: &str,
        max_message_bytes: usize,
        token: Option<AppToken>,
        tls: Option<&ClientTls>,
    ) -> Result<GrpcLink, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let https = endpoint.starts_with("https://");
        let mut channel =
            Endpoint::from_shared(endpoint.to_owned()).map_err(|e| connect_error(e.to_string()))?;
        match (tls, https) {
            (Some(tls), true) => {
                channel = channel
                    .tls_config(tls.config())
                    .map_err(|e| connect_error(error_chain(&e)))?;
            }
            (Some(_), false) => {
                return Err(connect_error(
                    "TLS options were given but the URL is not https://; use https://HOST:PORT"
                        .into(),
                ));
            }
            (None, true) => {
                return Err(connect_error(
                    "an https:// URL needs the TLS option with the CA that signed the sidecar's certificate".into(),
                ));
            }
            (None, false) => {}
        }
        let channel = channel
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| connect_error(error_chain(&e)))?;
        Ok(GrpcLink {
            channel,
            token: AddToken(token),
            max_message_bytes,
        })
    }

    fn workflows(&self) -> WorkflowServiceClient<Authed> {
        WorkflowServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }
}

#[tonic::async_trait]
impl SidecarLink for GrpcLink {
    async fn open_stream(
        &self,
        requests: mpsc::Receiver<WorkflowStreamRequest>,
    ) -> Result<ResponseStream, Status> {
        let mut client =
            AppServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes);
        let inbound = client
            .workflow_stream(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(inbound.boxed())
    }

    async fn start_workflow(
        &self,
        request: StartWorkflowRequest,
    ) -> Result<StartWorkflowResponse, Status> {
        Ok(self.workflows().start_workflow(request).await?.into_inner())
    }

    async fn get_workflow(
        &self,
        request: GetWorkflowRequest,
    ) -> Result<GetWorkflowResponse, Status> {
        Ok(self.workflows().get_workflow(request).await?.into_inner())
    }

    async fn wait_workflow(
        &self,
        request: WaitWorkflowRequest,
    ) -> Result<WaitWorkflowResponse, Status> {
        Ok(self.workflows().wait_workflow(request).await?.into_inner())
    }

    async fn cancel_workflow(
        &self,
        request: CancelWorkflowRequest,
    ) -> Result<CancelWorkflowResponse, Status> {
        Ok(self
            .workflows()
            .cancel_workflow(request)
            .await?
            .into_inner())
    }

    async fn list_workflows(
        &self,
        request: ListWorkflowsRequest,
    ) -> Result<ListWorkflowsResponse, Status> {
        Ok(self.workflows().list_workflows(request).await?.into_inner())
    }

    async fn get_workflow_history(
        &self,
        request: GetWorkflowHistoryRequest,
    ) -> Result<GetWorkflowHistoryResponse, Status> {
        Ok(self
            .workflows()
            .get_workflow_history(request)
            .await?
            .into_inner())
    }

    async fn signal_workflow(
        &self,
        request: SignalWorkflowRequest,
    ) -> Result<SignalWorkflowResponse, Status> {
        Ok(self
            .workflows()
            .signal_workflow(request)
            .await?
            .into_inner())
    }

    async fn signal_with_start(
        &self,
        request: SignalWithStartRequest,
    ) -> Result<SignalWithStartResponse, Status> {
        Ok(self
            .workflows()
            .signal_with_start(request)
            .await?
            .into_inner())
    }

    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, Status> {
        Ok(self.workflows().get_status(request).await?.into_inner())
    }

    async fn complete_awakeable(
        &self,
        request: CompleteAwakeableRequest,
    ) -> Result<CompleteAwakeableResponse, Status> {
        Ok(self
            .workflows()
            .complete_awakeable(request)
            .await?
            .into_inner())
    }
}

/// The whole `source()` chain of an error, for messages that say what failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
