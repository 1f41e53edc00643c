//! A run's end: its outcome reported to the sidecar (the owner's is
//! committed, a replica's compared with it), or nothing when the end is
//! not an outcome of the workflow (a cancellation, a shutdown).

use bytes::Bytes;
use raftoral_proto::sidecar::v1::WorkflowResult;
use raftoral_proto::sidecar::v1::workflow_stream_request::Message as AppMsg;

use super::{RunHandle, WorkerCore, steps};
use crate::error::ClientError;

impl WorkerCore {
    /// Reports the workflow's outcome and forgets the run. The owner's result
    /// is committed; a replica's is compared with it by the sidecar (a
    /// difference is reported as non-determinism). Cancellation and shutdown
    /// are not outcomes: nothing is reported, so a workflow interrupted by a
    /// shutdown resumes elsewhere.
    pub fn finish(&self, run: &RunHandle, outcome: Result<Bytes, ClientError>) {
        let cleaning_up = {
            let mut state = self.lock();
            match state.runs.get(&run.workflow_id) {
                Some(r) if r.generation == run.generation => {
                    let cleaning_up = r.cancel_request.is_some() && r.cancelled.is_none();
                    state.runs.remove(&run.workflow_id);
                    cleaning_up
                }
                _ => return,
            }
        };
        let result = match outcome {
            // The code ended with the cancellation it was delivered: the
            // workflow is CANCELLED (the sidecar checks a cancel was
            // requested).
            Err(ClientError::Cancelled { reason, .. }) if cleaning_up => WorkflowResult {
                workflow_id: run.workflow_id.clone(),
                success: false,
                result: Bytes::new(),
                error: format!("{}: {reason}", crate::history::CANCELLED_TYPE),
                failure: Some(raftoral_proto::sidecar::v1::Failure {
                    r#type: crate::history::CANCELLED_TYPE.into(),
                    message: reason,
                    ..Default::default()
                }),
            },
            // Not outcomes of the workflow: a cancellation is committed
            // already, a shutdown resumes elsewhere, and a workflow that
            // finished elsewhere has its outcome. Reporting them would make
            // a replica's "result" differ from the owner's: a false
            // non-determinism report.
            Err(
                ClientError::Cancelled { .. }
                | ClientError::Shutdown
                | ClientError::NotRunning { .. },
            ) => return,
            Ok(value) => WorkflowResult {
                workflow_id: run.workflow_id.clone(),
                success: true,
                result: value,
                error: String::new(),
                failure: None,
            },
            Err(e) => {
                // An uncaught step failure fails the workflow with the
                // step's error, structured; so does the function's own
                // structured error.
                let failure = match &e {
                    ClientError::StepFailed(f) => Some(&f.failure),
                    ClientError::WorkflowFailed {
                        failure: Some(f), ..
                    } => Some(&**f),
                    _ => None,
                }
                .map(|f| steps::bounded(f.clone(), steps::FINAL_FAILURE_BYTES, &run.workflow_id));
                WorkflowResult {
                    workflow_id: run.workflow_id.clone(),
                    success: false,
                    result: Bytes::new(),
                    // The function's own failure is stored as its message alone.
                    error: match e {
                        ClientError::WorkflowFailed { message, .. } => message,
                        other => other.to_string(),
                    },
                    failure,
                }
            }
        };
        if cleaning_up && !result.success {
            tracing::info!(workflow = %run.workflow_id, error = %result.error, "workflow ended after its cancel request");
        } else if !result.success {
            tracing::warn!(workflow = %run.workflow_id, error = %result.error, "workflow failed");
        }
        self.send(AppMsg::WorkflowResult(result));
    }
}
