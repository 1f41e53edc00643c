//! Events sent to running workflows: a durable inbox, first in first out
//! per name, also before the workflow waits or while no worker runs it;
//! idempotency keys; a wait's timeout against an event decided by the log;
//! the replay of consumed events; an event acknowledged just before the
//! owner's node dies consumed once; bad input refused with precise codes;
//! the SDK's event stream making the history of waits one after another.
//!
//! The workers register `waiter` only when asked (`CONFORMANCE_WORKFLOWS`).
//! Every worker runs these scenarios (the conformance matrix).

use raftoral_client::proto::sidecar::v1::{
    HistoryEntry, HistoryEntryKind, SignalWorkflowRequest,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::apps::{
    ThreeApps, client, history_at, result_json, wait_history, wait_status, workflow_cli,
};
use raftoral_conformance::{DEADLINE, Sidecar, Worker, count_effect, read_effects};

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "waiter");
/// A worker that runs nothing the scenarios start: their workflows wait
/// PENDING (and take events) until a `waiter` worker comes.
const OTHERS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "ping_pong");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// (seq, kind) of the event entries of a history.
fn event_entries(entries: &[HistoryEntry]) -> Vec<(u64, HistoryEntryKind)> {
    entries
        .iter()
        .filter(|e| {
            matches!(
                e.kind(),
                HistoryEntryKind::EventWaiting
                    | HistoryEntryKind::EventReceived
                    | HistoryEntryKind::EventTimedOut
            )
        })
        .map(|e| (e.seq, e.kind()))
        .collect()
}

async fn signal(
    url: &str,
    id: &str,
    name: &str,
    payload: &str,
    key: &str,
) -> Result<bool, tonic::Status> {
    let mut svc = WorkflowServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    svc.signal_workflow(SignalWorkflowRequest {
        workflow_id: id.into(),
        name: name.into(),
        payload: payload.as_bytes().to_vec().into(),
        idempotency_key: key.into(),
    })
    .await
    .map(|r| r.into_inner().duplicate)
}

#[tokio::test]
async fn events_sent_before_the_wait_are_consumed_first_in_first_out_once_per_key()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let client = RaftoralClient::connect(&sidecar.url).await?;
    // Nobody runs `waiter` yet: the workflow is PENDING and its events wait.
    let others = Worker::start(&sidecar.url, &effects, &[OTHERS]).await?;
    let handle = client
        .start_workflow("waiter", 1, &serde_json::json!({"name": "go", "waits": 2}))
        .await?;
    let id = handle.workflow_id().to_owned();
    assert_eq!(
        client.get_workflow(&id).await?.status(),
        WorkflowStatus::Pending
    );
    assert!(!signal(&sidecar.url, &id, "go", "\"first\"", "k1").await?);
    assert!(
        signal(&sidecar.url, &id, "go", "\"again\"", "k1").await?,
        "the same key twice delivers once"
    );
    assert!(!signal(&sidecar.url, &id, "other", "1", "").await?);
    assert!(!signal(&sidecar.url, &id, "go", "\"second\"", "").await?);
    let got = workflow_cli(&sidecar.url, &["get", &id]).await?;
    assert_eq!(got[0]["inbox_size"], 3, "{}", got[0]);
    drop(others);
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"events": ["first", "second"]})
    );
    let history = history_at(&sidecar.url, &id).await?;
    assert_eq!(
        event_entries(&history),
        vec![
            (1, HistoryEntryKind::EventWaiting),
            (1, HistoryEntryKind::EventReceived),
            (2, HistoryEntryKind::EventWaiting),
            (2, HistoryEntryKind::EventReceived),
        ],
        "each wait took an event from the inbox as it committed"
    );
    Ok(())
}

#[tokio::test]
async fn a_timeout_that_comes_first_wins_and_the_late_event_goes_to_the_next_wait()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let handle = client
        .start_workflow(
            "waiter",
            1,
            &serde_json::json!({"name": "go", "waits": 2, "timeout_ms": 2000}),
        )
        .await?;
    let id = handle.workflow_id().to_owned();
    wait_history(
        &sidecar.url,
        &id,
        "the first wait to time out and the second to start",
        |h| {
            let entries = event_entries(h);
            entries.contains(&(1, HistoryEntryKind::EventTimedOut))
                && entries.contains(&(2, HistoryEntryKind::EventWaiting))
        },
    )
    .await?;
    // The second wait is open now, with its deadline; the CLI shows it.
    let got = workflow_cli(&sidecar.url, &["get", &id]).await?;
    assert_eq!(got[0]["event_waits"][0]["seq"], 2, "{}", got[0]);
    assert!(!signal(&sidecar.url, &id, "go", "\"late\"", "").await?);
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"events": [null, "late"]})
    );
    let timed_out = history_at(&sidecar.url, &id)
        .await?
        .into_iter()
        .find(|e| e.kind() == HistoryEntryKind::EventTimedOut)
        .expect("the timeout");
    assert!(
        timed_out.committed_at_ms >= timed_out.fire_at_ms,
        "never before its deadline"
    );
    Ok(())
}

#[tokio::test]
async fn a_replay_after_the_app_died_gets_the_same_events() -> anyhow::Result<()> {
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
        .start_workflow("waiter", 1, &serde_json::json!({"name": "go", "waits": 2}))
        .await?;
    let id = handle.workflow_id().to_owned();
    signal(&sidecar.url, &id, "go", "{\"n\":1}", "").await?;
    signal(&sidecar.url, &id, "go", "{\"n\":2}", "").await?;
    // Both consumed; the app hangs in `after`, then dies.
    raftoral_conformance::eventually(DEADLINE, "the last step to start", || {
        count_effect(&read_effects(&effects), &id, "start", 1) > 0
    })
    .await?;
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"events": [{"n": 1}, {"n": 2}]})
    );
    let seen = read_effects(&effects);
    assert_eq!(count_effect(&seen, &id, "start", 0), 1, "before ran once");
    let received = event_entries(&history_at(&sidecar.url, &id).await?)
        .iter()
        .filter(|(_, k)| *k == HistoryEntryKind::EventReceived)
        .count();
    assert_eq!(received, 2);
    Ok(())
}

#[tokio::test]
async fn an_event_acknowledged_before_the_owners_node_dies_is_consumed_once() -> anyhow::Result<()>
{
    let ThreeApps {
        mut cluster,
        owner,
        other,
        apps: _apps,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let handle = on_owner
        .start_workflow("waiter", 1, &serde_json::json!({"name": "go", "waits": 1}))
        .await?;
    let id = handle.workflow_id().to_owned();
    let url = cluster.nodes[&other].url.clone();
    wait_history(&url, &id, "the wait to commit", |h| {
        event_entries(h).contains(&(1, HistoryEntryKind::EventWaiting))
    })
    .await?;
    assert!(!signal(&url, &id, "go", "\"once\"", "").await?);
    cluster.kill(owner).await?;
    let survivor = client(&cluster, other).await?;
    assert_eq!(
        result_json(&survivor, &id).await?,
        serde_json::json!({"events": ["once"]})
    );
    let received = event_entries(&history_at(&url, &id).await?)
        .iter()
        .filter(|(_, k)| *k == HistoryEntryKind::EventReceived)
        .count();
    assert_eq!(received, 1, "consumed exactly once");
    assert_eq!(survivor.get_workflow(&id).await?.inbox_size, 0);
    Ok(())
}

#[tokio::test]
async fn bad_events_are_refused_with_precise_codes() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--max-value-bytes", "1024"]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[OTHERS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let code = |r: Result<bool, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(signal(&sidecar.url, "missing", "go", "1", "").await),
        tonic::Code::NotFound
    );
    let pending = client
        .start_workflow("waiter", 1, &serde_json::json!({"name": "go", "waits": 1}))
        .await?;
    let id = pending.workflow_id().to_owned();
    assert_eq!(
        code(signal(&sidecar.url, &id, "", "1", "").await),
        tonic::Code::InvalidArgument,
        "an empty name"
    );
    let big = format!("\"{}\"", "x".repeat(2000));
    assert_eq!(
        code(signal(&sidecar.url, &id, "go", &big, "").await),
        tonic::Code::InvalidArgument,
        "a payload over the value limit"
    );
    // A full inbox: 1,000 events.
    for i in 0..1000 {
        signal(&sidecar.url, &id, "go", &i.to_string(), "").await?;
    }
    let full = signal(&sidecar.url, &id, "go", "1001", "")
        .await
        .unwrap_err();
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    assert!(full.message().contains("inbox"), "{}", full.message());
    // An ended workflow.
    let done = client.start_workflow("ping_pong", 1, "ping").await?;
    wait_status(&client, done.workflow_id(), WorkflowStatus::Completed).await?;
    let ended = signal(&sidecar.url, done.workflow_id(), "go", "1", "")
        .await
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::FailedPrecondition);
    assert!(ended.message().contains("has ended"), "{}", ended.message());
    // The CLI sends one too (to a fresh workflow).
    let second = client
        .start_workflow("waiter", 1, &serde_json::json!({"name": "go", "waits": 1}))
        .await?;
    let sent = workflow_cli(
        &sidecar.url,
        &[
            "signal",
            second.workflow_id(),
            "go",
            "--payload",
            "{\"ok\":true}",
            "--key",
            "cli",
        ],
    )
    .await?;
    assert_eq!(sent[0]["duplicate"], false);
    assert_eq!(sent[0]["inbox_size"], 1);
    Ok(())
}

#[tokio::test]
async fn an_event_stream_takes_events_as_waits_do() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow(
            "waiter",
            1,
            &serde_json::json!({"name": "item", "waits": 3, "stream": true}),
        )
        .await?
        .workflow_id()
        .to_owned();
    // One before the stream takes it, the others while it waits.
    signal(&sidecar.url, &id, "item", "\"a\"", "").await?;
    wait_history(&sidecar.url, &id, "the second wait to commit", |h| {
        event_entries(h).contains(&(2, HistoryEntryKind::EventWaiting))
    })
    .await?;
    signal(&sidecar.url, &id, "item", "\"b\"", "").await?;
    signal(&sidecar.url, &id, "item", "\"c\"", "").await?;
    assert_eq!(
        result_json(&client, &id).await?,
        serde_json::json!({"events": ["a", "b", "c"]})
    );
    let history = history_at(&sidecar.url, &id).await?;
    let mut expected = Vec::new();
    for seq in 1..=3 {
        expected.push((seq, HistoryEntryKind::EventWaiting));
        expected.push((seq, HistoryEntryKind::EventReceived));
    }
    assert_eq!(
        event_entries(&history),
        expected,
        "the stream's items are waits one after another"
    );
    Ok(())
}
