//! The error model: a failed step is part of the history (caught, it
//! replays at its position after the app dies), retries follow the step's
//! policy with each failed attempt committed, a step that fails for good
//! fails its workflow with the structured error, and steps run side by
//! side commit as they finish and replay by position.
//!
//! The workers register `saga` and `flaky` only when asked
//! (`CONFORMANCE_WORKFLOWS`). Every worker runs these scenarios (the
//! conformance matrix).

use raftoral_client::proto::sidecar::v1::{HistoryEntry, HistoryEntryKind};
use raftoral_client::{ClientError, RaftoralClient, WorkflowStatus};
use raftoral_conformance::apps::{history_at, result_json, wait_history};
use raftoral_conformance::{
    DEADLINE, FanoutInput, FlakyInput, Sidecar, Worker, count_effect, eventually, read_effects,
    read_effects_timed, saga_result,
};

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "saga,flaky,fanout");

/// (seq, kind, attempt) of each entry.
fn shape(entries: &[HistoryEntry]) -> Vec<(u64, HistoryEntryKind, u32)> {
    entries
        .iter()
        .map(|e| (e.seq, e.kind(), e.attempt.max(1)))
        .collect()
}

/// One sidecar with a worker of the error-model types, its effects file
/// and a client.
async fn one_node() -> anyhow::Result<(Sidecar, std::path::PathBuf, Worker, RaftoralClient)> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    Ok((sidecar, effects, worker, client))
}

#[tokio::test]
async fn a_caught_step_failure_replays_after_the_app_is_killed() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let hanging = Worker::start(
        &sidecar.url,
        &effects,
        &[WORKFLOWS, ("CONFORMANCE_HANG", "1")],
    )
    .await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let handle = client
        .start_workflow("saga", 1, &serde_json::json!({}))
        .await?;
    let id = handle.workflow_id().to_owned();
    // The charge failed and was caught, the refund committed, and the app
    // hangs in the last step: kill it there.
    eventually(DEADLINE, "the final step to start", || {
        count_effect(&read_effects(&effects), &id, "start", 2) == 1
    })
    .await?;
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let out = result_json(&client, &id).await?;
    assert_eq!(out, saga_result());
    let effects = read_effects(&effects);
    assert_eq!(count_effect(&effects, &id, "start", 0), 1, "charged once");
    assert_eq!(count_effect(&effects, &id, "done", 1), 1, "refunded once");
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        vec![
            (0, HistoryEntryKind::StepFailed, 1),
            (1, HistoryEntryKind::Unspecified, 1),
            (2, HistoryEntryKind::Unspecified, 1),
        ]
    );
    let failure = history[0]
        .failure
        .clone()
        .expect("the failure is committed");
    assert_eq!(failure.r#type, "CardDeclined");
    assert!(failure.non_retryable);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&failure.details_json)?,
        serde_json::json!({"code": "insufficient_funds", "amount": 42})
    );
    Ok(())
}

#[tokio::test]
async fn failed_attempts_are_committed_and_retried_after_their_delay() -> anyhow::Result<()> {
    let (sidecar, effects, _worker, client) = one_node().await?;
    let input = FlakyInput {
        fail_times: 2,
        max_attempts: 5,
        initial_ms: 300,
        coefficient: 1.0,
        ..FlakyInput::default()
    };
    let handle = client.start_workflow("flaky", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"attempts": 3})
    );
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        vec![
            (0, HistoryEntryKind::StepAttemptFailed, 1),
            (0, HistoryEntryKind::StepAttemptFailed, 2),
            (0, HistoryEntryKind::Unspecified, 3),
        ]
    );
    let first = &history[0];
    assert_eq!(first.next_attempt_at_ms, first.committed_at_ms + 300);
    assert_eq!(
        first.failure.as_ref().map(|f| f.message.as_str()),
        Some("attempt 1 failed")
    );
    let timed = read_effects_timed(&effects);
    let attempts: Vec<_> = timed.iter().filter(|e| e.what == "attempt").collect();
    assert_eq!(
        attempts.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "each attempt once"
    );
    // The second attempt waited for the committed delay (same machine,
    // same clock: the log's time is this clock's).
    let second = attempts[1].at_ms.expect("timed");
    assert!(
        second >= first.next_attempt_at_ms.saturating_sub(50),
        "attempt 2 at {second}, due at {}",
        first.next_attempt_at_ms
    );
    Ok(())
}

#[tokio::test]
async fn a_non_retryable_error_fails_the_step_at_once() -> anyhow::Result<()> {
    let (sidecar, effects, _worker, client) = one_node().await?;
    let input = FlakyInput {
        fail_times: 5,
        max_attempts: 5,
        initial_ms: 10,
        coefficient: 1.0,
        non_retryable: true,
        catch: true,
        ..FlakyInput::default()
    };
    let handle = client.start_workflow("flaky", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"caught": {"type": "Flaky", "message": "attempt 1 failed", "attempts": 1}})
    );
    assert_eq!(count_effect(&read_effects(&effects), &id, "attempt", 1), 1);
    assert_eq!(
        shape(&history_at(&sidecar.url, &id).await?),
        vec![(0, HistoryEntryKind::StepFailed, 1)]
    );
    Ok(())
}

#[tokio::test]
async fn exhausted_attempts_fail_the_workflow_with_the_last_error() -> anyhow::Result<()> {
    let (sidecar, _effects, _worker, client) = one_node().await?;
    let input = FlakyInput {
        fail_times: 9,
        max_attempts: 3,
        initial_ms: 0,
        coefficient: 1.0,
        ..FlakyInput::default()
    };
    let handle = client.start_workflow("flaky", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    let Err(ClientError::WorkflowFailed {
        message, failure, ..
    }) = result_json(&client, &id).await
    else {
        panic!("the workflow fails");
    };
    assert!(message.contains("attempt 3 failed"), "{message}");
    assert_eq!(
        failure.map(|f| (f.r#type, f.message)),
        Some(("Flaky".to_owned(), "attempt 3 failed".to_owned())),
        "the client gets the failure, structured"
    );
    let info = client.get_workflow(&id).await?;
    assert_eq!(info.status(), WorkflowStatus::Failed);
    let failure = info.failure.expect("a structured failure");
    assert_eq!(
        (failure.r#type.as_str(), failure.message.as_str()),
        ("Flaky", "attempt 3 failed")
    );
    assert_eq!(
        shape(&history_at(&sidecar.url, &id).await?),
        vec![
            (0, HistoryEntryKind::StepAttemptFailed, 1),
            (0, HistoryEntryKind::StepAttemptFailed, 2),
            (0, HistoryEntryKind::StepFailed, 3),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_workflow_error_raised_outside_a_step_reaches_the_client_structured() -> anyhow::Result<()>
{
    let (sidecar, effects, _worker, client) = one_node().await?;
    let handle = client
        .start_workflow("saga", 1, &serde_json::json!({"fail": true}))
        .await?;
    let id = handle.workflow_id().to_owned();
    let Err(ClientError::WorkflowFailed {
        message, failure, ..
    }) = result_json(&client, &id).await
    else {
        panic!("the workflow fails");
    };
    assert!(message.contains("order failed after refund"), "{message}");
    let failure = failure.expect("the client gets the failure, structured");
    assert_eq!(
        (failure.r#type.as_str(), failure.message.as_str()),
        ("OrderFailed", "order failed after refund")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&failure.details_json)?,
        serde_json::json!({"refunded": true})
    );
    let info = client.get_workflow(&id).await?;
    assert_eq!(info.status(), WorkflowStatus::Failed);
    assert_eq!(
        info.failure.map(|f| f.r#type),
        Some("OrderFailed".to_owned())
    );
    // The workflow's steps ran once; its own error is no step of the
    // history.
    assert_eq!(count_effect(&read_effects(&effects), &id, "done", 1), 1);
    assert_eq!(
        shape(&history_at(&sidecar.url, &id).await?),
        vec![
            (0, HistoryEntryKind::StepFailed, 1),
            (1, HistoryEntryKind::Unspecified, 1),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn an_attempt_cut_short_by_its_app_dying_runs_again_with_its_whole_timeout()
-> anyhow::Result<()> {
    let (sidecar, effects, first, client) = one_node().await?;
    let input = FlakyInput {
        hang_times: 1,
        timeout_ms: Some(2000),
        max_attempts: 3,
        initial_ms: 0,
        coefficient: 1.0,
        ..FlakyInput::default()
    };
    let handle = client.start_workflow("flaky", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    // The app dies inside attempt 1, long before its timeout: nothing of
    // the attempt is committed.
    eventually(DEADLINE, "attempt 1 to start", || {
        count_effect(&read_effects(&effects), &id, "attempt", 1) == 1
    })
    .await?;
    first.kill().await?;
    let _second = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"attempts": 2})
    );
    // The next app ran attempt 1 again (same number: none was committed),
    // timed it out in full, then attempt 2.
    let effects = read_effects(&effects);
    assert_eq!(count_effect(&effects, &id, "attempt", 1), 2);
    assert_eq!(count_effect(&effects, &id, "attempt", 2), 1);
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        vec![
            (0, HistoryEntryKind::StepAttemptFailed, 1),
            (0, HistoryEntryKind::Unspecified, 2),
        ]
    );
    assert_eq!(
        history[0].failure.as_ref().map(|f| f.message.as_str()),
        Some("attempt 1 timed out after 2000 ms")
    );
    Ok(())
}

#[tokio::test]
async fn an_attempt_that_outlasts_its_timeout_is_stopped_and_retried() -> anyhow::Result<()> {
    let (sidecar, effects, _worker, client) = one_node().await?;
    let input = FlakyInput {
        hang_times: 1,
        timeout_ms: Some(300),
        max_attempts: 3,
        initial_ms: 0,
        coefficient: 1.0,
        ..FlakyInput::default()
    };
    let handle = client.start_workflow("flaky", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"attempts": 2})
    );
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        vec![
            (0, HistoryEntryKind::StepAttemptFailed, 1),
            (0, HistoryEntryKind::Unspecified, 2),
        ]
    );
    let failure = history[0]
        .failure
        .clone()
        .expect("the timeout is committed");
    assert_eq!(
        (
            failure.r#type.as_str(),
            failure.message.as_str(),
            failure.non_retryable
        ),
        ("AttemptTimeout", "attempt 1 timed out after 300 ms", false)
    );
    // The hanging attempt was stopped by its timeout, not before it.
    let timed = read_effects_timed(&effects);
    let started = |a: u64| {
        timed
            .iter()
            .find(|e| e.workflow_id == id && e.what == "attempt" && e.step == a)
            .and_then(|e| e.at_ms)
            .expect("attempt ran, with its time")
    };
    assert!(started(2) >= started(1) + 300, "{timed:?}");
    assert_eq!(count_effect(&read_effects(&effects), &id, "attempt", 2), 1);
    Ok(())
}

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

#[tokio::test]
async fn retries_continue_their_count_and_delay_after_the_owner_dies_during_backoff()
-> anyhow::Result<()> {
    use raftoral_conformance::apps::{ThreeApps, client, wait_status};
    let ThreeApps {
        mut cluster,
        mut apps,
        leader,
        owner,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let c = client(&cluster, owner).await?;
    let delay = 3000;
    let input = FlakyInput {
        fail_times: 2,
        max_attempts: 5,
        initial_ms: delay,
        coefficient: 1.0,
        ..FlakyInput::default()
    };
    let h = c.start_workflow("flaky", 1, &input).await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, owner);
    let leader_url = cluster.nodes[&leader].url.clone();
    // Attempt 1 failed and is committed; halfway through its delay the
    // owner dies.
    let first = wait_history(&leader_url, &id, "attempt 1 to fail", |h| !h.is_empty())
        .await?
        .remove(0);
    assert_eq!(first.kind(), HistoryEntryKind::StepAttemptFailed);
    let committed = first.committed_at_ms;
    eventually(DEADLINE, "half the delay to pass", || {
        now_ms() >= committed + delay / 2
    })
    .await?;
    // The other apps restart too: the new owner's app learns the failed
    // attempt from its history after the kill, not from the event when it
    // committed, so only the committed time tells it how long is left.
    for node in (1..=3).filter(|n| *n != owner) {
        apps.workers.remove(&node).expect("an app").kill().await?;
    }
    cluster.kill(owner).await?;
    for node in (1..=3).filter(|n| *n != owner) {
        apps.spawn(&cluster, node, &[(node, WORKFLOWS.0, WORKFLOWS.1)])
            .await?;
    }
    let survivor = client(&cluster, leader).await?;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    let out: serde_json::Value = serde_json::from_slice(&survivor.get_workflow(&id).await?.result)?;
    assert_eq!(out, serde_json::json!({"attempts": 3}), "the count went on");
    assert_eq!(
        shape(&history_at(&leader_url, &id).await?),
        vec![
            (0, HistoryEntryKind::StepAttemptFailed, 1),
            (0, HistoryEntryKind::StepAttemptFailed, 2),
            (0, HistoryEntryKind::Unspecified, 3),
        ]
    );
    let timed: Vec<_> = apps
        .effects
        .values()
        .flat_map(|p| read_effects_timed(p))
        .filter(|e| e.workflow_id == id && e.what == "attempt")
        .collect();
    let mut numbers: Vec<u64> = timed.iter().map(|e| e.step).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3], "each attempt ran once");
    let second = timed.iter().find(|e| e.step == 2).and_then(|e| e.at_ms);
    let second = second.expect("a timed attempt 2");
    // The new owner waited what was left of the committed delay: not less,
    // and not a fresh delay from its takeover (which came after the kill,
    // itself half a delay in).
    assert!(
        second + 200 >= committed + delay,
        "attempt 2 at +{} ms: earlier than the committed delay",
        second.saturating_sub(committed)
    );
    assert!(
        second < committed + delay / 2 + delay,
        "attempt 2 at +{} ms: a fresh delay after the takeover",
        second.saturating_sub(committed)
    );
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entries' seqs are each resolved once, and names follow the positions
/// `fanout` gives them.
fn check_fanout_history(history: &[HistoryEntry], input: &FanoutInput) {
    let mut resolved = std::collections::BTreeSet::new();
    for e in history {
        assert!(resolved.insert(e.seq), "seq {} resolved twice", e.seq);
        if e.seq < input.n {
            assert_eq!(e.checkpoint_name, format!("branch-{}", e.seq));
        }
    }
    let steps = input.n * (1 + u64::from(input.chain)) + 1;
    assert_eq!(resolved.len() as u64, steps);
    assert_eq!(
        history.last().map(|e| e.checkpoint_name.as_str()),
        Some("sum")
    );
}

#[tokio::test]
async fn parallel_steps_commit_in_finish_order_and_replay_by_position() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let hanging = Worker::start(
        &sidecar.url,
        &effects,
        &[WORKFLOWS, ("CONFORMANCE_HANG", "1")],
    )
    .await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    // The first branch works longest: run side by side, the last branch's
    // step commits first.
    let input = FanoutInput {
        n: 6,
        delays_ms: vec![600, 500, 400, 300, 200, 100],
        chain: true,
    };
    let handle = client.start_workflow("fanout", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    eventually(DEADLINE, "the sum step to start", || {
        count_effect(&read_effects(&effects), &id, "start", input.n) == 1
    })
    .await?;
    let before = history_at(&sidecar.url, &id).await?;
    let first_seqs: Vec<u64> = before.iter().take(6).map(|e| e.seq).collect();
    assert_ne!(
        first_seqs,
        (0..6).collect::<Vec<_>>(),
        "the branches ran one after another"
    );
    // The app dies in the last step; a new one replays the branches from
    // a history in finish order.
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"sum": input.sum()})
    );
    let effects = read_effects(&effects);
    for i in 0..input.n {
        assert_eq!(count_effect(&effects, &id, "done", i), 1, "branch-{i}");
        assert_eq!(
            count_effect(&effects, &id, "done", 1000 + i),
            1,
            "branch-{i}-b"
        );
    }
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        history[..before.len()]
            .iter()
            .map(|e| (e.seq, e.checkpoint_name.clone()))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|e| (e.seq, e.checkpoint_name.clone()))
            .collect::<Vec<_>>(),
        "the replay kept the history"
    );
    check_fanout_history(&history, &input);
    Ok(())
}

#[tokio::test]
async fn a_parallel_batch_interrupted_by_an_owner_kill_completes_once_per_step()
-> anyhow::Result<()> {
    use raftoral_conformance::apps::{ThreeApps, client, committed_at_least, wait_status};
    let ThreeApps {
        mut cluster,
        apps,
        leader,
        owner,
        other,
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let c = client(&cluster, owner).await?;
    let input = FanoutInput {
        n: 8,
        delays_ms: (0..8).map(|i| i * 250).collect(),
        chain: true,
    };
    let h = c.start_workflow("fanout", 1, &input).await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, owner);
    // Some branches are done, the others still in their steps.
    committed_at_least(&c, &id, 3).await?;
    cluster.kill(owner).await?;
    let survivor = client(&cluster, leader).await?;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    let out: serde_json::Value = serde_json::from_slice(&survivor.get_workflow(&id).await?.result)?;
    assert_eq!(out, serde_json::json!({"sum": input.sum()}));
    let history = history_at(&cluster.nodes[&leader].url, &id).await?;
    check_fanout_history(&history, &input);
    let elsewhere = history_at(&cluster.nodes[&other].url, &id).await?;
    assert_eq!(
        history
            .iter()
            .map(|e| (e.seq, e.value.clone()))
            .collect::<Vec<_>>(),
        elsewhere
            .iter()
            .map(|e| (e.seq, e.value.clone()))
            .collect::<Vec<_>>(),
        "replicas hold the same history"
    );
    // Only steps in flight at the kill ran twice; committed ones never.
    let effects = apps.effects();
    for i in 0..input.n {
        for step in [i, 1000 + i] {
            let done = count_effect(&effects, &id, "done", step);
            assert!((1..=2).contains(&done), "step {step} ran {done} times");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_retry_policy_is_refused_when_the_workflow_is_defined() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    for bad in ["negative_interval", "zero_attempts"] {
        let (ready, status, stderr) = Worker::start_expecting_failure(
            &sidecar.url,
            &[WORKFLOWS, ("CONFORMANCE_BAD_POLICY", bad)],
        )
        .await?;
        assert!(!ready, "{bad}: the worker got ready with a bad policy");
        assert!(!status.success(), "{bad}: exit status {status}");
        assert!(
            stderr.contains("retry policy"),
            "{bad}: the error does not say what is wrong: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_caught_step_failure_replays_on_a_replica_after_the_owner_node_dies() -> anyhow::Result<()>
{
    use raftoral_conformance::apps::{ThreeApps, client, history_entries, wait_status};
    // The owner's app hangs in the last step; the replicas' apps follow
    // the commits, raising the charge's failure from the record.
    let ThreeApps {
        mut cluster,
        apps,
        leader,
        owner,
        other,
    } = ThreeApps::start(WORKFLOWS.1, true, FAST).await?;
    let c = client(&cluster, owner).await?;
    let h = c.start_workflow("saga", 1, &serde_json::json!({})).await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, owner);
    eventually(DEADLINE, "the owner to reach the last step", || {
        count_effect(&read_effects(&apps.effects[&owner]), &id, "start", 2) == 1
    })
    .await?;
    cluster.kill(owner).await?;
    let survivor = client(&cluster, leader).await?;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    let out: serde_json::Value = serde_json::from_slice(&survivor.get_workflow(&id).await?.result)?;
    assert_eq!(out["caught"]["type"], "CardDeclined");
    assert_eq!(out["refunded"], true);
    let effects = apps.effects();
    assert_eq!(count_effect(&effects, &id, "start", 0), 1, "charged once");
    assert_eq!(count_effect(&effects, &id, "done", 1), 1, "refunded once");
    assert_eq!(
        history_entries(&cluster, leader, &id).await?,
        history_entries(&cluster, other, &id).await?
    );
    for node in [leader, other] {
        assert_eq!(
            cluster.status(node).await?.nondeterminism_reports,
            0,
            "node {node}: a replica raised the same failure at the same step"
        );
    }
    Ok(())
}
