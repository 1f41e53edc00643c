//! What must hold at every step and at the end of a simulation.

use std::collections::BTreeMap;

use crate::workflows::state_machine::{NodeId, StateMachine, is_terminal};

use super::workload::Workload;

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
                "{} {:?} owner={} steps={:?} result={:?} error={:?} created={} updated={}",
                w.id,
                w.status,
                w.owner,
                w.checkpoints
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.clone(), c.committed_at_ms))
                    .collect::<Vec<_>>(),
                w.result,
                w.error,
                w.created_at_ms,
                w.updated_at_ms,
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
                w.checkpoints.len(),
                flow.steps,
                w.owner
            ));
        }
        if w.checkpoints.len() as u64 != flow.steps {
            return Err(format!(
                "node {node}: workflow {} finished with {} steps, its code has {}",
                flow.id,
                w.checkpoints.len(),
                flow.steps
            ));
        }
    }
    for ((id, seq), value) in &workload.acked.checkpoints {
        let Some(w) = state.workflow(id) else {
            continue; // purged (checked above)
        };
        let got = w.checkpoints.get(*seq as usize).map(|c| c.value.clone());
        if got.as_ref() != Some(value) {
            return Err(format!(
                "node {node}: acknowledged checkpoint {id}#{seq} lost (history has {got:?})"
            ));
        }
    }
    Ok(())
}
