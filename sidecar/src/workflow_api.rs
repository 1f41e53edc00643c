//! The client API over gRPC (`raftoral.sidecar.v1.WorkflowService`): a thin
//! adapter on the engine's [`ClientApi`], which embedded mode calls directly.

use raftoral::{ClientApi, Node};
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, CompleteAwakeableRequest,
    CompleteAwakeableResponse, GetStatusRequest, GetStatusResponse, GetWorkflowHistoryRequest,
    GetWorkflowHistoryResponse, GetWorkflowRequest, GetWorkflowResponse, ListWorkflowsRequest,
    ListWorkflowsResponse, SignalWithStartRequest, SignalWithStartResponse, SignalWorkflowRequest,
    SignalWorkflowResponse, StartWorkflowRequest, StartWorkflowResponse, WaitWorkflowRequest,
    WaitWorkflowResponse, workflow_service_server::WorkflowService,
};
use tonic::{Request, Response, Status};

/// Serves the client API of one node.
pub struct WorkflowApi {
    api: ClientApi,
}

impl WorkflowApi {
    /// A client API backed by `node`.
    pub fn new(node: Node) -> Self {
        Self {
            api: ClientApi::new(node),
        }
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start_workflow(
        &self,
        request: Request<StartWorkflowRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        self.api
            .start_workflow(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_workflow(
        &self,
        request: Request<GetWorkflowRequest>,
    ) -> Result<Response<GetWorkflowResponse>, Status> {
        self.api
            .get_workflow(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn wait_workflow(
        &self,
        request: Request<WaitWorkflowRequest>,
    ) -> Result<Response<WaitWorkflowResponse>, Status> {
        self.api
            .wait_workflow(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn cancel_workflow(
        &self,
        request: Request<CancelWorkflowRequest>,
    ) -> Result<Response<CancelWorkflowResponse>, Status> {
        self.api
            .cancel_workflow(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn signal_workflow(
        &self,
        request: Request<SignalWorkflowRequest>,
    ) -> Result<Response<SignalWorkflowResponse>, Status> {
        self.api
            .signal_workflow(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn signal_with_start(
        &self,
        request: Request<SignalWithStartRequest>,
    ) -> Result<Response<SignalWithStartResponse>, Status> {
        self.api
            .signal_with_start(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn complete_awakeable(
        &self,
        request: Request<CompleteAwakeableRequest>,
    ) -> Result<Response<CompleteAwakeableResponse>, Status> {
        self.api
            .complete_awakeable(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        self.api
            .get_status(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_workflows(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        self.api
            .list_workflows(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_workflow_history(
        &self,
        request: Request<GetWorkflowHistoryRequest>,
    ) -> Result<Response<GetWorkflowHistoryResponse>, Status> {
        self.api
            .get_workflow_history(request.into_inner())
            .await
            .map(Response::new)
    }
}
