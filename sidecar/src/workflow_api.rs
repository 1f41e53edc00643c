//! The client API (`raftoral.sidecar.v1.WorkflowService`).

use std::time::Duration;

use raftoral::{ListFilter, Node};
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, GetWorkflowHistoryRequest,
    GetWorkflowHistoryResponse, GetWorkflowRequest, GetWorkflowResponse, HistoryEntry,
    ListWorkflowsRequest, ListWorkflowsResponse, StartWorkflowRequest, StartWorkflowResponse,
    WaitWorkflowRequest, WaitWorkflowResponse, WorkflowStatus,
    workflow_service_server::WorkflowService,
};
use tonic::{Request, Response, Status};

use crate::status::to_status;

/// Wait used when WaitWorkflow gives no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Longest wait a WaitWorkflow call may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Page tokens are the last id of the previous page behind this prefix, so the
/// format can change without breaking old tokens unnoticed.
const PAGE_TOKEN_PREFIX: &str = "after:";

/// Serves the client API.
pub struct WorkflowApi {
    node: Node,
}

impl WorkflowApi {
    /// A client API backed by `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }

    fn not_found(id: &str) -> Status {
        Status::not_found(format!("workflow '{id}' does not exist"))
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start_workflow(
        &self,
        request: Request<StartWorkflowRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let r = request.into_inner();
        let started = self
            .node
            .start_workflow(Some(r.workflow_id), &r.workflow_name, r.version, r.input)
            .await
            .map_err(to_status)?;
        tracing::debug!(workflow = %started.workflow.id, name = %started.workflow.name, already = started.already_started, "workflow started");
        Ok(Response::new(StartWorkflowResponse {
            workflow: Some(started.workflow.to_info()),
            already_started: started.already_started,
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<GetWorkflowRequest>,
    ) -> Result<Response<GetWorkflowResponse>, Status> {
        let id = request.into_inner().workflow_id;
        let wf = self
            .node
            .workflow(&id)
            .ok_or_else(|| Self::not_found(&id))?;
        Ok(Response::new(GetWorkflowResponse {
            workflow: Some(wf.to_info()),
        }))
    }

    async fn wait_workflow(
        &self,
        request: Request<WaitWorkflowRequest>,
    ) -> Result<Response<WaitWorkflowResponse>, Status> {
        let r = request.into_inner();
        let timeout = match r.timeout {
            None => DEFAULT_WAIT,
            Some(d) => {
                let d = Duration::try_from(d).map_err(|_| {
                    Status::invalid_argument("timeout must be a non-negative duration")
                })?;
                if d.is_zero() {
                    DEFAULT_WAIT
                } else {
                    d.min(MAX_WAIT)
                }
            }
        };
        let wf = self
            .node
            .wait_workflow(&r.workflow_id, timeout)
            .await
            .map_err(to_status)?;
        Ok(Response::new(WaitWorkflowResponse {
            workflow: Some(wf.to_info()),
        }))
    }

    async fn cancel_workflow(
        &self,
        request: Request<CancelWorkflowRequest>,
    ) -> Result<Response<CancelWorkflowResponse>, Status> {
        let r = request.into_inner();
        let wf = self
            .node
            .cancel_workflow(&r.workflow_id, &r.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CancelWorkflowResponse {
            workflow: Some(wf.to_info()),
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let r = request.into_inner();
        let status = WorkflowStatus::try_from(r.status)
            .map_err(|_| Status::invalid_argument(format!("unknown status value {}", r.status)))?;
        let after = if r.page_token.is_empty() {
            String::new()
        } else {
            r.page_token
                .strip_prefix(PAGE_TOKEN_PREFIX)
                .ok_or_else(|| {
                    Status::invalid_argument(
                        "page_token is not a token returned by ListWorkflows; pass next_page_token unchanged",
                    )
                })?
                .to_owned()
        };
        let (page, more) = self.node.list_workflows(&ListFilter {
            status,
            workflow_name: r.workflow_name,
            page_size: r.page_size as usize,
            after,
        });
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => format!("{PAGE_TOKEN_PREFIX}{}", last.id),
            _ => String::new(),
        };
        Ok(Response::new(ListWorkflowsResponse {
            workflows: page.iter().map(|w| w.to_info()).collect(),
            next_page_token,
        }))
    }

    async fn get_workflow_history(
        &self,
        request: Request<GetWorkflowHistoryRequest>,
    ) -> Result<Response<GetWorkflowHistoryResponse>, Status> {
        let id = request.into_inner().workflow_id;
        let history = self.node.history(&id).ok_or_else(|| Self::not_found(&id))?;
        Ok(Response::new(GetWorkflowHistoryResponse {
            entries: history
                .into_iter()
                .enumerate()
                .map(|(seq, c)| HistoryEntry {
                    seq: seq as u64,
                    checkpoint_name: c.name,
                    value: c.value,
                    committed_at_ms: c.committed_at_ms,
                })
                .collect(),
        }))
    }
}
