//! Child workflows in the simulated workload: what must hold of parents
//! and children at the end.

use raftoral_proto::sidecar::v1::{HistoryEntryKind, WorkflowStatus};

use super::choices::child_id;
use super::workload::Acked;
use crate::workflows::state_machine::{NodeId, StateMachine, is_terminal};

/// Every acknowledged child start holds: the parent has one `CHILD_STARTED`
/// there and the child exists with its link; a child's end that reached
/// its parent matches the child; a parent that ended leaves no child
/// running without a cancel request (its policy is the default, cancel).
pub(super) fn check_children(
    node: NodeId,
    state: &StateMachine,
    acked: &Acked,
    retention: bool,
) -> Result<(), String> {
    for (id, seq) in &acked.children {
        let Some(parent) = state.workflow(id) else {
            continue; // purged
        };
        let starts = parent
            .checkpoints
            .iter()
            .filter(|c| c.seq == *seq && c.kind == HistoryEntryKind::ChildStarted)
            .count();
        if starts != 1 {
            return Err(format!(
                "node {node}: acknowledged child start {id}#{seq} recorded {starts} times"
            ));
        }
        let kid = child_id(id, *seq);
        let Some(child) = state.workflow(&kid) else {
            if retention {
                continue; // finished and purged
            }
            return Err(format!("node {node}: child {kid} of {id}#{seq} is missing"));
        };
        let linked = child
            .parent
            .as_ref()
            .is_some_and(|p| p.workflow_id == *id && p.seq == *seq);
        if !linked {
            return Err(format!("node {node}: child {kid} lost its parent link"));
        }
        let end = parent
            .checkpoints
            .iter()
            .find(|c| c.seq == *seq && c.resolves());
        match end.map(|c| c.kind) {
            Some(HistoryEntryKind::ChildCompleted)
                if child.status != WorkflowStatus::Completed
                    || end.is_some_and(|c| c.value != child.result) =>
            {
                return Err(format!(
                    "node {node}: {id}#{seq} completed with {:?}, its child {kid} is {:?} with {:?}",
                    end.map(|c| &c.value),
                    child.status,
                    child.result
                ));
            }
            Some(HistoryEntryKind::ChildFailed) if !is_terminal(child.status) => {
                return Err(format!(
                    "node {node}: {id}#{seq} failed while its child {kid} runs"
                ));
            }
            _ => {}
        }
        if is_terminal(parent.status) && !is_terminal(child.status) && child.cancel_deadline_ms == 0
        {
            return Err(format!(
                "node {node}: parent {id} ended, its child {kid} runs without a cancel request"
            ));
        }
    }
    Ok(())
}
