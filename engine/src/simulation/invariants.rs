//! What must hold at every step and at the end of a simulation.

use std::collections::{BTreeMap, BTreeSet};

use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::workflows::state_machine::{NodeId, StateMachine, is_terminal};

use super::workload::{Resolution, Workload};

/// The first leader seen per term: a second one is a split brain.
#[derive(Default)]
pub(super) struct Leaders {
    by_term: BTreeMap<u64, NodeId>,
}

impl Leaders {
    pub(super) fn saw(&mut self, term: u64, leader: NodeId) -> Result<(), String> {
        match self.by_term.insert(term, leader) {
            Some(other) if other != leader => Err(format!(
                "two leaders in term {term}: nodes {other} and {leader}"
            )),
            _ => Ok(()),
        }
    }
}

/// A purge applied in one step removes about `chunk` workflows at most
/// (twice that: those that finish at the newest millisecond it covers
/// while it is in flight join it), or one millisecond's (`purges`:
/// removed, distinct milliseconds). Applying a purge runs on every node's
/// Raft loop, and one over a whole backlog stalls it past an election
/// timeout.
pub(super) fn bounded_purges(purges: &[(u64, usize)], chunk: usize) -> Result<(), String> {
    let most = 2 * chunk as u64;
    match purges
        .iter()
        .find(|(removed, spread)| *removed > most && *spread > 1)
    {
        Some((removed, spread)) => Err(format!(
            "one purge removed {removed} workflows finished over {spread} milliseconds; at most {most} (or one millisecond's) per entry"
        )),
        None => Ok(()),
    }
}

/// The replicated state a node shows for the workload's workflows, as
/// lines (one per workflow, then the totals): equal on two nodes at the
/// same applied index, or the replicas diverged.
pub(super) fn digest(state: &StateMachine, workload: &Workload) -> Vec<String> {
    let mut lines: Vec<String> = workload
        .flows
        .iter()
        .map(|f| match state.workflow(&f.id) {
            None => format!("{} absent", f.id),
            Some(w) => format!(
                "{} {:?} owner={} steps={:?} result={:?} error={:?} created={} updated={} inbox={:?}",
                w.id,
                w.status,
                w.owner,
                w.checkpoints
                    .iter()
                    .map(|c| (
                        c.seq,
                        c.name.as_str(),
                        c.kind,
                        c.value.clone(),
                        c.failure.as_ref().map(|f| f.message.as_str()),
                        c.attempt,
                        c.next_attempt_at_ms,
                        c.committed_at_ms
                    ))
                    .collect::<Vec<_>>(),
                w.result,
                w.error,
                w.created_at_ms,
                w.updated_at_ms,
                w.inbox.as_ref().map(|i| (
                    i.events
                        .iter()
                        .map(|e| (e.name.as_str(), e.payload.clone()))
                        .collect::<Vec<_>>(),
                    &i.keys
                )),
            ),
        })
        .collect();
    lines.push(format!(
        "count={} log_time={} purged_before={} members={:?}",
        state.workflow_count(),
        state.log_time_ms(),
        state.purged_before_ms(),
        state.member_addresses(),
    ));
    lines
}

/// The first line where two digests differ.
pub(super) fn first_difference(a: &[String], b: &[String]) -> Option<(String, String)> {
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map(|(x, y)| (x.clone(), y.clone()))
}

/// What the end state of one node must show: every acknowledged start,
/// checkpoint and finish (unless retention removed the finished
/// workflow), every workflow finished.
pub(super) fn check_end(
    node: NodeId,
    state: &StateMachine,
    workload: &Workload,
    retention: bool,
) -> Result<(), String> {
    for flow in &workload.flows {
        let found = state.workflow(&flow.id);
        let Some(w) = found else {
            if retention && flow.started {
                continue; // finished and purged
            }
            return Err(format!(
                "node {node}: workflow {} is missing (start acknowledged: {})",
                flow.id, flow.started
            ));
        };
        if !is_terminal(w.status) {
            return Err(format!(
                "node {node}: workflow {} never finished ({:?}, {} of {} steps, owner {})",
                flow.id,
                w.status,
                w.resolved_steps(),
                flow.steps,
                w.owner
            ));
        }
        if w.status == WorkflowStatus::Cancelled {
            // Only a cancel ends a workflow CANCELLED: by its code, after
            // the delivery, or by the window, not before its deadline.
            if flow.cancel.is_none() {
                return Err(format!(
                    "node {node}: workflow {} cancelled, nobody asked",
                    flow.id
                ));
            }
            let delivered = w.checkpoints.iter().any(|c| c.is_cancellation());
            let by_window = w.error.contains("cleanup window ran out");
            if by_window && w.updated_at_ms < w.cancel_deadline_ms {
                return Err(format!(
                    "node {node}: workflow {} cut off at {} before its cleanup deadline {}",
                    flow.id, w.updated_at_ms, w.cancel_deadline_ms
                ));
            }
            if !by_window && !delivered && w.cancel_deadline_ms > 0 {
                return Err(format!(
                    "node {node}: workflow {} ended cancelled by its code without a delivery",
                    flow.id
                ));
            }
        } else if w.resolved_steps() != flow.steps {
            return Err(format!(
                "node {node}: workflow {} finished with {} steps, its code has {}",
                flow.id,
                w.resolved_steps(),
                flow.steps
            ));
        }
        history_shape(&w).map_err(|e| format!("node {node}: workflow {}: {e}", flow.id))?;
    }
    for ((id, seq), resolution) in &workload.acked.checkpoints {
        let Some(w) = state.workflow(id) else {
            continue; // purged (checked above)
        };
        let got = w
            .checkpoints
            .iter()
            .find(|c| c.seq == *seq && c.resolves())
            .map(|c| match &c.failure {
                Some(f) => Resolution::Failed(f.message.clone()),
                None => Resolution::Value(c.value.clone()),
            });
        if got.as_ref() != Some(resolution) {
            return Err(format!(
                "node {node}: acknowledged step {id}#{seq} lost (history has {got:?})"
            ));
        }
    }
    for (id, seq) in &workload.acked.timers {
        let Some(w) = state.workflow(id) else {
            continue;
        };
        let kept = w.checkpoints.iter().any(|c| {
            c.seq == *seq
                && matches!(
                    c.kind,
                    raftoral_proto::sidecar::v1::HistoryEntryKind::TimerStarted
                        | raftoral_proto::sidecar::v1::HistoryEntryKind::EventWaiting
                )
        });
        if !kept {
            return Err(format!(
                "node {node}: acknowledged timer start or event wait {id}#{seq} lost"
            ));
        }
    }
    // Every acknowledged event is consumed or in the inbox, exactly once
    // (its key makes a client's retries one delivery).
    for (id, payload) in &workload.acked.events {
        let Some(w) = state.workflow(id) else {
            continue;
        };
        // A wait that lost a race gives its event back (the entry that
        // cancels it holds the payload): taken again later, or waiting.
        let count = |kind| {
            w.checkpoints
                .iter()
                .filter(|c| c.kind == kind && c.value == payload.as_bytes())
                .count()
        };
        use raftoral_proto::sidecar::v1::HistoryEntryKind::{EventReceived, EventWaitCancelled};
        let consumed = count(EventReceived) - count(EventWaitCancelled);
        let waiting = w.inbox.as_ref().map_or(0, |i| {
            i.events
                .iter()
                .filter(|e| e.payload == payload.as_bytes())
                .count()
        });
        if consumed + waiting != 1 {
            return Err(format!(
                "node {node}: acknowledged event {payload} of {id} consumed {consumed} times, in the inbox {waiting} times"
            ));
        }
    }
    super::children::check_children(node, state, &workload.acked, retention)?;
    for (id, seq, attempt) in &workload.acked.attempts {
        let Some(w) = state.workflow(id) else {
            continue;
        };
        let kept = w
            .checkpoints
            .iter()
            .any(|c| c.seq == *seq && c.attempt == *attempt && !c.resolves());
        if !kept {
            return Err(format!(
                "node {node}: acknowledged failed attempt {attempt} of {id}#{seq} lost"
            ));
        }
    }
    Ok(())
}

/// A history's own rules: each seq resolved once, after its failed
/// attempts numbered 1, 2, ... without a gap, and the resolution's attempt
/// after them.
fn history_shape(w: &crate::workflows::state_machine::Workflow) -> Result<(), String> {
    use raftoral_proto::sidecar::v1::HistoryEntryKind;
    let mut attempts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut resolved = BTreeSet::new();
    // Timers: started once, before anything else at their position; fired
    // only after their start and never before its deadline in log time.
    let mut started: BTreeMap<u64, u64> = BTreeMap::new();
    // Event waits: committed once, resolved by an event or a timeout never
    // before its deadline (and never without one).
    let mut waits: BTreeMap<u64, u64> = BTreeMap::new();
    // Waits that received an event, and those that gave it back once
    // cancelled (the losers of a race).
    let mut received = BTreeSet::new();
    let mut returned = BTreeSet::new();
    // Children started (their end resolves the position).
    let mut children = BTreeSet::new();
    for c in &w.checkpoints {
        if resolved.contains(&c.seq) {
            if c.kind == HistoryEntryKind::EventWaitCancelled
                && received.contains(&c.seq)
                && returned.insert(c.seq)
            {
                continue;
            }
            return Err(format!("step {} has an entry after its resolution", c.seq));
        }
        match c.kind {
            HistoryEntryKind::TimerStarted => {
                if attempts.contains_key(&c.seq) || started.contains_key(&c.seq) {
                    return Err(format!("timer {} started after other entries", c.seq));
                }
                started.insert(c.seq, c.next_attempt_at_ms);
                continue;
            }
            // A sleep's cancellation (a delivered cancel request).
            HistoryEntryKind::TimerCancelled => {
                resolved.insert(c.seq);
                continue;
            }
            HistoryEntryKind::EventWaiting => {
                if attempts.contains_key(&c.seq) || waits.contains_key(&c.seq) {
                    return Err(format!("event wait {} after other entries", c.seq));
                }
                waits.insert(c.seq, c.next_attempt_at_ms);
                continue;
            }
            HistoryEntryKind::EventReceived | HistoryEntryKind::EventTimedOut => {
                let Some(deadline) = waits.get(&c.seq) else {
                    return Err(format!("event wait {} resolved without a wait", c.seq));
                };
                if c.kind == HistoryEntryKind::EventTimedOut
                    && (*deadline == 0 || c.committed_at_ms < *deadline)
                {
                    return Err(format!(
                        "event wait {} timed out at {} before its deadline {deadline}",
                        c.seq, c.committed_at_ms
                    ));
                }
                if c.kind == HistoryEntryKind::EventReceived {
                    received.insert(c.seq);
                }
                resolved.insert(c.seq);
                continue;
            }
            // A wait cancelled before it resolved (or before it committed).
            HistoryEntryKind::EventWaitCancelled => {
                resolved.insert(c.seq);
                continue;
            }
            HistoryEntryKind::ChildStarted => {
                if attempts.contains_key(&c.seq) || !children.insert(c.seq) {
                    return Err(format!("child {} started after other entries", c.seq));
                }
                continue;
            }
            HistoryEntryKind::ChildCompleted | HistoryEntryKind::ChildFailed => {
                if !children.contains(&c.seq) {
                    return Err(format!("child {} ended without a start", c.seq));
                }
                resolved.insert(c.seq);
                continue;
            }
            HistoryEntryKind::TimerFired => {
                let Some(deadline) = started.get(&c.seq) else {
                    return Err(format!("timer {} fired without a start", c.seq));
                };
                if c.committed_at_ms < *deadline {
                    return Err(format!(
                        "timer {} fired at {} before its deadline {deadline}",
                        c.seq, c.committed_at_ms
                    ));
                }
                resolved.insert(c.seq);
                continue;
            }
            _ if started.contains_key(&c.seq) => {
                return Err(format!("step entry at timer position {}", c.seq));
            }
            _ => {}
        }
        let last = attempts.get(&c.seq).copied().unwrap_or(0);
        if c.resolves() {
            if c.attempt <= last {
                return Err(format!(
                    "step {} resolved by attempt {} after attempt {last} failed",
                    c.seq, c.attempt
                ));
            }
            resolved.insert(c.seq);
        } else if c.attempt != last + 1 {
            return Err(format!(
                "step {} failed attempt {} after attempt {last}",
                c.seq, c.attempt
            ));
        } else {
            attempts.insert(c.seq, c.attempt);
        }
    }
    Ok(())
}
