//! A node's metrics in the Prometheus text exposition format (0.0.4), for
//! the sidecar's `/metrics` or an embedded app's own endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::error::status_name;
use crate::node::Node;

/// Renders every metric of `node`. Workflow counts by status are counters;
/// the running workflows owned here are counted over the index of active
/// workflows (O(active), never O(all)).
///
/// ```no_run
/// # async fn demo(node: raftoral::Node) {
/// let text = raftoral::api::metrics::render(&node);
/// assert!(text.contains("raftoral_raft_term"));
/// # }
/// ```
pub fn render(node: &Node) -> String {
    let status = node.raft_status();
    // Counters and the index of active workflows: a scrape does not walk
    // every finished workflow under the state lock.
    let (by_status, owned_here, pending_timers, timers) = node.read(|sm| {
        let by_status: BTreeMap<&'static str, u64> = [
            WorkflowStatus::Pending,
            WorkflowStatus::Running,
            WorkflowStatus::Completed,
            WorkflowStatus::Failed,
            WorkflowStatus::Cancelled,
        ]
        .into_iter()
        .map(|s| (status_name(s), sm.count(s)))
        .collect();
        let owned = sm
            .active_workflows()
            .filter(|w| w.status == WorkflowStatus::Running && w.owner == status.id)
            .count() as u64;
        (
            by_status,
            owned,
            sm.pending_timers() as u64,
            sm.timer_stats().clone(),
        )
    });
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        metric(&mut out, name, "gauge", help, &[(String::new(), value)]);
    };
    gauge("raftoral_node_id", "This node's Raft id.", status.id);
    gauge(
        "raftoral_node_healthy",
        "1 while the node runs (see /health).",
        crate::api::probes::health(node).is_ok() as u64,
    );
    gauge(
        "raftoral_node_ready",
        "1 while the node can take work (see /ready).",
        crate::api::probes::readiness(node).is_ok() as u64,
    );
    gauge("raftoral_raft_term", "Current Raft term.", status.term);
    gauge(
        "raftoral_raft_leader_id",
        "Known leader's id; 0 when none.",
        status.leader_id,
    );
    gauge(
        "raftoral_raft_is_leader",
        "1 when this node leads.",
        status.is_leader as u64,
    );
    gauge(
        "raftoral_raft_commit_index",
        "Highest committed log index.",
        status.commit_index,
    );
    gauge(
        "raftoral_raft_applied_index",
        "Highest applied log index.",
        status.applied_index,
    );
    gauge(
        "raftoral_raft_snapshot_index",
        "Index of the latest snapshot.",
        status.snapshot_index,
    );
    gauge(
        "raftoral_raft_voters",
        "Voting members.",
        status.voters.len() as u64,
    );
    gauge(
        "raftoral_raft_learners",
        "Non-voting members.",
        status.learners.len() as u64,
    );
    gauge(
        "raftoral_state_flush_in_progress",
        "1 while a flush of the state machine to its store is being written.",
        u64::from(status.flushing),
    );
    gauge(
        "raftoral_log_disk_bytes",
        "Bytes of log segments on disk (preallocated space included).",
        node.store().disk_bytes(),
    );
    gauge(
        "raftoral_app_sessions",
        "Connected app sessions with registrations.",
        node.connected_apps() as u64,
    );
    gauge(
        "raftoral_workflows_owned",
        "Running workflows this node owns.",
        owned_here,
    );
    gauge(
        "raftoral_timers_pending",
        "Durable timers started and not fired (the whole cluster's).",
        pending_timers,
    );
    let mut counter = |name: &str, help: &str, value: u64| {
        metric(&mut out, name, "counter", help, &[(String::new(), value)]);
    };
    counter(
        "raftoral_log_fsyncs_total",
        "fsyncs of the log since start (group commit shares one per batch).",
        node.store().fsyncs(),
    );
    counter(
        "raftoral_nondeterminism_reports_total",
        "Replica results that differed from the owner's.",
        node.nondeterminism_reports(),
    );
    counter(
        "raftoral_workflow_result_retries_total",
        "Workflow results proposed again after a retryable failure.",
        node.result_retries(),
    );
    counter(
        "raftoral_read_index_retries_total",
        "ReadIndex requests of read barriers sent again after no answer within an election timeout.",
        node.read_retries(),
    );
    counter(
        "raftoral_raft_messages_refused_total",
        "Raft messages from the network dropped before the Raft loop: malformed, from a non-member, or inconsistent with this node's log.",
        node.transport().refused_messages(),
    );
    counter(
        "raftoral_timers_fired_total",
        "Durable timers this node applied the firing of since it started.",
        timers.fired,
    );
    lateness(&mut out, &timers);
    let series: Vec<(String, u64)> = by_status
        .into_iter()
        .map(|(s, n)| (format!("status=\"{s}\""), n))
        .collect();
    metric(
        &mut out,
        "raftoral_workflows",
        "gauge",
        "Workflows known to the cluster, by status.",
        &series,
    );
    out
}

/// `raftoral_timer_lateness_seconds`: how long after its deadline each
/// timer fired, in log time.
fn lateness(out: &mut String, timers: &crate::workflows::state_machine::TimerStats) {
    use crate::workflows::state_machine::LATENESS_BUCKETS_MS;
    let name = "raftoral_timer_lateness_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a durable timer's deadline to the commit of its firing (log time)."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, count) in timers.lateness.iter().enumerate() {
        cumulative += count;
        let le = LATENESS_BUCKETS_MS.get(i).map_or_else(
            || "+Inf".to_owned(),
            |ms| format!("{}", *ms as f64 / 1000.0),
        );
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", timers.lateness_sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {}", timers.fired);
}

/// One metric family: HELP, TYPE and one sample per label set.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, series: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
