//! Turns the core's [`ClientError`] into errors the TypeScript layer maps to
//! its classes (`RaftoralError` and subclasses, each with a stable `code`).
//!
//! A napi error carries a status and a message only, so the details travel
//! as one JSON object in the message, after [`PREFIX`]; `errors.ts` parses
//! it. The `message` field is always the core's own text, which says what
//! went wrong and what to do.

use napi::Status;
use raftoral_client::ClientError;
use serde_json::{Value, json};
use tonic::Code;

/// Marks a message that carries error details as JSON.
const PREFIX: &str = "RAFTORAL_ERROR ";

/// The napi error for `e`.
pub(crate) fn to_js_err(e: ClientError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{PREFIX}{}", details(&e)))
}

/// A usage error raised by the binding itself.
pub(crate) fn usage(message: String) -> napi::Error {
    to_js_err(ClientError::Usage(message))
}

/// An awakeable completed a second time (the sidecar's `ALREADY_EXISTS`
/// from `CompleteAwakeable`), with the sidecar's `message`.
pub(crate) fn already_completed(awakeable_id: &str, message: String) -> napi::Error {
    let details =
        json!({"code": "ALREADY_COMPLETED", "message": message, "awakeableId": awakeable_id});
    napi::Error::new(Status::GenericFailure, format!("{PREFIX}{details}"))
}

fn details(e: &ClientError) -> Value {
    let message = e.to_string();
    match e {
        ClientError::Connect { endpoint, .. } => {
            json!({"code": "UNAVAILABLE", "message": message, "address": endpoint})
        }
        ClientError::Status { code, .. } => {
            let code = match code {
                Code::NotFound => "NOT_FOUND",
                Code::Unavailable => "UNAVAILABLE",
                Code::InvalidArgument | Code::OutOfRange => "INVALID_ARGUMENT",
                Code::DeadlineExceeded => "TIMEOUT",
                Code::AlreadyExists => "ALREADY_EXISTS",
                Code::FailedPrecondition => "FAILED_PRECONDITION",
                Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
                Code::Unauthenticated => "UNAUTHENTICATED",
                _ => "INTERNAL",
            };
            json!({"code": code, "message": message})
        }
        ClientError::NonDeterminism {
            workflow_id,
            seq,
            expected,
            got,
        } => json!({
            "code": "NON_DETERMINISM", "message": message, "workflowId": workflow_id,
            "seq": seq, "expected": expected, "got": got,
        }),
        ClientError::Cancelled {
            workflow_id,
            reason,
        } => {
            json!({"code": "CANCELLED", "message": message, "workflowId": workflow_id, "reason": reason})
        }
        ClientError::WorkflowFailed {
            workflow_id,
            message: error,
            failure,
        } => {
            // The structured failure (an uncaught step failure, or the
            // workflow's own application error); null without one.
            let failure = failure.as_deref().map(|f| {
                json!({
                    "type": f.r#type, "message": f.message,
                    "detailsJson": f.details_json, "nonRetryable": f.non_retryable,
                })
            });
            json!({
                "code": "WORKFLOW_FAILED", "message": message, "workflowId": workflow_id,
                "error": error, "failure": failure,
            })
        }
        ClientError::Rejected {
            workflow_id, code, ..
        } => json!({
            "code": "REJECTED", "message": message, "workflowId": workflow_id,
            "streamCode": code.as_str_name(),
        }),
        ClientError::NotRunning { workflow_id, .. } => {
            json!({"code": "NOT_RUNNING", "message": message, "workflowId": workflow_id})
        }
        ClientError::StepFailed(f) => json!({
            "code": "STEP_FAILED", "message": message, "workflowId": f.workflow_id,
            "seq": f.seq, "step": f.step, "attempts": f.attempts,
            "type": f.failure.r#type, "error": f.failure.message,
            "detailsJson": f.failure.details_json, "nonRetryable": f.failure.non_retryable,
        }),
        ClientError::Codec(_) | ClientError::Usage(_) => {
            json!({"code": "INVALID_ARGUMENT", "message": message})
        }
        ClientError::Timeout(_) => json!({"code": "TIMEOUT", "message": message}),
        ClientError::Shutdown => json!({"code": "SHUTTING_DOWN", "message": message}),
    }
}
