//! [`WorkflowHandle`]: a started workflow, to wait for its result.

use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{WaitWorkflowRequest, WorkflowInfo, WorkflowStatus};
use serde::de::DeserializeOwned;

use crate::client::RaftoralClient;
use crate::error::ClientError;

/// Server-side wait per WaitWorkflow call; `result()` repeats it.
const WAIT_SLICE: Duration = Duration::from_secs(30);

/// A started workflow.
#[derive(Clone)]
pub struct WorkflowHandle {
    client: RaftoralClient,
    workflow_id: String,
    already_started: bool,
}

impl WorkflowHandle {
    pub(crate) fn new(client: RaftoralClient, workflow_id: String, already_started: bool) -> Self {
        Self {
            client,
            workflow_id,
            already_started,
        }
    }

    /// The workflow id.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// True when the start found an existing workflow with this id.
    pub fn already_started(&self) -> bool {
        self.already_started
    }

    /// Waits up to `timeout` for a terminal status and returns the workflow.
    /// Err with code `DeadlineExceeded` when it is still running (or pending;
    /// the message says why).
    pub async fn wait(&self, timeout: Duration) -> Result<WorkflowInfo, ClientError> {
        let timeout = prost_types::Duration::try_from(timeout).ok();
        self.client
            .link()
            .wait_workflow(WaitWorkflowRequest {
                workflow_id: self.workflow_id.clone(),
                timeout,
            })
            .await
            .map_err(|s| ClientError::status("WaitWorkflow", s))
            .map(|r| r.workflow.unwrap_or_default())
    }

    /// Waits for the outcome, however long it takes, and returns the encoded
    /// result. Wrap it in `tokio::time::timeout` to bound the wait.
    pub async fn result_raw(&self) -> Result<Bytes, ClientError> {
        loop {
            match self.wait(WAIT_SLICE).await {
                Ok(info) => return outcome(info),
                Err(e) if e.code() == Some(tonic::Code::DeadlineExceeded) => continue,
                // The sidecar may be restarting: keep waiting.
                Err(e) if e.code() == Some(tonic::Code::Unavailable) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the outcome and decodes the JSON result.
    pub async fn result<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        let bytes = self.result_raw().await?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

fn outcome(info: WorkflowInfo) -> Result<Bytes, ClientError> {
    match info.status() {
        WorkflowStatus::Completed => Ok(info.result),
        WorkflowStatus::Cancelled => Err(ClientError::Cancelled {
            workflow_id: info.workflow_id,
            reason: info.error,
        }),
        _ => Err(ClientError::WorkflowFailed {
            workflow_id: info.workflow_id,
            message: info.error,
            failure: info.failure.map(Box::new),
        }),
    }
}
