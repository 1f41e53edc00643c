//! Child workflows. A parent's `CHILD_STARTED` entry starts the child in
//! the same apply, so no state exists where the parent moved on and the
//! child does not. When the child ends, its result reaches the parent's
//! position as `CHILD_COMPLETED` or `CHILD_FAILED`; when the parent ends
//! first, each child still running meets its parent-close policy.
//!
//! The parent and the child talk by messages, never by reading each
//! other's state: the start carries everything the child needs, the end
//! carries the outcome to (parent, seq), and applying either twice is a
//! no-op (a child id that exists, a position resolved). With one Raft group
//! the message is delivered inside the apply that produces it; with
//! several groups it becomes an outbox entry delivered at least once
//! (docs/ARCHITECTURE.md, "Child workflows").

use std::sync::Arc;

use raftoral_proto::cluster::v1::{RecordStep, StartWorkflow};
use raftoral_proto::sidecar::v1::{Failure, HistoryEntryKind, ParentClosePolicy, WorkflowStatus};

use super::workflow::{Checkpoint, ParentLink};
use super::{Applied, Event, StateMachine};
use crate::error::Rejection;

/// The command level of child workflows (`CHILD_STARTED`).
pub const CHILDREN_LEVEL: u32 = 8;

/// The failure type of a child that was cancelled, at its parent.
pub const CHILD_CANCELLED_TYPE: &str = "raftoral.ChildCancelled";

/// The failure type of a child whose id another workflow holds.
pub const CHILD_ID_IN_USE_TYPE: &str = "raftoral.ChildIdInUse";

/// The cleanup window of a child cancelled because its parent ended
/// (the parent-close policy CANCEL).
pub const CHILD_CANCEL_CLEANUP_MS: u64 = 30_000;

impl StateMachine {
    /// `CHILD_STARTED` from the parent's owner (checked as a step's
    /// position already): appends the parent's entry and starts the child.
    /// A child id that another workflow holds resolves the position at once
    /// with a [`CHILD_ID_IN_USE_TYPE`] failure.
    pub(super) fn start_child(
        &mut self,
        c: &RecordStep,
        mut entry: Checkpoint,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Rejection> {
        let Some(child) = &c.child else {
            return Err(Rejection::InvalidStep(format!(
                "step {} of workflow '{}': a CHILD_STARTED entry carries the child to start",
                c.seq, c.workflow_id
            )));
        };
        if child.workflow_id == c.workflow_id {
            return Err(Rejection::InvalidStep(format!(
                "workflow '{}' cannot be its own child: give the child another id",
                c.workflow_id
            )));
        }
        let (seq, id) = (entry.seq, child.workflow_id.clone());
        entry.value = id.clone().into_bytes().into();
        entry.name = child.workflow_name.clone();
        let in_use = self.exists(&id);
        self.append_step(&c.workflow_id, entry, now, events);
        if in_use {
            let failure = Failure {
                r#type: CHILD_ID_IN_USE_TYPE.into(),
                message: format!(
                    "a workflow with id '{id}' exists already, so it was not started as a child of \
                     '{}': give each child its own id (or none, and the SDK derives one)",
                    c.workflow_id
                ),
                ..Failure::default()
            };
            self.child_resolved(
                &c.workflow_id,
                seq,
                &child.workflow_name,
                Err(failure),
                now,
                events,
            );
            return Ok(Applied::CheckpointRecorded);
        }
        let owner = self.workflows[&c.workflow_id].owner;
        let start = StartWorkflow {
            workflow_id: id.clone(),
            workflow_name: child.workflow_name.clone(),
            version: child.version.max(1),
            input: child.input.clone(),
            // Near its parent when that node runs the type.
            origin_node_id: owner,
            ..StartWorkflow::default()
        };
        self.start_workflow(&start, now, events);
        let wf = self
            .workflows
            .get_mut(&id)
            .map(Arc::make_mut)
            .expect("just started");
        wf.parent = Some(Box::new(ParentLink {
            workflow_id: c.workflow_id.clone(),
            seq,
            close: match child.parent_close() {
                ParentClosePolicy::Unspecified => ParentClosePolicy::Cancel,
                policy => policy,
            },
        }));
        Ok(Applied::CheckpointRecorded)
    }

    /// Workflow `id` reached a terminal status: its parent's position
    /// learns the outcome, and the children it started that still run meet
    /// their parent-close policy.
    pub(super) fn workflow_ended(&mut self, id: &str, now: u64, events: &mut Vec<Event>) {
        let Some(wf) = self.workflows.get(id).cloned() else {
            return;
        };
        if let Some(parent) = &wf.parent {
            let outcome = match wf.status {
                WorkflowStatus::Completed => Ok(wf.result.clone()),
                WorkflowStatus::Cancelled => Err(Failure {
                    r#type: CHILD_CANCELLED_TYPE.into(),
                    message: format!("child workflow '{id}' was cancelled: {}", wf.error),
                    ..Failure::default()
                }),
                _ => Err(wf.failure.as_deref().cloned().unwrap_or_else(|| Failure {
                    r#type: "raftoral.ChildFailed".into(),
                    message: wf.error.clone(),
                    ..Failure::default()
                })),
            };
            let open = self
                .workflows
                .get(&parent.workflow_id)
                .is_some_and(|p| !p.is_terminal() && p.open_child(parent.seq) == Some(id));
            if open {
                self.child_resolved(
                    &parent.workflow_id,
                    parent.seq,
                    &wf.name,
                    outcome,
                    now,
                    events,
                );
            }
        }
        let children: Vec<(u64, String)> = wf
            .checkpoints
            .iter()
            .filter(|e| e.kind == HistoryEntryKind::ChildStarted)
            .map(|e| (e.seq, String::from_utf8_lossy(&e.value).into_owned()))
            .collect();
        for (seq, child) in children {
            let Some(c) = self.workflows.get(&child) else {
                continue;
            };
            let ours = c
                .parent
                .as_ref()
                .is_some_and(|p| p.workflow_id == id && p.seq == seq);
            if !ours || c.is_terminal() {
                continue;
            }
            let reason = format!("its parent '{id}' ended ({})", wf.status.as_str_name());
            match c.parent.as_ref().map(|p| p.close) {
                Some(ParentClosePolicy::Abandon) => {}
                Some(ParentClosePolicy::Terminate) => {
                    self.end_cancelled(&child, reason, now, events);
                }
                _ if c.status == WorkflowStatus::Running => {
                    let deadline = now.saturating_add(CHILD_CANCEL_CLEANUP_MS);
                    self.request_cancel(&child, reason, deadline, now, events);
                }
                _ => self.end_cancelled(&child, reason, now, events),
            }
        }
    }

    /// Resolves the parent's child position `seq` with the child's result
    /// (`CHILD_COMPLETED`) or failure (`CHILD_FAILED`).
    fn child_resolved(
        &mut self,
        parent: &str,
        seq: u64,
        name: &str,
        outcome: Result<bytes::Bytes, Failure>,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let (kind, value, failure) = match outcome {
            Ok(value) => (HistoryEntryKind::ChildCompleted, value, None),
            Err(f) => (
                HistoryEntryKind::ChildFailed,
                bytes::Bytes::new(),
                Some(Box::new(f)),
            ),
        };
        let entry = Checkpoint {
            seq,
            name: name.to_owned(),
            kind,
            value,
            failure,
            attempt: 1,
            next_attempt_at_ms: 0,
            committed_at_ms: now,
        };
        self.append_step(parent, entry, now, events);
    }
}
