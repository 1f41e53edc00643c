//! Durable timers: a sleep is committed with its deadline and fired by the
//! Raft leader through the log, so it survives the death of its owner, of
//! the leader and of the whole cluster, a replay does not sleep again, a
//! cancel ends it with its timer, and bad durations fail clearly. A race of
//! a timer and a step (`first`) has the same winner live, on replicas and
//! in a replay, and the losing timer is cancelled. A delayed start and an
//! execution timeout are timers of the workflow itself.
//!
//! The workers register `sleeper`, `racer` and `scheduled` only when asked
//! (`CONFORMANCE_WORKFLOWS`).
//! Every worker runs these scenarios (the conformance matrix).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftoral_client::proto::sidecar::v1::{
    HistoryEntry, HistoryEntryKind, StartWorkflowRequest,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::apps::{
    Apps, ThreeApps, client, history_at, result_json, wait_history, wait_status,
    workflow_cli as cli,
};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::http::metric;
use raftoral_conformance::{
    DEADLINE, Sidecar, Worker, count_effect, eventually, eventually_async, read_effects,
};

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "sleeper,racer,scheduled");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// The entries of `kind` in a history.
fn of_kind(entries: &[HistoryEntry], kind: HistoryEntryKind) -> Vec<&HistoryEntry> {
    entries.iter().filter(|e| e.kind() == kind).collect()
}

/// Waits until workflow `id`'s history (through `url`) holds `n` started
/// timers; returns that history.
async fn started(url: &str, id: &str, n: usize) -> anyhow::Result<Vec<HistoryEntry>> {
    wait_history(url, id, &format!("{n} started timers"), |h| {
        of_kind(h, HistoryEntryKind::TimerStarted).len() >= n
    })
    .await
}

/// Checks a finished sleeper's history: `n` timers, each started once and
/// fired once, at or after its deadline, the deadline its duration after
/// the start's commit; the steps around them once each.
fn check_slept(entries: &[HistoryEntry], durations_ms: &[u64]) {
    let names: Vec<(&str, HistoryEntryKind)> = entries
        .iter()
        .map(|e| (e.checkpoint_name.as_str(), e.kind()))
        .collect();
    let mut expected = vec![("before", HistoryEntryKind::Unspecified)];
    let naps: Vec<String> = (0..durations_ms.len())
        .map(|i| format!("nap-{i}"))
        .collect();
    for nap in &naps {
        expected.push((nap, HistoryEntryKind::TimerStarted));
        expected.push((nap, HistoryEntryKind::TimerFired));
    }
    expected.push(("after", HistoryEntryKind::Unspecified));
    assert_eq!(names, expected, "each timer started once and fired once");
    for (i, ms) in durations_ms.iter().enumerate() {
        let start = entries[1 + 2 * i].clone();
        let fired = entries[2 + 2 * i].clone();
        assert_eq!(
            start.fire_at_ms,
            start.committed_at_ms + ms,
            "deadline = start + duration"
        );
        assert_eq!(fired.fire_at_ms, start.fire_at_ms);
        assert!(
            fired.committed_at_ms >= fired.fire_at_ms,
            "fired at {} before its deadline {}",
            fired.committed_at_ms,
            fired.fire_at_ms
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn a_sleep_ends_when_the_cluster_fires_it_and_zero_is_recorded_too() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let began = Instant::now();
    let handle = client
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [800, 0]}))
        .await?;
    let id = handle.workflow_id().to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"slept": 2})
    );
    assert!(
        began.elapsed() >= Duration::from_millis(800),
        "returned after {:?}, before the sleep's 800 ms",
        began.elapsed()
    );
    check_slept(&history_at(&sidecar.url, &id).await?, &[800, 0]);
    Ok(())
}

#[tokio::test]
async fn a_replay_after_the_app_died_does_not_sleep_again() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let hanging = Worker::start(
        &sidecar.url,
        &effects,
        &[WORKFLOWS, ("CONFORMANCE_HANG", "1")],
    )
    .await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let sleeps = [300, 300, 300];
    let handle = client
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": sleeps}))
        .await?;
    let id = handle.workflow_id().to_owned();
    eventually(
        DEADLINE,
        "the app to hang in the step after the sleeps",
        || count_effect(&read_effects(&effects), &id, "start", 1) == 1,
    )
    .await?;
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"slept": 3})
    );
    check_slept(&history_at(&sidecar.url, &id).await?, &sleeps);
    let effects = read_effects(&effects);
    assert_eq!(
        count_effect(&effects, &id, "start", 0),
        1,
        "before ran once"
    );
    assert_eq!(
        count_effect(&effects, &id, "start", 1),
        2,
        "after ran again (it never committed)"
    );
    Ok(())
}

#[tokio::test]
async fn the_owner_killed_mid_sleep_leaves_the_timer_to_fire_on_its_successor() -> anyhow::Result<()>
{
    let ThreeApps {
        mut cluster,
        apps,
        owner,
        other,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let handle = on_owner
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [2000]}))
        .await?;
    let id = handle.workflow_id().to_owned();
    let url = cluster.nodes[&other].url.clone();
    started(&url, &id, 1).await?;
    cluster.kill(owner).await?;
    let survivor = client(&cluster, other).await?;
    assert_eq!(
        result_json(&survivor, &id).await?,
        serde_json::json!({"slept": 1})
    );
    check_slept(&history_at(&url, &id).await?, &[2000]);
    let info = survivor.get_workflow(&id).await?;
    assert_ne!(info.owner_node_id, owner, "another node finished it");
    assert_eq!(
        count_effect(&apps.effects(), &id, "start", 0),
        1,
        "the step before the sleep ran once"
    );
    Ok(())
}

#[tokio::test]
async fn the_leader_killed_mid_sleep_fires_the_timer_once_after_an_election() -> anyhow::Result<()>
{
    // `_apps` keeps the workers running to the end.
    let ThreeApps {
        mut cluster,
        apps: _apps,
        leader,
        other,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    // Started through the leader, so it owns the workflow too.
    let on_leader = client(&cluster, leader).await?;
    let handle = on_leader
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [1500]}))
        .await?;
    let id = handle.workflow_id().to_owned();
    let url = cluster.nodes[&other].url.clone();
    started(&url, &id, 1).await?;
    cluster.kill(leader).await?;
    let survivor = client(&cluster, other).await?;
    assert_eq!(
        result_json(&survivor, &id).await?,
        serde_json::json!({"slept": 1})
    );
    check_slept(&history_at(&url, &id).await?, &[1500]);
    Ok(())
}

#[tokio::test]
async fn the_whole_cluster_down_past_the_deadline_fires_the_timer_after_the_restart()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let env: Vec<(u64, &str, &str)> = (1..=3).map(|n| (n, WORKFLOWS.0, WORKFLOWS.1)).collect();
    let _apps = Apps::start(&cluster, &env).await?;
    let first = client(&cluster, 1).await?;
    let handle = first
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [1500]}))
        .await?;
    let id = handle.workflow_id().to_owned();
    let history = started(&cluster.nodes[&1].url, &id, 1).await?;
    let deadline = of_kind(&history, HistoryEntryKind::TimerStarted)[0].fire_at_ms;
    for n in 1..=3 {
        cluster.kill(n).await?;
    }
    // Down past the deadline: the wait is for time itself to pass.
    eventually(
        DEADLINE,
        "the deadline to pass while the cluster is down",
        || now_ms() > deadline + 500,
    )
    .await?;
    for n in 1..=3 {
        cluster.restart(n).await?;
    }
    let again = client(&cluster, 1).await?;
    assert_eq!(
        result_json(&again, &id).await?,
        serde_json::json!({"slept": 1})
    );
    check_slept(&history_at(&cluster.nodes[&1].url, &id).await?, &[1500]);
    Ok(())
}

#[tokio::test]
async fn cancelling_a_long_sleep_ends_it_and_drops_its_timer() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, false, &[]).await?;
    let _apps = Apps::start(&cluster, &[(1, WORKFLOWS.0, WORKFLOWS.1)]).await?;
    let c = client(&cluster, 1).await?;
    let handle = c
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [3_600_000]}))
        .await?;
    let id = handle.workflow_id().to_owned();
    started(&cluster.nodes[&1].url, &id, 1).await?;
    let metrics = cluster.nodes[&1].raft_addr.clone();
    assert_eq!(metric(&metrics, "raftoral_timers_pending").await?, Some(1));
    // The CLI shows the pending timer, and lists the workflow as sleeping.
    let url = cluster.nodes[&1].url.clone();
    let got = cli(&url, &["get", &id]).await?;
    assert_eq!(got.len(), 1);
    let timers = got[0]["pending_timers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(timers.len(), 1, "{}", got[0]);
    assert_eq!(timers[0]["name"], "nap-0");
    assert!(timers[0]["fire_at_ms"].as_u64() > Some(now_ms() + 3_000_000));
    let other = c
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": []}))
        .await?;
    wait_status(&c, other.workflow_id(), WorkflowStatus::Completed).await?;
    let sleeping: Vec<serde_json::Value> = cli(&url, &["list", "--sleeping"]).await?;
    let ids: Vec<&str> = sleeping
        .iter()
        .filter_map(|w| w["workflow_id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "only the sleeping workflow");
    let history = cli(&url, &["history", &id]).await?;
    assert_eq!(history[1]["kind"], "timer_started");
    assert_eq!(history[1]["fire_at_ms"], timers[0]["fire_at_ms"]);
    c.cancel_workflow(&id, "no more waiting").await?;
    wait_status(&c, &id, WorkflowStatus::Cancelled).await?;
    assert_eq!(metric(&metrics, "raftoral_timers_pending").await?, Some(0));
    let history = history_at(&cluster.nodes[&1].url, &id).await?;
    assert!(of_kind(&history, HistoryEntryKind::TimerFired).is_empty());
    Ok(())
}

#[tokio::test]
async fn negative_and_too_long_sleeps_fail_the_workflow_with_a_clear_error() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    // 366 days and one millisecond.
    for (ms, says) in [(-5_i64, "negative"), (31_622_400_001, "366 days")] {
        let handle = client
            .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [ms]}))
            .await?;
        let id = handle.workflow_id().to_owned();
        wait_status(&client, &id, WorkflowStatus::Failed).await?;
        let info = client.get_workflow(&id).await?;
        assert!(
            info.error.contains(says),
            "a sleep of {ms} ms fails saying {says:?}: {}",
            info.error
        );
        let history = history_at(&sidecar.url, &id).await?;
        assert!(of_kind(&history, HistoryEntryKind::TimerStarted).is_empty());
    }
    // Start options past the limit, or a zero timeout, through the client
    // API itself (the SDKs refuse them before sending): INVALID_ARGUMENT,
    // nothing started.
    let mut api = WorkflowServiceClient::connect(sidecar.url.clone()).await?;
    for (delay, timeout) in [(31_622_400_001, 0), (0, 31_622_400_001)] {
        let refused = api
            .start_workflow(StartWorkflowRequest {
                workflow_id: format!("bad-{delay}-{timeout}"),
                workflow_name: "sleeper".into(),
                version: 1,
                input: r#"{"sleeps":[]}"#.into(),
                start_delay_ms: delay,
                execution_timeout_ms: timeout,
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("366 days"),
            "{}",
            refused.message()
        );
    }
    assert!(client.get_workflow("bad-31622400001-0").await.is_err());
    // The CLI schedules a start: the workflow is PENDING with its start time.
    let scheduled = cli(
        &sidecar.url,
        &[
            "start",
            "scheduled",
            "--input",
            "1",
            "--start-delay-ms",
            "600000",
        ],
    )
    .await?;
    assert_eq!(scheduled[0]["status"], "pending");
    assert!(scheduled[0]["start_at_ms"].as_u64() > Some(now_ms() + 500_000));
    Ok(())
}

/// Runs a `racer` on three nodes, through a follower whose app hangs in
/// the step after the race; kills that app, so a replica takes over and
/// replays the race; returns the result and the history.
async fn race(
    timer_ms: u64,
    step_ms: u64,
) -> anyhow::Result<(serde_json::Value, Vec<HistoryEntry>)> {
    let ThreeApps {
        cluster,
        mut apps,
        owner,
        other,
        ..
    } = ThreeApps::start(WORKFLOWS.1, true, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let handle = on_owner
        .start_workflow(
            "racer",
            1,
            &serde_json::json!({"timer_ms": timer_ms, "step_ms": step_ms}),
        )
        .await?;
    let id = handle.workflow_id().to_owned();
    eventually(DEADLINE, "the owner's app to hang after the race", || {
        count_effect(&apps.effects(), &id, "start", 1) == 1
    })
    .await?;
    apps.workers
        .remove(&owner)
        .expect("the owner's worker")
        .kill()
        .await?;
    let survivor = client(&cluster, other).await?;
    let out = result_json(&survivor, &id).await?;
    let history = history_at(&cluster.nodes[&other].url, &id).await?;
    assert_eq!(
        cluster.status(other).await?.nondeterminism_reports,
        0,
        "every replica took the same winner"
    );
    Ok((out, history))
}

#[tokio::test]
async fn a_timer_that_fires_first_wins_the_race_everywhere() -> anyhow::Result<()> {
    let (out, history) = race(200, 5_000).await?;
    assert_eq!(out, serde_json::json!({"winner": "timer"}));
    let fired = of_kind(&history, HistoryEntryKind::TimerFired);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].seq, fired[0].checkpoint_name.as_str()),
        (0, "deadline")
    );
    assert!(of_kind(&history, HistoryEntryKind::TimerCancelled).is_empty());
    Ok(())
}

#[tokio::test]
async fn a_step_that_commits_first_wins_and_its_timer_is_cancelled() -> anyhow::Result<()> {
    let (out, history) = race(600_000, 10).await?;
    assert_eq!(
        out,
        serde_json::json!({"winner": "step", "value": "worked"})
    );
    let cancelled = of_kind(&history, HistoryEntryKind::TimerCancelled);
    assert_eq!(cancelled.len(), 1, "the losing timer is cancelled once");
    assert_eq!(cancelled[0].seq, 0);
    assert!(of_kind(&history, HistoryEntryKind::TimerFired).is_empty());
    Ok(())
}

#[tokio::test]
async fn a_delayed_start_waits_its_delay_then_runs_once_and_a_timeout_fails_a_sleeper()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let options = raftoral_client::StartOptions {
        start_delay: Duration::from_millis(1000),
        ..Default::default()
    };
    let handle = client
        .start_workflow_with("scheduled", 1, &"later", &options)
        .await?;
    let id = handle.workflow_id().to_owned();
    let info = client.get_workflow(&id).await?;
    assert_eq!(info.status(), WorkflowStatus::Pending);
    assert_eq!(info.start_at_ms, info.created_at_ms + 1000);
    let out = result_json(&client, &id).await?;
    assert_eq!(out["input"], "later");
    assert!(
        out["ran_at"].as_u64() >= Some(info.start_at_ms),
        "ran at {} before its start at {}",
        out["ran_at"],
        info.start_at_ms
    );
    assert_eq!(count_effect(&read_effects(&effects), &id, "start", 0), 1);

    let options = raftoral_client::StartOptions {
        execution_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let handle = client
        .start_workflow_with(
            "sleeper",
            1,
            &serde_json::json!({"sleeps": [600_000]}),
            &options,
        )
        .await?;
    let id = handle.workflow_id().to_owned();
    wait_status(&client, &id, WorkflowStatus::Failed).await?;
    let info = client.get_workflow(&id).await?;
    assert_eq!(
        info.failure.as_ref().map(|f| f.r#type.as_str()),
        Some("raftoral.WorkflowTimeout"),
        "{}",
        info.error
    );
    assert!(
        info.pending_timers.is_empty(),
        "the sleep's timer went with it"
    );
    Ok(())
}

/// More sleeping workflows than a worker's stream buffers: a worker that
/// connects (registers) while they are all running gets its registration
/// acknowledged and runs every one to its end. Fails when the SDK hands
/// re-sent runs to the worker through a bounded queue that only the
/// worker's run loop, started after registering, drains.
#[tokio::test]
async fn a_new_worker_takes_over_more_sleeping_workflows_than_its_buffers() -> anyhow::Result<()> {
    const N: usize = 1_100;
    let cluster = Cluster::start(1, false, &[]).await?;
    let mut apps = Apps::start(&cluster, &[(1, WORKFLOWS.0, WORKFLOWS.1)]).await?;
    let c = client(&cluster, 1).await?;
    let starts = (0..N).map(|_| {
        let c = c.clone();
        async move {
            c.start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [3_000]}))
                .await
                .map(|h| h.workflow_id().to_owned())
        }
    });
    let ids: Vec<String> = futures::future::try_join_all(starts).await?;
    let metrics = cluster.nodes[&1].raft_addr.clone();
    eventually_async(DEADLINE, "every sleep started", || {
        let metrics = metrics.clone();
        async move { Ok(metric(&metrics, "raftoral_timers_pending").await? == Some(N as u64)) }
    })
    .await?;
    apps.workers.remove(&1).expect("the worker").kill().await?;
    // Ready means registered: acknowledged after every running workflow
    // was sent to it.
    apps.spawn(&cluster, 1, &[(1, WORKFLOWS.0, WORKFLOWS.1)])
        .await?;
    for id in &ids {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
    }
    Ok(())
}

/// A delayed start and an execution timeout are timers of the workflow
/// itself, in the replicated table: the leader that fires them may be
/// another than the one that took the start.
#[tokio::test]
async fn a_delayed_start_and_a_timeout_fire_after_a_leader_change() -> anyhow::Result<()> {
    // `_apps` keeps the workers running to the end.
    let ThreeApps {
        mut cluster,
        apps: _apps,
        leader,
        owner,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let c = client(&cluster, owner).await?;
    let delayed = raftoral_client::StartOptions {
        start_delay: Duration::from_millis(1_500),
        ..Default::default()
    };
    let scheduled = c
        .start_workflow_with("scheduled", 1, &"after the election", &delayed)
        .await?;
    let bounded = raftoral_client::StartOptions {
        execution_timeout: Some(Duration::from_millis(1_500)),
        ..Default::default()
    };
    let sleeper = c
        .start_workflow_with(
            "sleeper",
            1,
            &serde_json::json!({"sleeps": [600_000]}),
            &bounded,
        )
        .await?;
    let info = c.get_workflow(scheduled.workflow_id()).await?;
    assert_eq!(info.status(), WorkflowStatus::Pending);
    cluster.kill(leader).await?;
    let out = result_json(&c, scheduled.workflow_id()).await?;
    assert!(out["ran_at"].as_u64() >= Some(info.start_at_ms));
    wait_status(&c, sleeper.workflow_id(), WorkflowStatus::Failed).await?;
    let info = c.get_workflow(sleeper.workflow_id()).await?;
    assert_eq!(
        info.failure.as_ref().map(|f| f.r#type.as_str()),
        Some("raftoral.WorkflowTimeout")
    );
    Ok(())
}
