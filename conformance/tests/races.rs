//! Races over event waits and awakeables (`first`, app protocol 7): an
//! event that comes first wins and the sleep is cancelled, the same on
//! every node; a wait that loses to a sleep is cancelled and the late
//! event goes to the next wait, also after a replay; an event the losing
//! wait took before its owner cancelled it is given back; an awakeable
//! raced with a sleep both ways.
//!
//! The workers register `event_racer` only when asked
//! (`CONFORMANCE_WORKFLOWS`). Every worker runs these scenarios (the
//! conformance matrix).

use raftoral_client::RaftoralClient;
use raftoral_client::proto::sidecar::v1::{
    HistoryEntry, HistoryEntryKind, SignalWorkflowRequest,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_conformance::apps::{
    ThreeApps, client, history_entries, result_json, wait_history, workflow_cli,
};
use raftoral_conformance::{
    DEADLINE, Sidecar, Worker, count_effect, eventually_async, read_effects,
};
use serde_json::json;

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "event_racer");

/// An hour: a sleep that never wins in a test.
const HOUR_MS: u64 = 3_600_000;

/// True when the history has an entry of `kind` at `seq`.
fn has(entries: &[HistoryEntry], seq: u64, kind: HistoryEntryKind) -> bool {
    entries.iter().any(|e| e.seq == seq && e.kind() == kind)
}

async fn signal(url: &str, id: &str, payload: &str) -> anyhow::Result<()> {
    let mut svc = WorkflowServiceClient::connect(url.to_owned()).await?;
    svc.signal_workflow(SignalWorkflowRequest {
        workflow_id: id.into(),
        name: "go".into(),
        payload: payload.as_bytes().to_vec().into(),
        idempotency_key: String::new(),
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_event_that_comes_first_wins_and_the_sleep_is_cancelled_on_every_node()
-> anyhow::Result<()> {
    let ThreeApps {
        cluster,
        owner,
        apps: _apps,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, &[]).await?;
    let url = cluster.nodes[&owner].url.clone();
    let c = client(&cluster, owner).await?;
    let id = c
        .start_workflow(
            "event_racer",
            1,
            &json!({"name": "go", "timer_ms": HOUR_MS}),
        )
        .await?
        .workflow_id()
        .to_owned();
    wait_history(&url, &id, "the wait and the sleep", |h| {
        has(h, 1, HistoryEntryKind::EventWaiting) && has(h, 2, HistoryEntryKind::TimerStarted)
    })
    .await?;
    signal(&url, &id, "{\"n\":1}").await?;
    assert_eq!(
        result_json(&c, &id).await?,
        json!({"winner": "event", "value": {"n": 1}})
    );
    let h = wait_history(&url, &id, "the sleep's cancel", |h| {
        has(h, 2, HistoryEntryKind::TimerCancelled)
    })
    .await?;
    assert!(
        !h.iter()
            .any(|e| e.kind() == HistoryEntryKind::EventWaitCancelled)
    );
    // Every node holds the same history (the replicas ran the same race).
    let on_owner = history_entries(&cluster, owner, &id).await?;
    for node in [1, 2, 3] {
        let what = format!("node {node} to hold the owner's history");
        eventually_async(DEADLINE, &what, || {
            let (cluster, id, on_owner) = (&cluster, id.clone(), on_owner.clone());
            async move { Ok(history_entries(cluster, node, &id).await? == on_owner) }
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_wait_that_loses_to_a_sleep_is_cancelled_and_the_late_event_reaches_the_next_wait_after_a_replay()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let first = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("event_racer", 1, &json!({"name": "go", "timer_ms": 200}))
        .await?
        .workflow_id()
        .to_owned();
    let h = wait_history(
        &sidecar.url,
        &id,
        "the wait's cancel and the next wait",
        |h| {
            has(h, 1, HistoryEntryKind::EventWaitCancelled)
                && has(h, 3, HistoryEntryKind::EventWaiting)
        },
    )
    .await?;
    let cancel = h
        .iter()
        .find(|e| e.kind() == HistoryEntryKind::EventWaitCancelled)
        .expect("found above");
    assert!(cancel.value.is_empty(), "an open wait gives nothing back");
    assert!(has(&h, 2, HistoryEntryKind::TimerFired));
    // A new app replays the race from the history (its cancel included).
    first.kill().await?;
    let _second = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    signal(&sidecar.url, &id, "\"late\"").await?;
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"winner": "timer", "then": "late"})
    );
    assert_eq!(count_effect(&read_effects(&effects), &id, "start", 0), 1);
    let got = workflow_cli(&sidecar.url, &["get", &id]).await?;
    assert_eq!(got[0]["inbox_size"], 0, "{}", got[0]);
    Ok(())
}

#[tokio::test]
async fn an_event_the_losing_wait_took_before_its_cancel_is_given_back() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("event_racer", 1, &json!({"name": "go", "timer_ms": 300}))
        .await?
        .workflow_id()
        .to_owned();
    wait_history(&sidecar.url, &id, "the wait and the sleep", |h| {
        has(h, 1, HistoryEntryKind::EventWaiting) && has(h, 2, HistoryEntryKind::TimerStarted)
    })
    .await?;
    // The app frozen: the sleep fires, then the event reaches the open
    // wait, before the owner learns that its wait lost.
    worker.signal("STOP").await?;
    wait_history(&sidecar.url, &id, "the sleep to fire", |h| {
        has(h, 2, HistoryEntryKind::TimerFired)
    })
    .await?;
    signal(&sidecar.url, &id, "\"early\"").await?;
    wait_history(&sidecar.url, &id, "the losing wait's receipt", |h| {
        has(h, 1, HistoryEntryKind::EventReceived)
    })
    .await?;
    worker.signal("CONT").await?;
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"winner": "timer", "then": "early"})
    );
    let h = wait_history(&sidecar.url, &id, "the give-back", |h| {
        has(h, 1, HistoryEntryKind::EventWaitCancelled)
    })
    .await?;
    let kinds: Vec<_> = h
        .iter()
        .filter(|e| e.seq == 1 || e.seq == 3)
        .map(|e| {
            (
                e.seq,
                e.kind(),
                String::from_utf8_lossy(&e.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, HistoryEntryKind::EventWaiting, String::new()),
            (1, HistoryEntryKind::EventReceived, "\"early\"".into()),
            (1, HistoryEntryKind::EventWaitCancelled, "\"early\"".into()),
            (3, HistoryEntryKind::EventWaiting, String::new()),
            (3, HistoryEntryKind::EventReceived, "\"early\"".into()),
        ],
        "the event taken by the loser went to the next wait"
    );
    Ok(())
}

#[tokio::test]
async fn an_awakeable_races_a_sleep_both_ways() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let start = |timer_ms: u64| {
        let client = client.clone();
        async move {
            anyhow::Ok(
                client
                    .start_workflow(
                        "event_racer",
                        1,
                        &json!({"name": "go", "timer_ms": timer_ms, "awakeable": true}),
                    )
                    .await?
                    .workflow_id()
                    .to_owned(),
            )
        }
    };
    let awakeable = |id: String| {
        let client = client.clone();
        async move {
            let found = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            eventually_async(DEADLINE, "the awakeable's id", || {
                let (client, id, found) = (client.clone(), id.clone(), found.clone());
                async move {
                    let got = client.status_value::<String>(&id, "awakeable").await?;
                    let done = got.is_some();
                    *found.lock().expect("not poisoned") = got.unwrap_or_default();
                    Ok(done)
                }
            })
            .await?;
            let id = found.lock().expect("not poisoned").clone();
            anyhow::Ok(id)
        }
    };
    // Resolved first: the awakeable wins.
    let id = start(HOUR_MS).await?;
    let awk = awakeable(id.clone()).await?;
    client.resolve_awakeable(&awk, &json!({"ok": true})).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"winner": "event", "value": {"ok": true}})
    );
    // The sleep wins: the awakeable is cancelled.
    let id = start(100).await?;
    let awk = awakeable(id.clone()).await?;
    assert_eq!(result_json(&client, &id).await?, json!({"winner": "timer"}));
    let h = wait_history(&sidecar.url, &id, "the awakeable's cancel", |h| {
        has(h, 1, HistoryEntryKind::EventWaitCancelled)
    })
    .await?;
    assert!(has(&h, 3, HistoryEntryKind::TimerFired));
    // The workflow ended with the race: a late completion says so.
    let late = client
        .resolve_awakeable(&awk, &json!("late"))
        .await
        .expect_err("the workflow ended");
    assert_eq!(late.code(), Some(tonic::Code::FailedPrecondition), "{late}");
    Ok(())
}
