//! The mark of a delivered cancel request (app.proto,
//! `WorkflowCancellation`): both ends of the app stream read history
//! entries with it the same way.

use crate::sidecar::v1::{Failure, HistoryEntryKind};

/// The failure type of a delivered cancellation: the owner commits it at
/// the positions the code awaits, and a function that ends with it reports
/// it, which makes the workflow CANCELLED.
pub const CANCELLED_FAILURE_TYPE: &str = "raftoral.Cancelled";

/// True for an entry that delivered a cancel request: a step's final
/// failure, or a sleep's cancellation, of type [`CANCELLED_FAILURE_TYPE`].
///
/// ```
/// use raftoral_proto::cancel::{CANCELLED_FAILURE_TYPE, delivers_cancel};
/// use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind};
/// let f = Failure { r#type: CANCELLED_FAILURE_TYPE.into(), ..Failure::default() };
/// assert!(delivers_cancel(HistoryEntryKind::StepFailed, Some(&f)));
/// assert!(!delivers_cancel(HistoryEntryKind::StepAttemptFailed, Some(&f)));
/// assert!(!delivers_cancel(HistoryEntryKind::TimerCancelled, None));
/// ```
pub fn delivers_cancel(kind: HistoryEntryKind, failure: Option<&Failure>) -> bool {
    matches!(
        kind,
        HistoryEntryKind::StepFailed | HistoryEntryKind::TimerCancelled
    ) && failure.is_some_and(|f| f.r#type == CANCELLED_FAILURE_TYPE)
}
