//! Cleanup after cancellation: a running workflow's cancel is a request;
//! the code receives it as the SDK's cancellation error at the step or
//! sleep it awaits, runs its compensation steps, and ends CANCELLED by
//! raising it again. The delivery is in the history, so a replay (the app
//! killed during its cleanup, or the owner's whole node) raises at the
//! same position and finishes the same cleanup; a cleanup that never ends
//! is cut off by its window; a cancel without a window ends the workflow
//! at once; a bad window is refused.
//!
//! The workers register `compensate` only when asked
//! (`CONFORMANCE_WORKFLOWS`). Every worker runs these scenarios (the
//! conformance matrix).

use std::time::Duration;

use raftoral_client::proto::sidecar::v1::{
    CancelWorkflowRequest, HistoryEntry, HistoryEntryKind,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::apps::{
    ThreeApps, client, history_at, wait_history, wait_status, workflow_cli,
};
use raftoral_conformance::{DEADLINE, Sidecar, Worker, count_effect, eventually, read_effects};

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "compensate");
const REASON: &str = "customer asked";

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// (name, kind, failure type) of each history entry.
fn shape(entries: &[HistoryEntry]) -> Vec<(String, HistoryEntryKind, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.checkpoint_name.clone(),
                e.kind(),
                e.failure
                    .as_ref()
                    .map(|f| f.r#type.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn entry(name: &str, kind: HistoryEntryKind, failure: &str) -> (String, HistoryEntryKind, String) {
    (name.to_owned(), kind, failure.to_owned())
}

/// Waits until the effects file holds `ID WHAT STEP`.
async fn effect_seen(
    effects: &std::path::Path,
    id: &str,
    what: &str,
    step: u64,
) -> anyhow::Result<()> {
    eventually(DEADLINE, &format!("{id} {what} {step}"), || {
        count_effect(&read_effects(effects), id, what, step) > 0
    })
    .await
}

/// The history a cancelled `compensate` leaves: the charge (a step, or a
/// sleep) resolved by the delivered cancellation, then the refund.
fn cancelled_history(at_sleep: bool) -> Vec<(String, HistoryEntryKind, String)> {
    let mut expected = vec![entry("reserve", HistoryEntryKind::Unspecified, "")];
    if at_sleep {
        expected.push(entry("hold", HistoryEntryKind::TimerStarted, ""));
        expected.push(entry(
            "hold",
            HistoryEntryKind::TimerCancelled,
            "raftoral.Cancelled",
        ));
    } else {
        expected.push(entry(
            "charge",
            HistoryEntryKind::StepFailed,
            "raftoral.Cancelled",
        ));
    }
    expected.push(entry("refund", HistoryEntryKind::Unspecified, ""));
    expected
}

async fn saga_cancelled_while(at_sleep: bool) -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let at = if at_sleep { "sleep" } else { "step" };
    let handle = client
        .start_workflow("compensate", 1, &serde_json::json!({"at": at}))
        .await?;
    let id = handle.workflow_id().to_owned();
    if at_sleep {
        wait_history(&sidecar.url, &id, "2 entries", |h| h.len() >= 2).await?;
    } else {
        effect_seen(&effects, &id, "start", 1).await?;
    }
    let info = client
        .cancel_workflow_with(&id, REASON, Some(Duration::from_secs(60)))
        .await?;
    // A request: the workflow runs its cleanup.
    assert!(
        info.status() == WorkflowStatus::Running || info.status() == WorkflowStatus::Cancelled,
        "{info:?}"
    );
    wait_status(&client, &id, WorkflowStatus::Cancelled).await?;
    let info = client.get_workflow(&id).await?;
    assert_eq!(info.error, REASON, "the reason is the workflow's error");
    assert_eq!(info.cancel_deadline_ms, 0, "no cleanup runs any more");
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(shape(&history), cancelled_history(at_sleep));
    let delivered = history.iter().find(|e| {
        e.failure
            .as_ref()
            .is_some_and(|f| f.r#type == "raftoral.Cancelled")
    });
    assert_eq!(
        delivered
            .and_then(|e| e.failure.as_ref())
            .map(|f| f.message.as_str()),
        Some(REASON)
    );
    let seen = read_effects(&effects);
    assert_eq!(
        count_effect(&seen, &id, "start", 2),
        1,
        "the refund ran once"
    );
    Ok(())
}

#[tokio::test]
async fn a_saga_cancelled_during_its_charge_refunds_and_ends_cancelled() -> anyhow::Result<()> {
    saga_cancelled_while(false).await
}

#[tokio::test]
async fn a_saga_cancelled_while_it_sleeps_refunds_and_ends_cancelled() -> anyhow::Result<()> {
    saga_cancelled_while(true).await
}

#[tokio::test]
async fn an_app_killed_during_its_cleanup_replays_the_cancellation_and_finishes_it()
-> anyhow::Result<()> {
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
        .start_workflow("compensate", 1, &serde_json::json!({"at": "step"}))
        .await?;
    let id = handle.workflow_id().to_owned();
    effect_seen(&effects, &id, "start", 1).await?;
    client
        .cancel_workflow_with(&id, REASON, Some(Duration::from_secs(120)))
        .await?;
    // The refund hangs: the app dies in the middle of its cleanup.
    effect_seen(&effects, &id, "start", 2).await?;
    hanging.kill().await?;
    assert_eq!(
        client.get_workflow(&id).await?.status(),
        WorkflowStatus::Running
    );
    // Another app replays: the charge raises the committed cancellation,
    // the refund runs again (it never committed), the workflow ends.
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    wait_status(&client, &id, WorkflowStatus::Cancelled).await?;
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(shape(&history), cancelled_history(false));
    let seen = read_effects(&effects);
    assert_eq!(count_effect(&seen, &id, "done", 0), 1, "reserve ran once");
    assert_eq!(
        count_effect(&seen, &id, "start", 1),
        1,
        "the charge never again"
    );
    assert_eq!(
        count_effect(&seen, &id, "start", 2),
        2,
        "the refund, killed once"
    );
    Ok(())
}

#[tokio::test]
async fn a_cleanup_that_never_ends_is_cut_off_by_its_window() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let handle = client
        .start_workflow(
            "compensate",
            1,
            &serde_json::json!({"at": "step", "stubborn": true}),
        )
        .await?;
    let id = handle.workflow_id().to_owned();
    effect_seen(&effects, &id, "start", 1).await?;
    let info = client
        .cancel_workflow_with(&id, REASON, Some(Duration::from_millis(1500)))
        .await?;
    assert_eq!(info.status(), WorkflowStatus::Running);
    assert_eq!(info.cancel_reason, REASON);
    assert!(info.cancel_deadline_ms > 0);
    // The CLI shows the request while the cleanup runs.
    let got = workflow_cli(&sidecar.url, &["get", &id]).await?;
    assert_eq!(got[0]["status"], "running", "{}", got[0]);
    assert_eq!(got[0]["cancel_requested"]["reason"], REASON);
    assert_eq!(
        got[0]["cancel_requested"]["cleanup_until_ms"],
        info.cancel_deadline_ms
    );
    effect_seen(&effects, &id, "start", 3).await?;
    wait_status(&client, &id, WorkflowStatus::Cancelled).await?;
    let info = client.get_workflow(&id).await?;
    assert!(
        info.error.starts_with(REASON) && info.error.contains("cleanup window ran out"),
        "{}",
        info.error
    );
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        cancelled_history(false),
        "stuck never committed"
    );
    // The run was stopped: the same worker runs the next workflow.
    let next = client
        .start_workflow("compensate", 1, &serde_json::json!({"at": "step"}))
        .await?;
    effect_seen(&effects, next.workflow_id(), "start", 1).await?;
    // The CLI cancels at once with a zero window.
    let cancelled = workflow_cli(
        &sidecar.url,
        &["cancel", next.workflow_id(), "--cleanup-ms", "0"],
    )
    .await?;
    assert_eq!(cancelled[0]["status"], "cancelled", "{}", cancelled[0]);
    Ok(())
}

#[tokio::test]
async fn a_cancel_without_cleanup_ends_at_once_and_a_bad_window_is_refused() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let handle = client
        .start_workflow("compensate", 1, &serde_json::json!({"at": "step"}))
        .await?;
    let id = handle.workflow_id().to_owned();
    effect_seen(&effects, &id, "start", 1).await?;

    let mut svc = WorkflowServiceClient::connect(sidecar.url.clone()).await?;
    let too_long = svc
        .cancel_workflow(CancelWorkflowRequest {
            workflow_id: id.clone(),
            reason: REASON.into(),
            cleanup_ms: Some(366 * 24 * 3600 * 1000 + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
    assert!(
        too_long.message().contains("366 days"),
        "{}",
        too_long.message()
    );
    assert_eq!(
        client.get_workflow(&id).await?.status(),
        WorkflowStatus::Running,
        "a refused cancel changes nothing"
    );

    let info = client
        .cancel_workflow_with(&id, REASON, Some(Duration::ZERO))
        .await?;
    assert_eq!(info.status(), WorkflowStatus::Cancelled, "at once");
    assert_eq!(info.error, REASON);
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        shape(&history),
        vec![entry("reserve", HistoryEntryKind::Unspecified, "")],
        "nothing delivered, no cleanup"
    );
    // No window given: the sidecar's default, a request too; a second
    // workflow ends CANCELLED after its refund.
    let second = client
        .start_workflow("compensate", 1, &serde_json::json!({"at": "step"}))
        .await?;
    let second = second.workflow_id().to_owned();
    effect_seen(&effects, &second, "start", 1).await?;
    client.cancel_workflow(&second, REASON).await?;
    wait_status(&client, &second, WorkflowStatus::Cancelled).await?;
    assert_eq!(
        count_effect(&read_effects(&effects), &second, "start", 2),
        1,
        "the default window ran the refund"
    );
    assert_eq!(count_effect(&read_effects(&effects), &id, "start", 2), 0);
    Ok(())
}

#[tokio::test]
async fn the_owners_node_killed_during_the_cleanup_leaves_it_to_a_replica() -> anyhow::Result<()> {
    // The owner's worker hangs in its refund; the replicas' do not.
    let ThreeApps {
        mut cluster,
        apps,
        owner,
        other,
        ..
    } = ThreeApps::start(WORKFLOWS.1, true, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let handle = on_owner
        .start_workflow("compensate", 1, &serde_json::json!({"at": "step"}))
        .await?;
    let id = handle.workflow_id().to_owned();
    effect_seen(&apps.effects[&owner], &id, "start", 1).await?;
    // Asked through another node; the owner delivers it and dies in the
    // refund.
    let survivor = client(&cluster, other).await?;
    survivor
        .cancel_workflow_with(&id, REASON, Some(Duration::from_secs(120)))
        .await?;
    effect_seen(&apps.effects[&owner], &id, "start", 2).await?;
    cluster.kill(owner).await?;
    wait_status(&survivor, &id, WorkflowStatus::Cancelled).await?;
    let info = survivor.get_workflow(&id).await?;
    assert_ne!(info.owner_node_id, owner, "a replica took over");
    assert_eq!(info.error, REASON);
    let url = cluster.nodes[&other].url.clone();
    assert_eq!(
        shape(&history_at(&url, &id).await?),
        cancelled_history(false)
    );
    let seen = apps.effects();
    assert_eq!(
        count_effect(&seen, &id, "start", 1),
        1,
        "the charge ran once"
    );
    assert_eq!(
        count_effect(&seen, &id, "start", 2),
        2,
        "the refund: on the dead owner, then on its successor"
    );
    for node in cluster.nodes.keys().filter(|n| **n != owner) {
        assert_eq!(
            cluster.status(*node).await?.nondeterminism_reports,
            0,
            "node {node}: the replicas raised the cancellation where the owner did"
        );
    }
    Ok(())
}
