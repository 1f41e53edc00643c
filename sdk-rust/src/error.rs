//! SDK errors.

use raftoral_proto::sidecar::v1::ErrorCode;

/// Errors of the Raftoral SDK.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The sidecar could not be reached.
    #[error(
        "cannot connect to the Raftoral sidecar at {endpoint}: {reason}; is `raftoral serve` running and RAFTORAL_SIDECAR_URL right?"
    )]
    Connect {
        /// The address tried.
        endpoint: String,
        /// The transport's explanation.
        reason: String,
    },
    /// A client API call failed with a gRPC status.
    #[error("{call} failed: {code:?}: {message}")]
    Status {
        /// The RPC.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// Replay found a different checkpoint than the history recorded: the
    /// workflow code changed or is not deterministic.
    #[error(
        "non-determinism in workflow '{workflow_id}' at checkpoint seq {seq}: history has '{expected}', the code asked for '{got}'; keep checkpoint names and order stable, or register a new workflow version"
    )]
    NonDeterminism {
        /// The workflow.
        workflow_id: String,
        /// 0-based checkpoint position.
        seq: u64,
        /// Name in the committed history.
        expected: String,
        /// Name the code used.
        got: String,
    },
    /// The workflow was cancelled.
    #[error("workflow '{workflow_id}' was cancelled: {reason}")]
    Cancelled {
        /// The workflow.
        workflow_id: String,
        /// The reason given to CancelWorkflow.
        reason: String,
    },
    /// The workflow failed; `message` is its error.
    #[error("workflow '{workflow_id}' failed: {message}")]
    WorkflowFailed {
        /// The workflow.
        workflow_id: String,
        /// The error the workflow function returned.
        message: String,
    },
    /// The sidecar refused a message (stable code, see `ErrorCode`).
    #[error("the sidecar refused a message for workflow '{workflow_id}' ({code:?}): {message}")]
    Rejected {
        /// The workflow.
        workflow_id: String,
        /// The stable code.
        code: ErrorCode,
        /// The sidecar's explanation.
        message: String,
    },
    /// The workflow is not running any more in the cluster (it finished
    /// or was cancelled elsewhere, e.g. by the owner that took it over while
    /// this app was paused). Not a failure of this run: nothing is reported.
    #[error("workflow '{workflow_id}' is no longer running: {message}")]
    NotRunning {
        /// The workflow.
        workflow_id: String,
        /// The sidecar's explanation.
        message: String,
    },
    /// A value could not be encoded or decoded.
    #[error("cannot encode or decode a value as JSON: {0}")]
    Codec(String),
    /// The SDK is shutting down; in-flight workflows stay running in the
    /// cluster and resume when a worker connects again.
    #[error("the Raftoral client is shutting down")]
    Shutdown,
    /// A call was used wrongly (e.g. `handle_workflows` twice).
    #[error("{0}")]
    Usage(String),
    /// A wait ran out of time.
    #[error("{0}")]
    Timeout(String),
}

impl From<serde_json::Error> for ClientError {
    fn from(e: serde_json::Error) -> Self {
        ClientError::Codec(e.to_string())
    }
}

impl ClientError {
    pub(crate) fn status(call: &'static str, status: tonic::Status) -> Self {
        ClientError::Status {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// The gRPC code when this error came from a client API call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a workflow function returns on failure.
///
/// Any [`ClientError`] (via `?` on a checkpoint), a JSON error, or a message
/// converts into it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkflowError {
    /// An SDK error, e.g. cancellation or non-determinism.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The workflow's own failure.
    #[error("{0}")]
    Failed(String),
}

impl From<serde_json::Error> for WorkflowError {
    fn from(e: serde_json::Error) -> Self {
        WorkflowError::Client(e.into())
    }
}

impl From<String> for WorkflowError {
    fn from(message: String) -> Self {
        WorkflowError::Failed(message)
    }
}

impl From<&str> for WorkflowError {
    fn from(message: &str) -> Self {
        WorkflowError::Failed(message.to_owned())
    }
}
