//! Errors of the engine.

use std::time::Duration;

use raftoral_proto::sidecar::v1::{ErrorCode, WorkflowStatus};

/// Why the state machine refused a command. Every node refuses the same
/// commands, so a rejection is as final as a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The entry carried no command.
    #[error("the command is empty")]
    EmptyCommand,
    /// No workflow has this id.
    #[error("workflow '{0}' does not exist")]
    UnknownWorkflow(String),
    /// The workflow is pending or already finished.
    #[error("workflow '{workflow_id}' is not running (status {})", status_name(*.status))]
    NotRunning {
        /// The workflow.
        workflow_id: String,
        /// Its status.
        status: WorkflowStatus,
    },
    /// Only the owner may propose checkpoints and results (fencing).
    #[error(
        "node {node} is not the owner of workflow '{workflow_id}' (owner: node {owner}); only the owner proposes"
    )]
    NotOwner {
        /// The workflow.
        workflow_id: String,
        /// The current owner.
        owner: u64,
        /// The node that proposed.
        node: u64,
    },
    /// The checkpoint seq is not the next one.
    #[error("workflow '{workflow_id}' expects checkpoint seq {expected}, got {got}")]
    UnexpectedSeq {
        /// The workflow.
        workflow_id: String,
        /// The next position.
        expected: u64,
        /// The proposed position.
        got: u64,
    },
    /// A step entry contradicts itself (a value with a failure, a failure
    /// without one).
    #[error("{0}")]
    InvalidStep(String),
    /// The seq is too far past the first open step.
    #[error(
        "workflow '{workflow_id}' has step {first_open} open; step {seq} is 256 or more past it: wait for open steps to finish before starting more side by side"
    )]
    TooManyOpenSteps {
        /// The workflow.
        workflow_id: String,
        /// The first unresolved seq.
        first_open: u64,
        /// The proposed seq.
        seq: u64,
    },
    /// The attempt number does not follow the committed attempts of its
    /// seq (another proposal for it came first).
    #[error(
        "step {seq} of workflow '{workflow_id}' has {last} failed attempts committed; attempt {got} does not follow them"
    )]
    UnexpectedAttempt {
        /// The workflow.
        workflow_id: String,
        /// The step.
        seq: u64,
        /// The last committed failed attempt.
        last: u32,
        /// The proposed attempt.
        got: u32,
    },
    /// An event for a workflow that has ended.
    #[error(
        "workflow '{workflow_id}' has ended (status {}): events go to running or pending workflows only",
        status_name(*.status)
    )]
    Ended {
        /// The workflow.
        workflow_id: String,
        /// Its final status.
        status: WorkflowStatus,
    },
    /// A workflow's inbox holds as many events or bytes as it may.
    #[error(
        "the inbox of workflow '{workflow_id}' is full ({events} events, {bytes} bytes; at most {max_events} events and {max_bytes} bytes): the workflow must consume events before more are sent"
    )]
    InboxFull {
        /// The workflow.
        workflow_id: String,
        /// Events in the inbox.
        events: usize,
        /// Their payloads' bytes.
        bytes: usize,
        /// The limit on events.
        max_events: usize,
        /// The limit on bytes.
        max_bytes: usize,
    },
}

impl Rejection {
    /// The stable app-stream error code for this rejection.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::EmptyCommand => ErrorCode::MalformedMessage,
            Rejection::UnknownWorkflow(_) => ErrorCode::UnknownWorkflow,
            Rejection::NotRunning { .. } => ErrorCode::WorkflowNotRunning,
            Rejection::NotOwner { .. } => ErrorCode::NotOwner,
            Rejection::UnexpectedSeq { .. } | Rejection::UnexpectedAttempt { .. } => {
                ErrorCode::UnexpectedSeq
            }
            Rejection::InvalidStep(_) => ErrorCode::MalformedMessage,
            Rejection::TooManyOpenSteps { .. } => ErrorCode::TooManyOpenSteps,
            // Client API rejections only (events); never about an app's message.
            Rejection::Ended { .. } => ErrorCode::WorkflowNotRunning,
            Rejection::InboxFull { .. } => ErrorCode::MalformedMessage,
        }
    }
}

/// Lower-case status name for messages, e.g. "running".
pub fn status_name(status: WorkflowStatus) -> &'static str {
    match status {
        WorkflowStatus::Unspecified => "unspecified",
        WorkflowStatus::Pending => "pending",
        WorkflowStatus::Running => "running",
        WorkflowStatus::Completed => "completed",
        WorkflowStatus::Failed => "failed",
        WorkflowStatus::Cancelled => "cancelled",
    }
}

/// Errors returned by [`crate::Node`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state machine refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A member's engine is too old for the command (a rolling upgrade is
    /// under way); retryable.
    #[error("{0}")]
    Upgrading(String),
    /// A request argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// This node cannot propose: it is not the leader and no leader is known.
    #[error(
        "no Raft leader is known to node {node}; the cluster may be electing one or have lost its quorum, retry shortly"
    )]
    NoLeader {
        /// This node.
        node: u64,
    },
    /// The leader changed while the proposal was in flight; it may or may
    /// not have committed. Retrying is safe.
    #[error(
        "the Raft leader changed while the request was in flight; retry it (requests are idempotent or fenced)"
    )]
    LeaderChanged,
    /// The proposal did not commit in time.
    #[error(
        "the proposal was not committed within {0:?}; the cluster may have lost its quorum, retry"
    )]
    ProposalTimeout(Duration),
    /// A wait for a workflow ended before it finished.
    #[error("workflow '{workflow_id}' did not finish within {timeout:?}: it is {}{}", status_name(*.status), pending_suffix(.pending_reason))]
    WaitTimeout {
        /// The workflow.
        workflow_id: String,
        /// The timeout that elapsed.
        timeout: Duration,
        /// Its status when the wait ended.
        status: WorkflowStatus,
        /// Why it is pending, if it is.
        pending_reason: String,
    },
    /// A value exceeds the configured limit.
    #[error(
        "{what} is {len} bytes, over the limit of {max} bytes; store large data elsewhere and checkpoint a reference"
    )]
    ValueTooLarge {
        /// What was too large ("checkpoint value", "input", "result").
        what: String,
        /// Its size.
        len: usize,
        /// The limit (`max_value_bytes`).
        max: usize,
    },
    /// The id is (or was) a member already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The node is not a member.
    #[error("node {0} is not a member of this cluster")]
    NotMember(u64),
    /// The node is shutting down or its Raft loop has stopped.
    #[error("the Raftoral node is shutting down")]
    ShuttingDown,
    /// The node stopped after a storage failure (a failed write or fsync).
    #[error(
        "the Raftoral node stopped after a storage failure: {0}; restart it (its log is intact up to the last successful fsync)"
    )]
    StorageFailed(String),
    /// raft-rs reported an error.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Leadership did not move to the target in time.
    #[error(
        "leadership did not move to node {to} within {timeout:?}: it may be unreachable or far behind; check `raftoral cluster status` and retry"
    )]
    TransferTimeout {
        /// The target.
        to: u64,
        /// How long it was given.
        timeout: Duration,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Only the leader can do this (it alone knows which voters are live).
    #[error(
        "node {node} is not the leader (leader: node {leader}); send the request to the leader, or retry"
    )]
    NotLeader {
        /// This node.
        node: u64,
        /// The leader it knows; 0 when none.
        leader: u64,
    },
    /// A membership change would leave the cluster unable to commit.
    #[error("{0}")]
    QuorumAtRisk(String),
}

impl EngineError {
    /// True for failures that may succeed when retried: no leader yet, a
    /// leader change, a timeout, or a proposal raft-rs dropped (a leadership
    /// transfer in progress, too much uncommitted). Commands are idempotent
    /// or fenced, so a retry never applies twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EngineError::NoLeader { .. }
                | EngineError::Upgrading(_)
                | EngineError::LeaderChanged
                | EngineError::ProposalTimeout(_)
                | EngineError::TransferTimeout { .. }
                | EngineError::NotLeader { .. }
                | EngineError::Raft(raft::Error::ProposalDropped)
        )
    }
}

fn pending_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// Why a node is not healthy, or not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The Raft loop stopped after a storage failure.
    #[error(
        "the node stopped after a storage failure: {0}; restart it (its log is intact up to the last fsync)"
    )]
    StorageFailed(String),
    /// The Raft loop ended otherwise (a panic, i.e. a bug, or an exit
    /// nobody asked for), or another essential task failed.
    #[error("the node stopped: {0}")]
    Stopped(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// No leader is known: no quorum reachable from here, or an election.
    #[error("no leader known: an election is running or no quorum is reachable from this node")]
    NoLeader,
    /// The node was removed from the cluster: it will never be a member
    /// again under this id.
    #[error(
        "this node was removed from the cluster and no longer serves as a member; stop it, and start a replacement with a new node id and empty storage"
    )]
    Removed,
    /// The node is not a voter or learner (yet).
    #[error("this node is not a member of the cluster yet (waiting to be added after --join)")]
    NotMember,
    /// The node is still applying its log.
    #[error("catching up: applied index {applied} of {commit} committed")]
    CatchingUp {
        /// Highest applied index.
        applied: u64,
        /// Highest committed index.
        commit: u64,
    },
}
