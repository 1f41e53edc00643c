//! Durable calls from a workflow to other workflows: send an event
//! ([`WorkflowContext::signal_workflow`]) and wait for a result
//! ([`WorkflowContext::workflow_result`]). Each is a step: its outcome is
//! committed, so a replay does not call again. A send carries the
//! idempotency key `{workflow_id}/{position}`: when the owner dies after
//! sending and before the step's commit, the new owner's send is the same
//! event again, and the target's inbox takes it once.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::error::{ClientError, StepError};
use crate::retry::RetryPolicy;

/// Failure type of a send to a workflow that does not exist.
pub const WORKFLOW_NOT_FOUND_TYPE: &str = "raftoral.WorkflowNotFound";
/// Failure type of a send to a workflow that has ended.
pub const WORKFLOW_ENDED_TYPE: &str = "raftoral.WorkflowEnded";

/// A client error as a step's failure: refusals that cannot change are
/// non-retryable, the rest retried by the step's policy.
fn step_error(e: ClientError) -> StepError {
    match e.code() {
        Some(tonic::Code::NotFound) => {
            StepError::new(WORKFLOW_NOT_FOUND_TYPE, e.to_string()).non_retryable()
        }
        Some(tonic::Code::FailedPrecondition) => {
            StepError::new(WORKFLOW_ENDED_TYPE, e.to_string()).non_retryable()
        }
        Some(tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted) => {
            StepError::new("raftoral.SignalRefused", e.to_string()).non_retryable()
        }
        _ => StepError::new("raftoral.Unavailable", e.to_string()),
    }
}

impl WorkflowContext {
    /// Sends the event `name` with `payload` (JSON) to workflow `target`,
    /// durably and once: a step named `signal:{target}:{name}`. Returns
    /// `true` when the target had the event already (a duplicate). A target
    /// that does not exist or has ended fails the step for good
    /// ([`ClientError::StepFailed`] of type `raftoral.WorkflowNotFound` or
    /// `raftoral.WorkflowEnded`); an unreachable cluster is retried.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// ctx.signal_workflow("order-42", "shipped", &"TRACK-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal_workflow<P: Serialize + ?Sized>(
        &self,
        target: &str,
        name: &str,
        payload: &P,
    ) -> Result<bool, ClientError> {
        let payload = Bytes::from(serde_json::to_vec(payload)?);
        self.signal_workflow_raw(target, name, payload).await
    }

    /// [`signal_workflow`](Self::signal_workflow) with an encoded payload.
    pub async fn signal_workflow_raw(
        &self,
        target: &str,
        name: &str,
        payload: Bytes,
    ) -> Result<bool, ClientError> {
        let key = format!("{}/{}", self.workflow_id(), self.next_position());
        let client = self.client.clone();
        self.try_checkpoint_compute(
            &format!("signal:{target}:{name}"),
            &RetryPolicy::default(),
            |_| {
                let (client, payload, key) = (client.clone(), payload.clone(), key.clone());
                async move {
                    client
                        .signal_workflow_raw(target, name, payload, Some(&key))
                        .await
                        .map(|r| r.duplicate)
                        .map_err(step_error)
                }
            },
        )
        .await
    }

    /// Waits for workflow `target` to end, durably: a step named
    /// `result:{target}` whose value is the target's result. A failed or
    /// cancelled target fails the step for good with its failure; a target
    /// that does not exist with `raftoral.WorkflowNotFound`. A new owner
    /// after a failover waits again; a replay reads the committed result.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let invoice: String = ctx.workflow_result("billing-42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn workflow_result<T: DeserializeOwned + Serialize>(
        &self,
        target: &str,
    ) -> Result<T, ClientError> {
        let client = self.client.clone();
        self.try_checkpoint_compute(&format!("result:{target}"), &RetryPolicy::default(), |_| {
            let client = client.clone();
            async move {
                match client.workflow_handle(target).result::<T>().await {
                    Ok(value) => Ok(value),
                    Err(ClientError::WorkflowFailed {
                        message, failure, ..
                    }) => {
                        // The target's own failure, type and details kept.
                        let mut e = match failure {
                            Some(f) => StepError::new(f.r#type.clone(), f.message.clone()).details(
                                serde_json::from_str(&f.details_json)
                                    .unwrap_or(serde_json::Value::Null),
                            ),
                            None => StepError::new("raftoral.WorkflowFailed", message),
                        };
                        e = e.non_retryable();
                        Err(e)
                    }
                    Err(ClientError::Cancelled { reason, .. }) => Err(StepError::new(
                        "raftoral.WorkflowCancelled",
                        format!("workflow '{target}' was cancelled: {reason}"),
                    )
                    .non_retryable()),
                    Err(e) => Err(step_error(e)),
                }
            }
        })
        .await
    }
}
