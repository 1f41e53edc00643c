//! What the simulated code does where, the same in every seed: hashes of
//! the workflow id and position (not the seed's random source, so seeds
//! keep their scenarios): failing attempts, sleeps, event waits, children,
//! the events clients send and the cancels they ask for.

use prost::bytes::Bytes;
use raftoral_proto::cluster::v1::{RecordStep, SendEvent};
use raftoral_proto::sidecar::v1::{ChildStart, HistoryEntryKind};

use crate::workflows::state_machine::{NodeId, stable_hash};

/// The workflow type every app runs.
pub(super) const TYPE: &str = "sim";

/// A client's cancel of a workflow: when (after the start), with which
/// cleanup window, and whether the code's cleanup never ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct CancelPlan {
    pub after_ms: u64,
    pub cleanup_ms: u64,
    pub stubborn: bool,
}

/// The reason of every simulated cancel.
pub(super) const CANCEL_REASON: &str = "sim cancel";

/// The cancel of workflow `id`, if its client cancels it (about one in
/// five): a hash, as for [`outcome`].
pub(super) fn cancel_plan(id: &str) -> Option<CancelPlan> {
    let h = stable_hash(&format!("{id}:cancel"));
    h.is_multiple_of(5).then(|| CancelPlan {
        after_ms: [0, 100, 400, 1_500][((h >> 8) % 4) as usize],
        cleanup_ms: [300, 2_000][((h >> 12) % 2) as usize],
        stubborn: (h >> 16).is_multiple_of(3),
    })
}

/// What attempt `attempt` of step `seq` of workflow `id` does, the same in
/// every seed (a hash, not the seed's random source, so seeds keep their
/// scenarios): about one step in four fails its first one or two attempts,
/// one in sixteen fails for good at once (the code catches it and goes on).
pub(super) fn outcome(id: &str, seq: u64, attempt: u32) -> Option<HistoryEntryKind> {
    let h = stable_hash(&format!("{id}:{seq}"));
    if h % 16 == 1 {
        return Some(HistoryEntryKind::StepFailed);
    }
    let failing = if h.is_multiple_of(4) {
        1 + (h >> 8) % 2
    } else {
        0
    };
    (u64::from(attempt) <= failing).then_some(HistoryEntryKind::StepAttemptFailed)
}

/// The durable sleep at step `seq` of workflow `id`, if the code sleeps
/// there (about one position in five), with its duration (ms): a hash, as
/// for [`outcome`].
pub(super) fn sleep_at(id: &str, seq: u64) -> Option<u64> {
    let h = stable_hash(&format!("{id}:{seq}:sleep"));
    h.is_multiple_of(5)
        .then(|| [0, 50, 300, 1_000][((h >> 8) % 4) as usize])
}

/// The event wait at step `seq` of workflow `id`, if the code waits there
/// (about one position in six that is not a sleep), with its timeout (ms;
/// 0: none): a hash, as for [`outcome`].
pub(super) fn wait_at(id: &str, seq: u64) -> Option<u64> {
    if sleep_at(id, seq).is_some() {
        return None;
    }
    let h = stable_hash(&format!("{id}:{seq}:event"));
    h.is_multiple_of(6)
        .then(|| [0, 200, 1_500][((h >> 8) % 3) as usize])
}

/// The name of every simulated event.
pub(super) const EVENT: &str = "go";

/// The payload (and idempotency key) of event `j` sent to workflow `id`.
pub(super) fn event_payload(id: &str, j: usize) -> String {
    format!("{id}:ev{j}")
}

/// Event `j` of workflow `id`, keyed by its payload.
pub(super) fn event_command(id: &str, j: usize) -> SendEvent {
    let payload = event_payload(id, j);
    SendEvent {
        workflow_id: id.to_owned(),
        name: EVENT.into(),
        payload: Bytes::from(payload.clone()),
        idempotency_key: payload,
        failure: None,
    }
}

/// True when workflow `id`'s start carries its first event (a
/// signal-with-start, retried like any start): about half of those that
/// wait for events.
pub(super) fn signal_starts(id: &str) -> bool {
    stable_hash(&format!("{id}:signal-start")).is_multiple_of(2)
}

/// True when top-level workflow `id` starts a child at step `seq` (about
/// one position in seven; never a child's own code, so trees stay two
/// deep): a hash, as for the workload's other choices.
pub(super) fn child_at(id: &str, seq: u64) -> bool {
    !id.contains('/') && stable_hash(&format!("{id}:{seq}:child")).is_multiple_of(7)
}

/// The child's id: the SDKs' default.
pub(super) fn child_id(id: &str, seq: u64) -> String {
    format!("{id}/{seq}")
}

/// The owner's `CHILD_STARTED` at `seq` of `id`: a child of the simulated
/// type (not a flow of the workload, so its code finishes at once), with
/// the default parent-close policy.
pub(super) fn child_start(id: &str, seq: u64, node: NodeId) -> RecordStep {
    RecordStep {
        workflow_id: id.to_owned(),
        seq,
        checkpoint_name: TYPE.into(),
        node_id: node,
        kind: HistoryEntryKind::ChildStarted as i32,
        value: Bytes::new(),
        failure: None,
        attempt: 1,
        retry_delay_ms: 0,
        timer_duration_ms: 0,
        child: Some(Box::new(ChildStart {
            workflow_name: TYPE.into(),
            version: 1,
            input: Bytes::new(),
            workflow_id: child_id(id, seq),
            parent_close: 0,
        })),
    }
}
