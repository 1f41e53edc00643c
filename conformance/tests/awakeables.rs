//! Awakeables: a durable future a workflow hands out by id and anyone
//! completes once through any node: resolved through another node while
//! the owner's node is down, a second completion refused, a rejection
//! raised in the code, bad completions refused with precise codes, and
//! `raftoral workflow resolve`.
//!
//! The workers register `awakener` only when asked
//! (`CONFORMANCE_WORKFLOWS`). Every worker runs these scenarios (the
//! conformance matrix).

use raftoral_client::RaftoralClient;
use raftoral_client::proto::sidecar::v1::{
    GetStatusRequest, workflow_service_client::WorkflowServiceClient,
};
use raftoral_conformance::apps::{ThreeApps, client, result_json, workflow_cli};
use raftoral_conformance::{DEADLINE, Sidecar, Worker, eventually_async};
use serde_json::json;

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "awakener");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// The awakeable id workflow `id` published (its `awakeable` status), as
/// read on the node at `url`, once there.
async fn published_id(url: &str, id: &str) -> anyhow::Result<String> {
    let found = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    eventually_async(DEADLINE, "the awakeable's id to be published", || {
        let (url, id, found) = (url.to_owned(), id.to_owned(), found.clone());
        async move {
            let mut svc = WorkflowServiceClient::connect(url).await?;
            let r = svc
                .get_status(GetStatusRequest {
                    workflow_id: id,
                    keys: vec!["awakeable".into()],
                })
                .await?
                .into_inner();
            let Some(v) = r.values.first() else {
                return Ok(false);
            };
            *found.lock().expect("not poisoned") = serde_json::from_slice(&v.value)?;
            Ok(true)
        }
    })
    .await?;
    let id = found.lock().expect("not poisoned").clone();
    Ok(id)
}

#[tokio::test]
async fn an_awakeable_is_resolved_through_another_node_while_its_owner_is_down_and_only_once()
-> anyhow::Result<()> {
    let ThreeApps {
        mut cluster,
        owner,
        other,
        apps: _apps,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let on_owner = client(&cluster, owner).await?;
    let id = on_owner
        .start_workflow("awakener", 1, &())
        .await?
        .workflow_id()
        .to_owned();
    let url = cluster.nodes[&other].url.clone();
    let awakeable = published_id(&url, &id).await?;
    assert_eq!(awakeable, format!("awk/1/{id}"));
    cluster.kill(owner).await?;
    let survivor = client(&cluster, other).await?;
    survivor
        .resolve_awakeable(&awakeable, &json!({"receipt": 9}))
        .await?;
    let again = survivor
        .resolve_awakeable(&awakeable, &"second")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(tonic::Code::AlreadyExists), "{again}");
    assert!(again.to_string().contains("already completed"), "{again}");
    assert_eq!(
        result_json(&survivor, &id).await?,
        json!({"value": {"receipt": 9}})
    );
    Ok(())
}

#[tokio::test]
async fn a_rejection_is_raised_in_the_code_and_bad_completions_are_refused() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("awakener", 1, &())
        .await?
        .workflow_id()
        .to_owned();
    let awakeable = published_id(&sidecar.url, &id).await?;
    let rejected = workflow_cli(
        &sidecar.url,
        &[
            "resolve",
            &awakeable,
            "--reject",
            "card declined",
            "--reject-type",
            "Declined",
        ],
    )
    .await?;
    assert_eq!(rejected[0]["workflow_id"], id.as_str());
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"rejected": {"type": "Declined", "message": "card declined"}})
    );
    // Completed once, also after the workflow ended.
    let code = |e: raftoral_client::ClientError| e.code();
    assert_eq!(
        code(client.resolve_awakeable(&awakeable, &1).await.unwrap_err()),
        Some(tonic::Code::AlreadyExists)
    );
    // Another position of the ended workflow: it has ended.
    let other = format!("awk/7/{id}");
    assert_eq!(
        code(client.resolve_awakeable(&other, &1).await.unwrap_err()),
        Some(tonic::Code::FailedPrecondition)
    );
    assert_eq!(
        code(
            client
                .resolve_awakeable("awk/1/missing", &1)
                .await
                .unwrap_err()
        ),
        Some(tonic::Code::NotFound)
    );
    for malformed in ["", "order-1", "awk/x/order-1", "awk/1/"] {
        assert_eq!(
            code(client.resolve_awakeable(malformed, &1).await.unwrap_err()),
            Some(tonic::Code::InvalidArgument),
            "{malformed:?}"
        );
    }
    // Its reserved event name is not a user event's.
    let reserved = client
        .signal_workflow(&id, "raftoral.awakeable.1", &1, None)
        .await
        .unwrap_err();
    assert_eq!(reserved.code(), Some(tonic::Code::InvalidArgument));
    Ok(())
}
