//! Workflows that reach other workflows, through the Rust SDK on an
//! embedded node: children started side by side and awaited together, an
//! event sent to another workflow and another workflow's result awaited
//! (durable steps), with their typed failures; and the client's
//! conveniences (`execute_workflow`, the `workflows` stream by parent).

use std::sync::Arc;

use futures::TryStreamExt;
use raftoral::NodeConfig;
use raftoral_client::proto::sidecar::v1::ListWorkflowsRequest;
use raftoral_client::{
    ChildOptions, ClientError, RaftoralClient, StartOptions, StepError, StreamOptions,
    WorkflowError, WorkflowRequest,
};
use raftoral_embedded::{EmbeddedLink, EmbeddedNode};
use serde_json::{Value, json};

async fn order(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: Value = req.input()?;
    let ctx = req.context;
    let parcels = input["parcels"].as_u64().unwrap_or(0);
    let parcels: Vec<u64> = (0..parcels).collect();
    let calls = parcels
        .iter()
        .map(|p| ctx.call_child::<_, String>("ship", p, ChildOptions::default()));
    let tracks = futures::future::try_join_all(calls).await?;
    let ledger = input["ledger"].as_str().unwrap_or_default();
    ctx.signal_workflow(ledger, "entry", &json!({"tracks": tracks}))
        .await?;
    let billed: u64 = ctx
        .workflow_result(input["billing"].as_str().unwrap_or_default())
        .await?;
    // A send to nobody, and the result of a failed workflow: typed.
    let lost = match ctx.signal_workflow("nobody", "entry", &1).await {
        Err(ClientError::StepFailed(f)) => f.failure.r#type.clone(),
        other => format!("{other:?}"),
    };
    let failed = match ctx
        .workflow_result::<u64>(input["broken"].as_str().unwrap_or_default())
        .await
    {
        Err(ClientError::StepFailed(f)) => f.failure.r#type.clone(),
        other => format!("{other:?}"),
    };
    Ok(serde_json::to_vec(
        &json!({"tracks": tracks, "billed": billed, "lost": lost, "failed": failed}),
    )?)
}

async fn handler(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    match req.workflow_name.as_str() {
        "order" => order(req).await,
        "ship" => {
            let parcel: u64 = req.input()?;
            Ok(serde_json::to_vec(&format!("track-{parcel}"))?)
        }
        "ledger" => {
            let entry: Option<Value> = req.context.wait_event("entry", None).await?;
            Ok(serde_json::to_vec(&entry)?)
        }
        "billing" => Ok(serde_json::to_vec(&42u64)?),
        "broken" => Err(StepError::new("LedgerClosed", "the ledger is closed")
            .non_retryable()
            .into()),
        other => Err(format!("no workflow '{other}'").into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_calls_children_signals_and_awaits_other_workflows() -> anyhow::Result<()> {
    let node = EmbeddedNode::start(NodeConfig::default(), None).await?;
    let client = RaftoralClient::with_link(
        "app",
        Arc::new(EmbeddedLink::new(node.node().clone())),
        StreamOptions::default(),
    );
    for name in ["order", "ship", "ledger", "billing", "broken"] {
        client.register_workflow(name, 1).await?;
    }
    let worker = {
        let client = client.clone();
        tokio::spawn(async move { client.handle_workflows(handler).await })
    };
    let ledger = client.start_workflow("ledger", 1, &()).await?;
    let billing = client.start_workflow("billing", 1, &()).await?;
    let broken = client.start_workflow("broken", 1, &()).await?;
    let options = StartOptions {
        workflow_id: Some("order-1".into()),
        ..StartOptions::default()
    };
    let out: Value = client
        .execute_workflow(
            "order",
            1,
            &json!({
                "parcels": 3,
                "ledger": ledger.workflow_id(),
                "billing": billing.workflow_id(),
                "broken": broken.workflow_id(),
            }),
            &options,
        )
        .await?;
    assert_eq!(
        out,
        json!({
            "tracks": ["track-0", "track-1", "track-2"],
            "billed": 42,
            "lost": "raftoral.WorkflowNotFound",
            "failed": "LedgerClosed",
        })
    );
    let entry: Value = ledger.result().await?;
    assert_eq!(entry, json!({"tracks": ["track-0", "track-1", "track-2"]}));
    // The children, listed by parent a page at a time.
    let children: Vec<_> = client
        .workflows(ListWorkflowsRequest {
            parent_id: "order-1".into(),
            page_size: 2,
            ..ListWorkflowsRequest::default()
        })
        .try_collect()
        .await?;
    let ids: Vec<&str> = children.iter().map(|w| w.workflow_id.as_str()).collect();
    assert_eq!(ids, ["order-1/0", "order-1/1", "order-1/2"]);
    assert!(children.iter().all(|w| w.parent_id == "order-1"));
    // The send is a step keyed by its position: the ledger took it once.
    let history = client.get_workflow_history(ledger.workflow_id()).await?;
    assert_eq!(history.len(), 2, "one wait, one event");
    client.shutdown().await;
    worker.await??;
    Ok(())
}
