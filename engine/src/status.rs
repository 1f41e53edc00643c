//! Maps engine errors to precise gRPC status codes.

use crate::error::{EngineError, Rejection};
use tonic::{Code, Status};

/// The gRPC status for an engine error.
pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::Rejected(r) => match r {
            Rejection::UnknownWorkflow(_) => Code::NotFound,
            Rejection::EmptyCommand => Code::InvalidArgument,
            Rejection::NotRunning { .. } => Code::FailedPrecondition,
            // Fencing conflicts: another writer won; the caller re-reads.
            Rejection::NotOwner { .. } | Rejection::UnexpectedSeq { .. } => Code::Aborted,
        },
        EngineError::InvalidArgument(_) | EngineError::ValueTooLarge { .. } => {
            Code::InvalidArgument
        }
        // Retryable: no leader yet, quorum lost, or this node is stopping.
        EngineError::NoLeader { .. }
        | EngineError::LeaderChanged
        | EngineError::ProposalTimeout(_)
        | EngineError::TransferTimeout { .. }
        | EngineError::ShuttingDown => Code::Unavailable,
        EngineError::WaitTimeout { .. } => Code::DeadlineExceeded,
        EngineError::AlreadyExists(_) => Code::AlreadyExists,
        EngineError::NotMember(_) => Code::NotFound,
        EngineError::Raft(_) | EngineError::Config(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}
