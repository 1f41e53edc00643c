//! Readable status values and signal-with-start: a status the code set is
//! read from every node, also while the owner's node is down and after
//! the workflow ended, and a replay after failover does not set it again;
//! concurrent signal-with-starts of one id start one workflow and deliver
//! every event; bad input refused with precise codes, and the CLI.
//!
//! The workers register `waiter` only when asked (`CONFORMANCE_WORKFLOWS`).
//! Every worker runs these scenarios (the conformance matrix).

use raftoral_client::proto::sidecar::v1::{
    GetStatusRequest, HistoryEntryKind, SignalWithStartRequest, StartWorkflowRequest,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, Signal, StartOptions, WorkflowStatus};
use raftoral_conformance::apps::{ThreeApps, client, history_at, result_json, workflow_cli};
use raftoral_conformance::{DEADLINE, Sidecar, Worker, eventually_async};
use serde_json::json;

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "waiter");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// The status values of `id` read on the node at `url`, as JSON by key.
async fn status_at(url: &str, id: &str) -> anyhow::Result<serde_json::Value> {
    let mut svc = WorkflowServiceClient::connect(url.to_owned()).await?;
    let r = svc
        .get_status(GetStatusRequest {
            workflow_id: id.into(),
            keys: vec![],
        })
        .await?
        .into_inner();
    let mut out = serde_json::Map::new();
    for v in r.values {
        out.insert(v.key, serde_json::from_slice(&v.value)?);
    }
    Ok(serde_json::Value::Object(out))
}

#[tokio::test]
async fn status_is_read_on_every_node_while_the_owners_node_is_down_and_after_the_end()
-> anyhow::Result<()> {
    let ThreeApps {
        mut cluster,
        owner,
        other,
        leader,
        apps: _apps,
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let input = json!({"name": "go", "waits": 2, "status": true});
    let id = on_owner
        .start_workflow("waiter", 1, &input)
        .await?
        .workflow_id()
        .to_owned();
    let url = cluster.nodes[&other].url.clone();
    eventually_async(DEADLINE, "the stage to be set", || {
        let (url, id) = (url.clone(), id.clone());
        async move { Ok(status_at(&url, &id).await? == json!({"stage": "waiting"})) }
    })
    .await?;
    on_owner.signal_workflow(&id, "go", &"a", None).await?;
    eventually_async(DEADLINE, "the first event to be counted", || {
        let (url, id) = (url.clone(), id.clone());
        async move { Ok(status_at(&url, &id).await?["received"] == 1) }
    })
    .await?;
    cluster.kill(owner).await?;
    for node in [leader, other] {
        assert_eq!(
            status_at(&cluster.nodes[&node].url, &id).await?,
            json!({"stage": "waiting", "received": 1}),
            "node {node} answers with the owner's node down"
        );
    }
    let survivor = client(&cluster, other).await?;
    survivor.signal_workflow(&id, "go", &"b", None).await?;
    assert_eq!(
        result_json(&survivor, &id).await?,
        json!({"events": ["a", "b"]})
    );
    for node in [leader, other] {
        assert_eq!(
            status_at(&cluster.nodes[&node].url, &id).await?,
            json!({"stage": "done", "received": 2}),
            "node {node} answers after the end"
        );
    }
    // The new owner replayed the statuses set before the failover: each
    // was committed once.
    let set: Vec<(u64, String)> = history_at(&url, &id)
        .await?
        .iter()
        .filter(|e| e.kind() == HistoryEntryKind::StatusSet)
        .map(|e| (e.seq, e.checkpoint_name.clone()))
        .collect();
    assert_eq!(
        set,
        vec![
            (1, "stage".to_owned()),
            (3, "received".to_owned()),
            (5, "received".to_owned()),
            (6, "stage".to_owned()),
        ]
    );
    let typed: Option<String> = survivor.status_value(&id, "stage").await?;
    assert_eq!(typed.as_deref(), Some("done"));
    Ok(())
}

#[tokio::test]
async fn concurrent_signal_with_starts_start_one_workflow_and_deliver_every_event()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let options = StartOptions {
        workflow_id: Some("cart-1".into()),
        ..StartOptions::default()
    };
    let input = json!({"name": "add", "waits": 50});
    let calls = (0..50).map(|i| {
        let (client, options, input) = (client.clone(), options.clone(), input.clone());
        async move {
            client
                .signal_with_start("waiter", 1, &input, &options, Signal::json("add", &i)?)
                .await
        }
    });
    let answers = futures::future::try_join_all(calls).await?;
    assert_eq!(answers.iter().filter(|a| a.started).count(), 1, "one start");
    assert!(answers.iter().all(|a| !a.duplicate));
    let result = result_json(&client, "cart-1").await?;
    let mut got: Vec<u64> = result["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|v| v.as_u64().expect("a number"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<u64>>(), "every event, once");
    // The workflow has ended: its id is not reused.
    let ended = client
        .signal_with_start("waiter", 1, &input, &options, Signal::json("add", &99)?)
        .await
        .unwrap_err();
    assert_eq!(
        ended.code(),
        Some(tonic::Code::FailedPrecondition),
        "{ended}"
    );
    assert_eq!(
        client.get_workflow("cart-1").await?.status(),
        WorkflowStatus::Completed
    );
    Ok(())
}

#[tokio::test]
async fn bad_status_reads_and_signal_with_starts_are_refused_and_the_cli_does_both()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let mut svc = WorkflowServiceClient::connect(sidecar.url.clone()).await?;
    let missing = svc
        .get_status(GetStatusRequest {
            workflow_id: "missing".into(),
            keys: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let no_id = svc
        .signal_with_start(SignalWithStartRequest {
            start: Some(StartWorkflowRequest {
                workflow_name: "waiter".into(),
                ..StartWorkflowRequest::default()
            }),
            name: "go".into(),
            payload: b"1".to_vec().into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_id.code(), tonic::Code::InvalidArgument);
    assert!(
        no_id.message().contains("workflow_id"),
        "{}",
        no_id.message()
    );
    let no_start = svc
        .signal_with_start(SignalWithStartRequest {
            name: "go".into(),
            ..SignalWithStartRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_start.code(), tonic::Code::InvalidArgument);
    // The CLI: signal-with-start twice with one key, then the status.
    let args = [
        "signal",
        "cli-1",
        "go",
        "--payload",
        "\"x\"",
        "--key",
        "k",
        "--start",
        "waiter",
        "--input",
        "{\"name\":\"go\",\"waits\":1,\"status\":true}",
    ];
    let first = workflow_cli(&sidecar.url, &args).await?;
    assert_eq!(
        (&first[0]["started"], &first[0]["duplicate"]),
        (&json!(true), &json!(false))
    );
    let again = workflow_cli(&sidecar.url, &args).await?;
    assert_eq!(
        (&again[0]["started"], &again[0]["duplicate"]),
        (&json!(false), &json!(true))
    );
    let client = RaftoralClient::connect(&sidecar.url).await?;
    assert_eq!(
        result_json(&client, "cli-1").await?,
        json!({"events": ["x"]})
    );
    let shown = workflow_cli(&sidecar.url, &["status", "cli-1", "stage"]).await?;
    assert_eq!(shown[0]["values"], json!({"stage": "done"}), "{}", shown[0]);
    assert_eq!(shown[0]["status"], "completed", "{}", shown[0]);
    Ok(())
}
