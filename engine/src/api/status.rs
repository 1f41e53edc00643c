//! Maps engine errors to precise gRPC status codes.

use crate::error::{EngineError, Rejection};
use tonic::{Code, Status};

/// The gRPC status for an engine error.
pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::Rejected(r) => match r {
            Rejection::UnknownWorkflow(_) => Code::NotFound,
            Rejection::EmptyCommand | Rejection::InvalidStep(_) => Code::InvalidArgument,
            Rejection::TooManyOpenSteps { .. } | Rejection::InboxFull { .. } => {
                Code::ResourceExhausted
            }
            Rejection::NotRunning { .. } | Rejection::Ended { .. } => Code::FailedPrecondition,
            // Fencing conflicts: another writer won; the caller re-reads.
            Rejection::NotOwner { .. }
            | Rejection::UnexpectedSeq { .. }
            | Rejection::UnexpectedAttempt { .. } => Code::Aborted,
        },
        EngineError::InvalidArgument(_) | EngineError::ValueTooLarge { .. } => {
            Code::InvalidArgument
        }
        // Retryable: no leader yet, quorum lost, or this node is stopping.
        EngineError::NoLeader { .. }
        | EngineError::LeaderChanged
        | EngineError::ProposalTimeout(_)
        | EngineError::TransferTimeout { .. }
        | EngineError::NotLeader { .. }
        | EngineError::Upgrading(_)
        | EngineError::ShuttingDown => Code::Unavailable,
        // The sidecar exits and is restarted; callers retry meanwhile.
        EngineError::StorageFailed(_) => Code::Unavailable,
        EngineError::QuorumAtRisk(_) => Code::FailedPrecondition,
        EngineError::WaitTimeout { .. } => Code::DeadlineExceeded,
        EngineError::AlreadyExists(_) => Code::AlreadyExists,
        EngineError::NotMember(_) => Code::NotFound,
        // Dropped by raft-rs while leadership moves: retry shortly.
        EngineError::Raft(raft::Error::ProposalDropped) => Code::Unavailable,
        EngineError::Raft(_) | EngineError::Config(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_dropped_during_a_leadership_transfer_is_retried_not_lost() {
        // raft-rs drops proposals while leadership moves; callers that gave
        // up on them (a session's workflow result) would lose the outcome.
        let dropped = EngineError::Raft(raft::Error::ProposalDropped);
        assert!(dropped.is_retryable());
        assert_eq!(to_status(dropped).code(), Code::Unavailable);
        let other = EngineError::Raft(raft::Error::StepLocalMsg);
        assert!(!other.is_retryable());
        assert_eq!(to_status(other).code(), Code::Internal);
    }
}
