//! A step proposal from an app, checked and turned into the `RecordStep`
//! command, and the command level each kind of entry needs.

use raftoral_proto::cluster::v1::RecordStep;
use raftoral_proto::sidecar::v1::{CheckpointProposal, HistoryEntryKind};

use crate::error::EngineError;
use crate::node::Node;
use crate::workflows::state_machine::{
    CHILDREN_LEVEL, EVENTS_LEVEL, MAX_STATUS_BYTES, MAX_TIMER_MS, STATUS_LEVEL, STEPS_LEVEL,
    TIMERS_LEVEL, WAIT_CANCEL_LEVEL,
};

impl Node {
    /// The `RecordStep` command of a proposal, checked: names and sizes,
    /// a failure where the kind needs one (and none on a value), bounded
    /// failure texts, the retry delay's limit.
    pub(crate) fn step_command(&self, p: CheckpointProposal) -> Result<RecordStep, EngineError> {
        use crate::workflows::limits::{
            MAX_ATTEMPT_FAILURE_BYTES, MAX_FAILURE_BYTES, MAX_RETRY_DELAY_MS, bounded_failure,
            check_name,
        };
        check_name("checkpoint_name", &p.checkpoint_name)?;
        self.check_value_size("checkpoint value", p.value.len())?;
        let kind = p.kind();
        let failure = match (kind, p.failure) {
            (
                HistoryEntryKind::Unspecified
                | HistoryEntryKind::TimerStarted
                | HistoryEntryKind::TimerCancelled
                | HistoryEntryKind::EventWaiting
                | HistoryEntryKind::EventWaitCancelled
                | HistoryEntryKind::ChildStarted
                | HistoryEntryKind::StatusSet,
                None,
            ) => None,
            (HistoryEntryKind::ChildCompleted | HistoryEntryKind::ChildFailed, _) => {
                return Err(EngineError::InvalidArgument(
                    "an app does not propose CHILD_COMPLETED or CHILD_FAILED: the cluster records a child's end".into(),
                ));
            }
            (HistoryEntryKind::EventReceived | HistoryEntryKind::EventTimedOut, _) => {
                return Err(EngineError::InvalidArgument(
                    "an app does not propose EVENT_RECEIVED or EVENT_TIMED_OUT: the cluster resolves an event wait".into(),
                ));
            }
            (
                HistoryEntryKind::EventWaiting
                | HistoryEntryKind::EventWaitCancelled
                | HistoryEntryKind::ChildStarted
                | HistoryEntryKind::StatusSet,
                Some(_),
            ) => {
                return Err(EngineError::InvalidArgument(format!(
                    "a {} entry carries no failure",
                    kind.as_str_name()
                )));
            }
            // The delivery of a cancel request at a sleep (`cancel.rs`).
            (HistoryEntryKind::TimerCancelled, Some(f))
                if f.r#type == crate::workflows::state_machine::CANCELLED_FAILURE_TYPE =>
            {
                Some(bounded_failure(f, MAX_FAILURE_BYTES)?)
            }
            (HistoryEntryKind::TimerStarted | HistoryEntryKind::TimerCancelled, Some(_)) => {
                return Err(EngineError::InvalidArgument(format!(
                    "a {} entry carries no failure",
                    kind.as_str_name()
                )));
            }
            (HistoryEntryKind::TimerFired, _) => {
                return Err(EngineError::InvalidArgument(
                    "an app does not propose TIMER_FIRED: the Raft leader fires timers".into(),
                ));
            }
            (HistoryEntryKind::Unspecified, Some(_)) => {
                return Err(EngineError::InvalidArgument(
                    "a step value carries no failure: set kind to STEP_FAILED or STEP_ATTEMPT_FAILED, or drop the failure".into(),
                ));
            }
            (_, None) => {
                return Err(EngineError::InvalidArgument(format!(
                    "a {} entry needs its failure (type and message)",
                    kind.as_str_name()
                )));
            }
            (HistoryEntryKind::StepAttemptFailed, Some(f)) => {
                Some(bounded_failure(f, MAX_ATTEMPT_FAILURE_BYTES)?)
            }
            (_, Some(f)) => Some(bounded_failure(f, MAX_FAILURE_BYTES)?),
        };
        if !matches!(
            kind,
            HistoryEntryKind::Unspecified | HistoryEntryKind::StatusSet
        ) && !p.value.is_empty()
        {
            return Err(EngineError::InvalidArgument(
                "only a step's value entry or a status carries a value".into(),
            ));
        }
        if kind == HistoryEntryKind::StatusSet && p.value.len() > MAX_STATUS_BYTES {
            return Err(EngineError::InvalidArgument(format!(
                "status '{}' is {} bytes, over the {MAX_STATUS_BYTES}-byte limit of a status \
                 value; keep a status small and put data in a step's value",
                p.checkpoint_name,
                p.value.len()
            )));
        }
        if p.timer_duration_ms > MAX_TIMER_MS {
            return Err(EngineError::InvalidArgument(format!(
                "timer_duration_ms is {}; a timer runs at most {MAX_TIMER_MS} ms (366 days): \
                 sleep in several steps for longer",
                p.timer_duration_ms
            )));
        }
        if p.timer_duration_ms > 0
            && !matches!(
                kind,
                HistoryEntryKind::TimerStarted | HistoryEntryKind::EventWaiting
            )
        {
            return Err(EngineError::InvalidArgument(
                "timer_duration_ms belongs to a TIMER_STARTED or EVENT_WAITING entry only".into(),
            ));
        }
        if p.retry_delay_ms > MAX_RETRY_DELAY_MS {
            return Err(EngineError::InvalidArgument(format!(
                "retry_delay_ms is {}; at most {MAX_RETRY_DELAY_MS} (7 days)",
                p.retry_delay_ms
            )));
        }
        if (kind == HistoryEntryKind::ChildStarted) != p.child.is_some() {
            return Err(EngineError::InvalidArgument(
                "a CHILD_STARTED proposal carries the child to start (child), and no other proposal does".into(),
            ));
        }
        if let Some(child) = &p.child {
            check_name("child.workflow_name", &child.workflow_name)?;
            if child.workflow_id.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "child.workflow_id must not be empty (the SDKs derive one from the parent's id and the position)".into(),
                ));
            }
            crate::workflows::limits::check_len(
                "child.workflow_id",
                &child.workflow_id,
                crate::workflows::limits::MAX_ID_BYTES,
            )?;
            self.check_value_size("child input", child.input.len())?;
            if child.workflow_id == p.workflow_id {
                return Err(EngineError::InvalidArgument(format!(
                    "workflow '{}' cannot be its own child: give the child another id (or none, and the SDK derives one)",
                    p.workflow_id
                )));
            }
        }
        Ok(RecordStep {
            child: p.child.map(Box::new),
            workflow_id: p.workflow_id,
            seq: p.seq,
            checkpoint_name: p.checkpoint_name,
            node_id: self.id(),
            kind: kind as i32,
            value: p.value,
            failure,
            attempt: p.attempt.max(1),
            retry_delay_ms: p.retry_delay_ms,
            timer_duration_ms: p.timer_duration_ms,
        })
    }
}

/// The command level a step command needs every member to apply.
pub(crate) fn needed_level(step: &RecordStep) -> u32 {
    level_of(step.kind())
}

/// The command level of an entry of `kind`.
pub(crate) fn level_of(kind: HistoryEntryKind) -> u32 {
    match kind {
        HistoryEntryKind::StatusSet => STATUS_LEVEL,
        HistoryEntryKind::EventWaiting => EVENTS_LEVEL,
        HistoryEntryKind::EventWaitCancelled => WAIT_CANCEL_LEVEL,
        HistoryEntryKind::ChildStarted => CHILDREN_LEVEL,
        HistoryEntryKind::TimerStarted | HistoryEntryKind::TimerCancelled => TIMERS_LEVEL,
        _ => STEPS_LEVEL,
    }
}
