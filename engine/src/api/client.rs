//! The client API (`raftoral.sidecar.v1.WorkflowService`) as plain calls on a
//! node: the sidecar serves it over gRPC, embedded mode calls it in-process.

use std::time::Duration;

use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, CompleteAwakeableRequest,
    CompleteAwakeableResponse, GetStatusRequest, GetStatusResponse, GetWorkflowHistoryRequest,
    GetWorkflowHistoryResponse, GetWorkflowRequest, GetWorkflowResponse, HistoryEntry,
    ListWorkflowsRequest, ListWorkflowsResponse, SignalWithStartRequest, SignalWithStartResponse,
    SignalWorkflowRequest, SignalWorkflowResponse, StartWorkflowRequest, StartWorkflowResponse,
    WaitWorkflowRequest, WaitWorkflowResponse, WorkflowStatus,
};
use tonic::Status;

use crate::api::status::to_status;
use crate::node::{ListFilter, Node};

/// Wait used when WaitWorkflow gives no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Longest wait a WaitWorkflow call may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Page tokens are the last id of the previous page behind this prefix, so the
/// format can change without breaking old tokens unnoticed.
const PAGE_TOKEN_PREFIX: &str = "after:";

/// The start options of a start request's fields.
fn start_options(start_delay_ms: u64, execution_timeout_ms: u64) -> crate::StartOptions {
    crate::StartOptions {
        start_delay: Duration::from_millis(start_delay_ms),
        execution_timeout: (execution_timeout_ms > 0)
            .then(|| Duration::from_millis(execution_timeout_ms)),
    }
}

/// The client API of one node.
#[derive(Clone)]
pub struct ClientApi {
    node: Node,
}

impl ClientApi {
    /// A client API backed by `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }

    /// NOT_FOUND for `id`, saying so when retention may have removed it.
    fn not_found(&self, id: &str) -> Status {
        let purged = self.node.read(|sm| sm.purged_before_ms()) > 0;
        match self.node.config().retention {
            Some(retention) if purged => Status::not_found(format!(
                "workflow '{id}' does not exist: it never did, or it finished more than the \
                 retention period ({retention:?}) ago and was removed"
            )),
            _ => Status::not_found(format!("workflow '{id}' does not exist")),
        }
    }

    /// The status of `e`; an unknown workflow's NOT_FOUND says when
    /// retention may have removed it.
    fn status_of(&self, e: crate::EngineError) -> Status {
        match e {
            crate::EngineError::Rejected(crate::Rejection::UnknownWorkflow(id)) => {
                self.not_found(&id)
            }
            other => to_status(other),
        }
    }

    /// `WorkflowService.start_workflow`.
    pub async fn start_workflow(
        &self,
        request: StartWorkflowRequest,
    ) -> Result<StartWorkflowResponse, Status> {
        let r = request;
        let options = start_options(r.start_delay_ms, r.execution_timeout_ms);
        let started = self
            .node
            .start_workflow_with(
                Some(r.workflow_id),
                &r.workflow_name,
                r.version,
                r.input,
                options,
            )
            .await
            .map_err(to_status)?;
        tracing::debug!(workflow = %started.workflow.id, name = %started.workflow.name, already = started.already_started, "workflow started");
        Ok(StartWorkflowResponse {
            workflow: Some(started.workflow.to_info()),
            already_started: started.already_started,
        })
    }

    /// `WorkflowService.get_workflow`.
    pub async fn get_workflow(
        &self,
        request: GetWorkflowRequest,
    ) -> Result<GetWorkflowResponse, Status> {
        self.node.read_barrier().await.map_err(to_status)?;
        let id = request.workflow_id;
        let wf = self
            .node
            .find_workflow(&id)
            .map_err(to_status)?
            .ok_or_else(|| self.not_found(&id))?;
        Ok(GetWorkflowResponse {
            workflow: Some(wf.to_info()),
        })
    }

    /// `WorkflowService.wait_workflow`.
    pub async fn wait_workflow(
        &self,
        request: WaitWorkflowRequest,
    ) -> Result<WaitWorkflowResponse, Status> {
        let r = request;
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
        Ok(WaitWorkflowResponse {
            workflow: Some(wf.to_info()),
        })
    }

    /// `WorkflowService.cancel_workflow`.
    pub async fn cancel_workflow(
        &self,
        request: CancelWorkflowRequest,
    ) -> Result<CancelWorkflowResponse, Status> {
        let r = request;
        let wf = self
            .node
            .cancel_workflow_with(
                &r.workflow_id,
                &r.reason,
                r.cleanup_ms.map(std::time::Duration::from_millis),
            )
            .await
            .map_err(to_status)?;
        Ok(CancelWorkflowResponse {
            workflow: Some(wf.to_info()),
        })
    }

    /// `WorkflowService.signal_workflow`.
    pub async fn signal_workflow(
        &self,
        request: SignalWorkflowRequest,
    ) -> Result<SignalWorkflowResponse, Status> {
        let r = request;
        let sent = self
            .node
            .signal_workflow(&r.workflow_id, &r.name, r.payload, &r.idempotency_key)
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(SignalWorkflowResponse {
            duplicate: sent.duplicate,
            workflow: Some(sent.workflow.to_info()),
        })
    }

    /// `WorkflowService.signal_with_start`.
    pub async fn signal_with_start(
        &self,
        request: SignalWithStartRequest,
    ) -> Result<SignalWithStartResponse, Status> {
        let r = request;
        let start = r.start.ok_or_else(|| {
            Status::invalid_argument("start is missing: name the workflow to start if needed")
        })?;
        let signal = crate::Signal {
            name: r.name,
            payload: r.payload,
            idempotency_key: r.idempotency_key,
        };
        let done = self
            .node
            .signal_with_start(
                &start.workflow_id,
                &start.workflow_name,
                start.version,
                start.input,
                start_options(start.start_delay_ms, start.execution_timeout_ms),
                signal,
            )
            .await
            .map_err(to_status)?;
        tracing::debug!(workflow = %done.workflow.id, started = done.started, duplicate = done.duplicate, "signal-with-start committed");
        Ok(SignalWithStartResponse {
            started: done.started,
            duplicate: done.duplicate,
            workflow: Some(done.workflow.to_info()),
        })
    }

    /// `WorkflowService.complete_awakeable`.
    pub async fn complete_awakeable(
        &self,
        request: CompleteAwakeableRequest,
    ) -> Result<CompleteAwakeableResponse, Status> {
        let r = request;
        let wf = self
            .node
            .complete_awakeable(&r.awakeable_id, r.payload, r.failure)
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(CompleteAwakeableResponse {
            workflow: Some(wf.to_info()),
        })
    }

    /// `WorkflowService.get_status`.
    pub async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, Status> {
        self.node.read_barrier().await.map_err(to_status)?;
        let id = request.workflow_id;
        let (wf, values) = self
            .node
            .workflow_status_values(&id, &request.keys)
            .map_err(to_status)?
            .ok_or_else(|| self.not_found(&id))?;
        Ok(GetStatusResponse {
            values,
            workflow_status: wf.status as i32,
        })
    }

    /// `WorkflowService.list_workflows`.
    pub async fn list_workflows(
        &self,
        request: ListWorkflowsRequest,
    ) -> Result<ListWorkflowsResponse, Status> {
        let r = request;
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
        self.node.read_barrier().await.map_err(to_status)?;
        let (page, more) = self
            .node
            .list_workflows(&ListFilter {
                status,
                workflow_name: r.workflow_name,
                page_size: r.page_size as usize,
                after,
                sleeping: r.sleeping,
                parent: r.parent_id,
            })
            .map_err(to_status)?;
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => format!("{PAGE_TOKEN_PREFIX}{}", last.id),
            _ => String::new(),
        };
        Ok(ListWorkflowsResponse {
            workflows: page.iter().map(|w| w.to_info()).collect(),
            next_page_token,
        })
    }

    /// `WorkflowService.get_workflow_history`.
    pub async fn get_workflow_history(
        &self,
        request: GetWorkflowHistoryRequest,
    ) -> Result<GetWorkflowHistoryResponse, Status> {
        self.node.read_barrier().await.map_err(to_status)?;
        let id = request.workflow_id;
        let history = self
            .node
            .history(&id)
            .map_err(to_status)?
            .ok_or_else(|| self.not_found(&id))?;
        Ok(GetWorkflowHistoryResponse {
            entries: history
                .into_iter()
                .map(|c| HistoryEntry {
                    seq: c.seq,
                    fire_at_ms: c.fire_at_ms(),
                    next_attempt_at_ms: if c.is_timer() {
                        0
                    } else {
                        c.next_attempt_at_ms
                    },
                    checkpoint_name: c.name,
                    value: c.value,
                    committed_at_ms: c.committed_at_ms,
                    kind: c.kind as i32,
                    failure: c.failure.map(|f| *f),
                    attempt: c.attempt,
                })
                .collect(),
        })
    }
}
