//! A workflow's record: the form snapshots and the state store hold, and
//! back.

use raftoral_proto::cluster::v1::{CheckpointEntry, InboxEvent, WorkflowRecord};

use super::workflow::{Checkpoint, Inbox, ParentLink, StepIndex, Workflow};

/// A workflow as a snapshot or the store holds it.
pub(super) fn record(w: &Workflow) -> WorkflowRecord {
    let plain = w.steps.is_plain();
    WorkflowRecord {
        workflow_id: w.id.clone(),
        workflow_name: w.name.clone(),
        version: w.version,
        input: w.input.clone(),
        status: w.status as i32,
        owner_node_id: w.owner,
        checkpoints: w
            .checkpoints
            .iter()
            .map(|c| CheckpointEntry {
                checkpoint_name: c.name.clone(),
                value: c.value.clone(),
                committed_at_ms: c.committed_at_ms,
                // A plain history is written as before kinds existed, so an
                // older engine reading it sees what it always did.
                seq: if plain { 0 } else { c.seq },
                kind: c.kind as i32,
                failure: c.failure.as_deref().cloned(),
                attempt: if plain { 0 } else { c.attempt },
                next_attempt_at_ms: c.next_attempt_at_ms,
            })
            .collect(),
        history_format: u32::from(!plain),
        failure: w.failure.as_deref().cloned(),
        result: w.result.clone(),
        error: w.error.clone(),
        pending_reason: w.pending_reason.clone(),
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
        start_at_ms: w.start_at_ms,
        timeout_at_ms: w.timeout_at_ms,
        cancel_reason: w.cancel_reason.clone(),
        cancel_deadline_ms: w.cancel_deadline_ms,
        inbox: w
            .inbox
            .as_ref()
            .map(|i| i.events.iter().cloned().collect())
            .unwrap_or_default(),
        event_keys: w
            .inbox
            .as_ref()
            .map(|i| i.keys.iter().cloned().collect())
            .unwrap_or_default(),
        parent_id: w
            .parent
            .as_ref()
            .map_or_else(String::new, |p| p.workflow_id.clone()),
        parent_seq: w.parent.as_ref().map_or(0, |p| p.seq),
        parent_close: w.parent.as_ref().map_or(0, |p| p.close as i32),
    }
}

/// A workflow from its snapshot or store form.
pub(super) fn workflow(w: WorkflowRecord) -> Workflow {
    let status = w.status();
    let parent = (!w.parent_id.is_empty()).then(|| {
        Box::new(ParentLink {
            close: w.parent_close(),
            workflow_id: w.parent_id.clone(),
            seq: w.parent_seq,
        })
    });
    let plain = w.history_format == 0;
    let checkpoints: Vec<Checkpoint> = w
        .checkpoints
        .into_iter()
        .enumerate()
        .map(|(i, c)| Checkpoint {
            kind: c.kind(),
            seq: if plain { i as u64 } else { c.seq },
            name: c.checkpoint_name,
            value: c.value,
            failure: c.failure.map(Box::new),
            attempt: c.attempt.max(1),
            next_attempt_at_ms: c.next_attempt_at_ms,
            committed_at_ms: c.committed_at_ms,
        })
        .collect();
    Workflow {
        id: w.workflow_id,
        name: w.workflow_name,
        version: w.version,
        input: w.input,
        status,
        owner: w.owner_node_id,
        steps: StepIndex::of(&checkpoints),
        checkpoints,
        result: w.result,
        error: w.error,
        failure: w.failure.map(Box::new),
        pending_reason: w.pending_reason,
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
        start_at_ms: w.start_at_ms,
        timeout_at_ms: w.timeout_at_ms,
        cancel_reason: w.cancel_reason,
        cancel_deadline_ms: w.cancel_deadline_ms,
        parent,
        inbox: inbox_of(w.inbox, w.event_keys),
    }
}

/// The inbox of a record: none when it holds no event and no key.
fn inbox_of(events: Vec<InboxEvent>, keys: Vec<String>) -> Option<Box<Inbox>> {
    if events.is_empty() && keys.is_empty() {
        return None;
    }
    let mut inbox = Inbox {
        bytes: events.iter().map(|e| e.payload.len()).sum(),
        events: events.into(),
        ..Inbox::default()
    };
    for key in &keys {
        inbox.remember(key);
    }
    Some(Box::new(inbox))
}
