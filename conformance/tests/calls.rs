//! A workflow that reaches other workflows (`caller` of WORKERS.md): an
//! event sent from the workflow reaches its target once, the target's
//! result comes back through the log, a restarted app replays both without
//! sending again, and a send to a workflow that does not exist fails the
//! step with its type.
//!
//! Every worker runs these scenarios (the conformance matrix).

use raftoral_client::RaftoralClient;
use raftoral_client::proto::sidecar::v1::HistoryEntryKind;
use raftoral_conformance::apps::{history_at, result_json, wait_history};
use raftoral_conformance::{Sidecar, Worker, count_effect, read_effects};
use serde_json::json;

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "caller,waiter");

#[tokio::test]
async fn a_workflow_signals_another_once_and_gets_its_result_also_after_a_replay()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let first = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let target = client
        .start_workflow("waiter", 1, &json!({"name": "go", "waits": 1}))
        .await?
        .workflow_id()
        .to_owned();
    let input = json!({"target": target, "name": "go", "payload": {"n": 1}, "result_of": target});
    let id = client
        .start_workflow("caller", 1, &input)
        .await?
        .workflow_id()
        .to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"sent": false, "result": {"events": [{"n": 1}]}})
    );
    // The send is a step keyed by the caller's id and position.
    let h = history_at(&sidecar.url, &target).await?;
    let received = h
        .iter()
        .filter(|e| e.kind() == HistoryEntryKind::EventReceived)
        .count();
    assert_eq!(received, 1, "one event reached the target");
    let steps: Vec<String> = history_at(&sidecar.url, &id)
        .await?
        .into_iter()
        .map(|e| e.checkpoint_name)
        .collect();
    assert_eq!(
        steps,
        [
            "before".to_owned(),
            format!("signal:{target}:go"),
            format!("result:{target}")
        ]
    );
    // A new app replays the caller (its target waits for two events, so
    // the caller stays open): the target still takes the event once.
    let target = client
        .start_workflow("waiter", 1, &json!({"name": "go", "waits": 2}))
        .await?
        .workflow_id()
        .to_owned();
    let input = json!({"target": target, "name": "go", "payload": 7, "result_of": target});
    let id = client
        .start_workflow("caller", 1, &input)
        .await?
        .workflow_id()
        .to_owned();
    // Killed once the send's step committed (killed between the send and
    // that commit, the new app would send again with the same key and get
    // `duplicate`: the target would still take it once).
    let signal_step = format!("signal:{target}:go");
    wait_history(&sidecar.url, &id, "the send's step", |h| {
        h.iter().any(|e| e.checkpoint_name == signal_step)
    })
    .await?;
    first.kill().await?;
    let _second = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    client.signal_workflow(&target, "go", &8, None).await?;
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"sent": false, "result": {"events": [7, 8]}})
    );
    assert_eq!(count_effect(&read_effects(&effects), &id, "start", 0), 1);
    Ok(())
}

#[tokio::test]
async fn a_send_to_a_workflow_that_does_not_exist_fails_its_step_with_its_type()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow(
            "caller",
            1,
            &json!({"target": "nobody-here", "name": "go", "payload": 1}),
        )
        .await?
        .workflow_id()
        .to_owned();
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"failed": {"type": "raftoral.WorkflowNotFound"}})
    );
    Ok(())
}
