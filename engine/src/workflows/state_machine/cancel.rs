//! Cancelling a workflow (`CancelWorkflow`): at once, or as a request with
//! a cleanup window.
//!
//! A pending workflow, or a cancel with no window, ends CANCELLED when the
//! command applies. A running workflow's cancel with a window is a request
//! (command level [`CANCEL_LEVEL`]): the workflow stays RUNNING, its owner
//! delivers the cancellation into the code as `raftoral.Cancelled`
//! failures at the positions the code awaits (`steps.rs` accepts them only
//! then), the code may run compensation steps, and the workflow ends
//! CANCELLED when its code ends with that failure (`finish_workflow`), or
//! when the window's timer fires, whatever the code is doing.

use std::sync::Arc;

use raftoral_proto::cluster::v1::CancelWorkflow;
use raftoral_proto::sidecar::v1::{Failure, WorkflowStatus};

use super::workflow::{CANCELLED_FAILURE_TYPE, Workflow};
use super::{Applied, Event, MAX_TIMER_MS, StateMachine, TimerSlot};
use crate::error::Rejection;

/// The command level of cancel requests (`CancelWorkflow.cleanup_ms`, and
/// the `raftoral.Cancelled` entries that deliver them).
pub const CANCEL_LEVEL: u32 = 4;

/// True when a failed outcome of `wf` makes it CANCELLED: a cancel was
/// requested and the code ended with its cancellation.
pub(super) fn ends_cancelled(wf: &Workflow, failure: Option<&Failure>) -> bool {
    wf.cancel_requested() && failure.is_some_and(|f| f.r#type == CANCELLED_FAILURE_TYPE)
}

impl StateMachine {
    pub(super) fn cancel_workflow(
        &mut self,
        c: &CancelWorkflow,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        let Some(wf) = self.workflows.get(&c.workflow_id) else {
            // A flushed workflow is finished: cancelling it is a no-op.
            return match self.archived(&c.workflow_id) {
                Some(_) => Ok(Applied::Cancelled),
                None => Err(Rejection::UnknownWorkflow(c.workflow_id.clone())),
            };
        };
        if wf.is_terminal() {
            return Ok(Applied::Cancelled);
        }
        let reason = if c.reason.is_empty() {
            "cancelled".to_owned()
        } else {
            c.reason.clone()
        };
        if wf.status == WorkflowStatus::Running && c.cleanup_ms > 0 {
            let deadline = now.saturating_add(c.cleanup_ms.min(MAX_TIMER_MS));
            Ok(self.request_cancel(&c.workflow_id, reason, deadline, now, events))
        } else {
            self.end_cancelled(&c.workflow_id, reason, now, events);
            Ok(Applied::Cancelled)
        }
    }

    /// Records a cancel request ending at `deadline`. A second request
    /// keeps the earlier deadline (and the first reason).
    pub(super) fn request_cancel(
        &mut self,
        id: &str,
        reason: String,
        deadline: u64,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Applied {
        let wf = self
            .workflows
            .get_mut(id)
            .map(Arc::make_mut)
            .expect("checked by the caller");
        let earlier = wf.cancel_deadline_ms;
        if earlier > 0 && earlier <= deadline {
            return Applied::CancelRequested;
        }
        if earlier == 0 {
            wf.cancel_reason = reason;
        }
        wf.cancel_deadline_ms = deadline;
        wf.updated_at_ms = now;
        let reason = wf.cancel_reason.clone();
        if earlier > 0 {
            self.timers
                .remove(&(earlier, id.to_owned(), TimerSlot::CancelCleanup));
        }
        self.timers
            .insert((deadline, id.to_owned(), TimerSlot::CancelCleanup));
        events.push(Event::WorkflowCancelRequested {
            workflow_id: id.to_owned(),
            reason,
            cleanup_until_ms: deadline,
        });
        Applied::CancelRequested
    }

    /// The cleanup window of a cancel request ran out: the workflow is
    /// cancelled now.
    pub(super) fn cleanup_expired(&mut self, id: &str, now: u64, events: &mut Vec<Event>) {
        let wf = &self.workflows[id];
        let reason = format!(
            "{} (the cleanup window ran out at {} ms, log time, before the workflow's code ended)",
            wf.cancel_reason, wf.cancel_deadline_ms
        );
        self.end_cancelled(id, reason, now, events);
    }

    /// Ends a pending or running workflow as CANCELLED; its apps stop
    /// their runs.
    pub(super) fn end_cancelled(
        &mut self,
        id: &str,
        reason: String,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        self.stop_run(id, WorkflowStatus::Cancelled, reason, None, now, events);
    }

    /// Ends a pending or running workflow with `status` and `error`, its
    /// code cut off: its apps stop the run and report nothing (a cancel,
    /// an execution timeout).
    pub(super) fn stop_run(
        &mut self,
        id: &str,
        status: WorkflowStatus,
        error: String,
        failure: Option<Failure>,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let wf = self
            .workflows
            .get_mut(id)
            .map(Arc::make_mut)
            .expect("checked by the caller");
        let was = wf.status;
        wf.status = status;
        wf.error = error;
        if failure.is_some() {
            wf.failure = failure.map(Box::new);
        }
        wf.pending_reason.clear();
        wf.updated_at_ms = now;
        events.push(Event::WorkflowCancelled {
            workflow_id: id.to_owned(),
            reason: wf.error.clone(),
        });
        events.push(Event::WorkflowFinished {
            workflow_id: id.to_owned(),
            status,
        });
        self.note_finished(id, was, status, now, events);
    }
}
