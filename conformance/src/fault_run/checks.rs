//! The checks after the run, once the load has stopped and every workflow
//! has settled: results, histories on every node, no committed step
//! computed again, no non-determinism report.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use raftoral_client::proto::sidecar::v1::{
    GetWorkflowHistoryRequest, HistoryEntry, ListWorkflowsRequest, WorkflowInfo, WorkflowStatus,
};

use super::load::{Nodes, Started};
use crate::cluster::Cluster;
use crate::{Effect, read_effects_timed, steps_sum};

/// Longest time the workflows may take to settle after the load stops.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// Every workflow, through node `via` (all pages).
pub async fn list_all(nodes: &Nodes, via: u64) -> anyhow::Result<Vec<WorkflowInfo>> {
    let mut client = nodes.client(via);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_workflows(ListWorkflowsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(page.workflows);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

fn settled(wf: &WorkflowInfo) -> bool {
    !matches!(
        wf.status(),
        WorkflowStatus::Pending | WorkflowStatus::Running
    )
}

/// Polls until no workflow is pending or running, or the deadline passes;
/// returns the last listing (through the nodes in turn, so one node that
/// cannot answer does not stop it).
pub async fn settle(nodes: &Nodes) -> anyhow::Result<Vec<WorkflowInfo>> {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let ids = nodes.ids();
    let mut last = None;
    for round in 0.. {
        tick.tick().await;
        let via = ids[round % ids.len()];
        match list_all(nodes, via).await {
            Ok(all) if all.iter().all(settled) => return Ok(all),
            Ok(all) => last = Some(all),
            Err(e) => tracing::debug!(node = via, error = %e, "list failed while settling"),
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
    }
    match last {
        Some(all) => Ok(all),
        None => anyhow::bail!("no node could list the workflows within {SETTLE_DEADLINE:?}"),
    }
}

/// Results: every acknowledged start completed with its `steps` sum, and no
/// workflow ended other than COMPLETED (none fails or is cancelled on
/// purpose in this run).
pub fn results(started: &[Started], all: &[WorkflowInfo], violations: &mut Vec<String>) {
    let by_id: HashMap<&str, &WorkflowInfo> =
        all.iter().map(|w| (w.workflow_id.as_str(), w)).collect();
    for s in started.iter().filter(|s| s.acknowledged) {
        let Some(wf) = by_id.get(s.workflow_id.as_str()) else {
            violations.push(format!("{}: acknowledged but unknown", s.workflow_id));
            continue;
        };
        if wf.status() == WorkflowStatus::Completed {
            let sum: Option<u64> = serde_json::from_slice(&wf.result).ok();
            if sum != Some(steps_sum(s.n)) {
                violations.push(format!(
                    "{}: result {:?}, expected {}",
                    s.workflow_id,
                    String::from_utf8_lossy(&wf.result),
                    steps_sum(s.n)
                ));
            }
        }
    }
    for wf in all {
        if wf.status() != WorkflowStatus::Completed {
            violations.push(format!(
                "{}: {:?} (owner {}, {} checkpoints) {}{}",
                wf.workflow_id,
                wf.status(),
                wf.owner_node_id,
                wf.checkpoint_count,
                wf.error,
                wf.pending_reason
            ));
        }
    }
}

/// The committed history of `id` through `node`.
async fn history(nodes: &Nodes, node: u64, id: &str) -> anyhow::Result<Vec<HistoryEntry>> {
    Ok(nodes
        .client(node)
        .get_workflow_history(GetWorkflowHistoryRequest {
            workflow_id: id.into(),
        })
        .await?
        .into_inner()
        .entries)
}

/// Histories: through every node, every workflow's history is step-0,
/// step-1, ... each exactly once with value 2i, as many as a completed
/// workflow's steps, and the same on every node. Returns each workflow's
/// commit times.
pub async fn histories(
    nodes: &Nodes,
    started: &[Started],
    all: &[WorkflowInfo],
    violations: &mut Vec<String>,
) -> anyhow::Result<HashMap<String, CommitTimes>> {
    let steps: HashMap<&str, u64> = started
        .iter()
        .map(|s| (s.workflow_id.as_str(), s.n))
        .collect();
    let mut commit_times = HashMap::new();
    for wf in all {
        let id = wf.workflow_id.as_str();
        let mut reference: Option<(u64, Vec<HistoryEntry>)> = None;
        for node in nodes.ids() {
            let entries = history(nodes, node, id).await?;
            for (i, e) in entries.iter().enumerate() {
                let value: Option<u64> = serde_json::from_slice(&e.value).ok();
                if e.seq != i as u64
                    || e.checkpoint_name != format!("step-{i}")
                    || value != Some(2 * i as u64)
                {
                    violations.push(format!(
                        "{id} on node {node}: entry {i} is seq {} {} = {:?}",
                        e.seq,
                        e.checkpoint_name,
                        String::from_utf8_lossy(&e.value)
                    ));
                }
            }
            if wf.status() == WorkflowStatus::Completed
                && let Some(n) = steps.get(id)
                && entries.len() as u64 != *n
            {
                violations.push(format!(
                    "{id} on node {node}: {} committed steps, the workflow has {n}",
                    entries.len()
                ));
            }
            match &reference {
                None => reference = Some((node, entries)),
                Some((first, theirs)) if *theirs != entries => violations.push(format!(
                    "{id}: node {node}'s history ({} steps) differs from node {first}'s ({} steps)",
                    entries.len(),
                    theirs.len()
                )),
                Some(_) => {}
            }
        }
        if let Some((_, entries)) = reference {
            commit_times.insert(
                id.to_owned(),
                CommitTimes {
                    proposed: entries.iter().map(|e| e.committed_at_ms).collect(),
                    finished: (wf.status() == WorkflowStatus::Completed)
                        .then_some(wf.updated_at_ms),
                },
            );
        }
    }
    Ok(commit_times)
}

/// Re-computations seen in the workers' effects files.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recomputations {
    /// Step computations started, over all workers.
    pub computations: usize,
    /// Computations of a step beyond its first.
    pub total: usize,
    /// Of those, started after the step was proposed and committed: a
    /// violation each.
    pub after_commit: usize,
    /// Of those, started after the owner's next proposal: surely after the
    /// commit, not racing it.
    pub surely_after_commit: usize,
}

/// When each step of one workflow was committed, as far as the histories
/// tell: `proposed[i]` is step i's `committed_at_ms` (stamped when it was
/// proposed, so a little before it committed), and `later_proposal[i]` the
/// stamp of the next thing its owner proposed after step i had committed
/// (step i+1, or the result), so after step i's commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Step i's `committed_at_ms`.
    pub proposed: Vec<u64>,
    /// Finish time of a completed workflow (its `updated_at_ms`).
    pub finished: Option<u64>,
}

impl CommitTimes {
    /// A time by which step `i` had surely committed.
    fn surely_committed(&self, i: usize) -> Option<u64> {
        self.proposed.get(i + 1).copied().or(self.finished)
    }
}

/// No committed step computed again: a computation of step i that started
/// after step i's `committed_at_ms` (same machine clock) is flagged. One
/// that started after the owner's next proposal ran a committed step again
/// for sure; one that started in between (the commit was in flight) is
/// flagged too, with that said, since its start could have raced the
/// commit. A second computation of a step that had not committed yet (its
/// owner died or lost the workflow mid-step) is legitimate and only counted.
pub fn recomputations(
    effects: &[Effect],
    commit_times: &HashMap<String, CommitTimes>,
    violations: &mut Vec<String>,
) -> Recomputations {
    let mut starts: BTreeMap<(&str, u64), Vec<Option<u64>>> = BTreeMap::new();
    for e in effects.iter().filter(|e| e.what == "start") {
        starts
            .entry((e.workflow_id.as_str(), e.step))
            .or_default()
            .push(e.at_ms);
    }
    let mut figures = Recomputations {
        computations: starts.values().map(Vec::len).sum(),
        ..Default::default()
    };
    for ((id, step), times) in starts {
        figures.total += times.len() - 1;
        let Some(commits) = commit_times.get(id) else {
            continue;
        };
        let Some(committed) = commits.proposed.get(step as usize).copied() else {
            continue;
        };
        let surely = commits.surely_committed(step as usize);
        for at in times.into_iter().flatten() {
            if at > committed {
                figures.after_commit += 1;
                let how = match surely {
                    Some(t) if at > t => {
                        figures.surely_after_commit += 1;
                        format!("after the next proposal at {t} ms")
                    }
                    _ => "while its commit may still have been in flight".to_owned(),
                };
                violations.push(format!(
                    "{id}: step {step} computed again at {at} ms, {} ms after it was proposed ({committed} ms) and {how}",
                    at - committed
                ));
            }
        }
    }
    figures
}

/// Every worker's effects.
pub fn effects(paths: &[std::path::PathBuf]) -> Vec<Effect> {
    paths.iter().flat_map(|p| read_effects_timed(p)).collect()
}

/// No false non-determinism report: no node counts one now, none counted one
/// during the run (`seen`: the highest count polled per node; counters
/// restart at 0 with the process), and no node's log reports one.
pub async fn nondeterminism(
    cluster: &Cluster,
    seen: &BTreeMap<u64, u64>,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    for id in cluster.nodes.keys() {
        let now = cluster.status(*id).await?.nondeterminism_reports;
        let max = now.max(seen.get(id).copied().unwrap_or(0));
        if max > 0 {
            violations.push(format!("node {id} counted {max} non-determinism reports"));
        }
        let logged = cluster
            .log(*id)
            .lines()
            .filter(|l| l.contains("non-determinism"))
            .count();
        if logged > 0 {
            violations.push(format!(
                "node {id}'s log reports non-determinism {logged} times"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str, step: u64, at_ms: u64) -> Effect {
        Effect {
            workflow_id: id.into(),
            what: "start".into(),
            step,
            at_ms: Some(at_ms),
        }
    }

    #[test]
    fn a_computation_after_the_commit_is_a_violation_one_before_is_not() {
        let commits = HashMap::from([(
            "w".to_string(),
            CommitTimes {
                proposed: vec![100, 200, 300],
                finished: Some(400),
            },
        )]);
        let effects = [
            start("w", 0, 90),
            // The owner died mid-step 1; the next owner computed it again
            // before anything committed: legitimate.
            start("w", 1, 150),
            start("w", 1, 180),
            // A step computed again after its commit: the defect.
            start("w", 0, 250),
            // After step 2 was proposed, before the result was: flagged as
            // possibly racing its commit.
            start("w", 2, 290),
            start("w", 2, 350),
        ];
        let mut violations = Vec::new();
        let figures = recomputations(&effects, &commits, &mut violations);
        assert_eq!(figures.computations, 6);
        assert_eq!(figures.total, 3);
        assert_eq!(figures.after_commit, 2);
        assert_eq!(figures.surely_after_commit, 1);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].contains("w: step 0 computed again at 250"));
        assert!(violations[0].contains("after the next proposal at 200 ms"));
        assert!(violations[1].contains("w: step 2 computed again at 350"));
        assert!(violations[1].contains("may still have been in flight"));
    }

    fn info(id: &str, status: WorkflowStatus, result: &str) -> WorkflowInfo {
        WorkflowInfo {
            workflow_id: id.into(),
            status: status as i32,
            result: result.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn started(id: &str, n: u64, acknowledged: bool) -> Started {
        Started {
            workflow_id: id.into(),
            n,
            acknowledged,
            last_error: None,
        }
    }

    #[test]
    fn wrong_missing_failed_and_stuck_workflows_are_violations() {
        let all = [
            info("ok", WorkflowStatus::Completed, "6"),
            info("wrong", WorkflowStatus::Completed, "5"),
            info("failed", WorkflowStatus::Failed, ""),
            info("stuck", WorkflowStatus::Running, ""),
        ];
        let load = [
            started("ok", 3, true),
            started("wrong", 3, true),
            started("lost", 3, true),
            // Never acknowledged and never created: nothing to check.
            started("never", 3, false),
        ];
        let mut violations = Vec::new();
        results(&load, &all, &mut violations);
        let flagged: Vec<&str> = violations
            .iter()
            .map(|v| v.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(flagged, ["wrong", "lost", "failed", "stuck"]);
    }
}
