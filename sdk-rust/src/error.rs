//! SDK errors.

use raftoral_proto::sidecar::v1::{ErrorCode, Failure};

/// A step that failed for good: its committed failure, raised at its
/// position on the owner, on every replica and in every replay.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// The workflow.
    pub workflow_id: String,
    /// The step's position.
    pub seq: u64,
    /// The step's name.
    pub step: String,
    /// Attempts made, the last included.
    pub attempts: u32,
    /// The error of the last attempt, as the language that raised it gave
    /// it (type, message, details as JSON).
    pub failure: Failure,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "step '{}' (seq {}) of workflow '{}' failed after {} attempt{s}: {}: {}",
            self.step,
            self.seq,
            self.workflow_id,
            self.attempts,
            self.failure.r#type,
            self.failure.message
        )
    }
}

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
    /// A step failed for good (its code raised a non-retryable error, or
    /// every attempt failed); catch it to compensate.
    #[error("{0}")]
    StepFailed(Box<StepFailure>),
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
        /// The failure, structured (type, message, JSON details), when the
        /// workflow failed with a step's failure it did not catch.
        failure: Option<Box<Failure>>,
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

/// The error a step's code returns from
/// [`try_checkpoint`](crate::WorkflowContext::try_checkpoint): it crosses
/// languages as a type name, a message and details (JSON), and is retried
/// per the step's [`RetryPolicy`](crate::RetryPolicy) unless marked
/// non-retryable.
///
/// Any `std::error::Error` converts into one (its type name and Display),
/// so `?` works in a step; build one to choose the type and details:
///
/// ```
/// use raftoral_client::StepError;
/// let e = StepError::new("CardDeclined", "card declined")
///     .details(serde_json::json!({"code": "insufficient_funds"}))
///     .non_retryable();
/// assert_eq!(e.failure().r#type, "CardDeclined");
/// ```
#[derive(Debug, Clone)]
pub struct StepError {
    failure: Failure,
}

impl StepError {
    /// An error of type `type_name` (1 to 256 bytes) with `message`.
    pub fn new(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        StepError {
            failure: Failure {
                r#type: type_name.into(),
                message: message.into(),
                ..Failure::default()
            },
        }
    }

    /// Structured details, committed as JSON (at most 64 KiB; 4 KiB while
    /// attempts remain).
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.failure.details_json = details.to_string();
        self
    }

    /// Not retried whatever the policy: the step fails at once.
    pub fn non_retryable(mut self) -> Self {
        self.failure.non_retryable = true;
        self
    }

    /// The error as it is committed.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    pub(crate) fn into_failure(self) -> Failure {
        self.failure
    }
}

impl<E: std::error::Error> From<E> for StepError {
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        // `my_crate::module::MyError<T>` is committed as `MyError`.
        let base = full.split('<').next().unwrap_or(full);
        let name = base.rsplit("::").next().unwrap_or(base);
        StepError::new(name, e.to_string())
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
    /// The workflow's own failure, as a message.
    #[error("{0}")]
    Failed(String),
    /// The workflow's own failure, structured (type, message, JSON
    /// details): clients read it as `WorkflowInfo.failure`, in every SDK.
    ///
    /// ```
    /// # use raftoral_client::{StepError, WorkflowError};
    /// let e: WorkflowError = StepError::new("OrderRejected", "no stock")
    ///     .details(serde_json::json!({"sku": "A-1"}))
    ///     .into();
    /// assert_eq!(e.to_string(), "OrderRejected: no stock");
    /// ```
    #[error("{}: {}", .0.failure().r#type, .0.failure().message)]
    Application(StepError),
}

impl From<StepError> for WorkflowError {
    fn from(e: StepError) -> Self {
        WorkflowError::Application(e)
    }
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
