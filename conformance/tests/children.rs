//! Workflows that start workflows (`parent` of WORKERS.md): children's
//! results gathered, no second child after a replay or after the parent's
//! node is killed just after the start, a fan-out of many children with
//! the parent's app killed in the middle, each parent-close policy, a
//! failing child, and bad input (an unregistered child type, a workflow
//! that would be its own child).
//!
//! Every worker runs these scenarios (the conformance matrix).

use raftoral_client::proto::sidecar::v1::{
    HistoryEntryKind, ListWorkflowsRequest, SignalWorkflowRequest, WorkflowInfo,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::apps::{
    ThreeApps, client, history_at, result_json, wait_status, workflow_cli,
};
use raftoral_conformance::{
    DEADLINE, Sidecar, Worker, count_effect, eventually_async, read_effects,
};
use serde_json::json;

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "parent,waiter,ping_pong,steps");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// Every child of `parent` the node at `url` lists, all pages.
async fn children(url: &str, parent: &str) -> anyhow::Result<Vec<WorkflowInfo>> {
    let mut svc = WorkflowServiceClient::connect(url.to_owned()).await?;
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = svc
            .list_workflows(ListWorkflowsRequest {
                parent_id: parent.into(),
                page_size: 500,
                page_token: token,
                ..ListWorkflowsRequest::default()
            })
            .await?
            .into_inner();
        out.extend(page.workflows);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Waits until `parent` has `n` children, each waiting for its event.
async fn children_waiting(url: &str, parent: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    eventually_async(DEADLINE * 2, "the children to wait", || {
        let (url, parent, ids) = (url.to_owned(), parent.to_owned(), ids.clone());
        async move {
            let found = children(&url, &parent).await?;
            let mut waiting = Vec::new();
            for c in &found {
                let h = history_at(&url, &c.workflow_id).await?;
                if h.iter().any(|e| e.kind() == HistoryEntryKind::EventWaiting) {
                    waiting.push(c.workflow_id.clone());
                }
            }
            let done = found.len() == n && waiting.len() == n;
            *ids.lock().expect("not poisoned") = waiting;
            Ok(done)
        }
    })
    .await?;
    let ids = ids.lock().expect("not poisoned").clone();
    Ok(ids)
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

fn waiting_children(n: usize, extra: serde_json::Value) -> serde_json::Value {
    let mut input = json!({"n": n, "child": "waiter", "input": {"name": "go", "waits": 1}});
    input
        .as_object_mut()
        .expect("an object")
        .extend(extra.as_object().cloned().unwrap_or_default());
    input
}

#[tokio::test]
async fn a_parent_gathers_its_childrens_results_and_a_replay_starts_none_again()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let first = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("parent", 1, &waiting_children(2, json!({})))
        .await?
        .workflow_id()
        .to_owned();
    let kids = children_waiting(&sidecar.url, &id, 2).await?;
    assert_eq!(
        kids,
        [format!("{id}/1"), format!("{id}/2")],
        "ids from the positions"
    );
    // A new app replays the parent: it starts no child again.
    first.kill().await?;
    let _second = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    for (n, kid) in kids.iter().enumerate() {
        signal(&sidecar.url, kid, &n.to_string()).await?;
    }
    assert_eq!(
        result_json(&client, &id).await?,
        json!({"results": [{"events": [0]}, {"events": [1]}]})
    );
    assert_eq!(children(&sidecar.url, &id).await?.len(), 2);
    let seen = read_effects(&effects);
    assert_eq!(count_effect(&seen, &id, "start", 0), 1, "before ran once");
    for kid in &kids {
        assert_eq!(
            count_effect(&seen, kid, "start", 0),
            1,
            "{kid} started once"
        );
    }
    // The history: each start names its child, each end resolves it.
    let h = history_at(&sidecar.url, &id).await?;
    let started: Vec<String> = h
        .iter()
        .filter(|e| e.kind() == HistoryEntryKind::ChildStarted)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .collect();
    assert_eq!(started, kids);
    assert_eq!(
        h.iter()
            .filter(|e| e.kind() == HistoryEntryKind::ChildCompleted)
            .count(),
        2
    );
    // `workflow get` names the parent; `list --parent` the children.
    let got = workflow_cli(&sidecar.url, &["get", &kids[0]]).await?;
    assert_eq!(got[0]["parent"]["workflow_id"], json!(id), "{}", got[0]);
    assert_eq!(got[0]["parent"]["parent_close"], "cancel", "{}", got[0]);
    let listed = workflow_cli(&sidecar.url, &["list", "--parent", &id]).await?;
    assert_eq!(listed.len(), 2);
    Ok(())
}

#[tokio::test]
async fn the_parents_node_killed_just_after_the_start_leaves_one_child_and_one_result()
-> anyhow::Result<()> {
    let ThreeApps {
        mut cluster,
        owner,
        other,
        apps: _apps,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let c = client(&cluster, owner).await?;
    let id = c
        .start_workflow("parent", 1, &waiting_children(1, json!({})))
        .await?
        .workflow_id()
        .to_owned();
    let url = cluster.nodes[&other].url.clone();
    let kids = children_waiting(&url, &id, 1).await?;
    cluster.kill(owner).await?;
    signal(&url, &kids[0], "\"shipped\"").await?;
    let on_other = client(&cluster, other).await?;
    assert_eq!(
        result_json(&on_other, &id).await?,
        json!({"results": [{"events": ["shipped"]}]})
    );
    assert_eq!(children(&url, &id).await?.len(), 1, "no second child");
    Ok(())
}

#[tokio::test]
async fn many_children_fanned_out_survive_the_parents_app_killed_in_the_middle()
-> anyhow::Result<()> {
    const N: usize = 1000;
    let ThreeApps {
        cluster,
        owner,
        other,
        mut apps,
        ..
    } = ThreeApps::start(WORKFLOWS.1, false, FAST).await?;
    let c = client(&cluster, owner).await?;
    let id = c
        .start_workflow(
            "parent",
            1,
            &json!({"n": N, "child": "ping_pong", "input": "ping"}),
        )
        .await?
        .workflow_id()
        .to_owned();
    let url = cluster.nodes[&other].url.clone();
    eventually_async(DEADLINE * 2, "a third of the children", || {
        let (url, id) = (url.clone(), id.clone());
        async move { Ok(children(&url, &id).await?.len() >= N / 3) }
    })
    .await?;
    apps.workers
        .remove(&owner)
        .expect("the owner's app")
        .kill()
        .await?;
    let on_other = client(&cluster, other).await?;
    let results = result_json(&on_other, &id).await?;
    assert_eq!(results, json!({"results": vec!["pong"; N]}));
    let kids = children(&url, &id).await?;
    assert_eq!(kids.len(), N, "one child per position");
    let history = history_at(&url, &id).await?;
    assert_eq!(history.len(), 1 + 2 * N, "the parent's own entries only");
    Ok(())
}

#[tokio::test]
async fn each_parent_close_policy_applies_when_the_parent_ends() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let mut kid_of = std::collections::BTreeMap::new();
    for policy in ["cancel", "abandon", "terminate"] {
        let input = waiting_children(1, json!({"policy": policy, "leave": true}));
        let id = client
            .start_workflow("parent", 1, &input)
            .await?
            .workflow_id()
            .to_owned();
        let out = result_json(&client, &id).await?;
        kid_of.insert(
            policy,
            out["children"][0].as_str().expect("an id").to_owned(),
        );
    }
    wait_status(&client, &kid_of["cancel"], WorkflowStatus::Cancelled).await?;
    wait_status(&client, &kid_of["terminate"], WorkflowStatus::Cancelled).await?;
    let terminated = client.get_workflow(&kid_of["terminate"]).await?;
    assert!(terminated.error.contains("parent"), "{}", terminated.error);
    let abandoned = client.get_workflow(&kid_of["abandon"]).await?;
    assert_eq!(abandoned.status(), WorkflowStatus::Running);
    assert_eq!(abandoned.cancel_deadline_ms, 0, "no cancel requested");
    signal(&sidecar.url, &kid_of["abandon"], "1").await?;
    assert_eq!(
        result_json(&client, &kid_of["abandon"]).await?,
        json!({"events": [1]})
    );
    Ok(())
}

#[tokio::test]
async fn a_parent_cancelled_while_it_waits_for_a_child_has_the_child_cancelled()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let id = client
        .start_workflow("parent", 1, &waiting_children(1, json!({})))
        .await?
        .workflow_id()
        .to_owned();
    let kids = children_waiting(&sidecar.url, &id, 1).await?;
    client.cancel_workflow(&id, "order withdrawn").await?;
    wait_status(&client, &kids[0], WorkflowStatus::Cancelled).await?;
    let parent = client.get_workflow(&id).await?;
    assert_eq!(parent.status(), WorkflowStatus::Cancelled, "{parent:?}");
    let kid = client.get_workflow(&kids[0]).await?;
    assert!(kid.error.contains(&id), "{}", kid.error);
    Ok(())
}

#[tokio::test]
async fn a_failing_child_fails_its_parents_wait_with_its_type_and_bad_children_are_refused()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    // A child that fails: the parent catches its failure.
    let id = client
        .start_workflow(
            "parent",
            1,
            &json!({"n": 1, "child": "steps", "input": {"n": 2, "fail_at": 1}}),
        )
        .await?
        .workflow_id()
        .to_owned();
    let out = result_json(&client, &id).await?;
    assert!(
        out["failed"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed on purpose at step 1")),
        "{out}"
    );
    // A child of a type no worker runs waits PENDING, with its reason.
    let id = client
        .start_workflow(
            "parent",
            1,
            &json!({"n": 1, "child": "nobody", "input": null, "leave": true, "policy": "abandon"}),
        )
        .await?
        .workflow_id()
        .to_owned();
    let out = result_json(&client, &id).await?;
    let kid = client
        .get_workflow(out["children"][0].as_str().expect("an id"))
        .await?;
    assert_eq!(kid.status(), WorkflowStatus::Pending);
    assert!(
        kid.pending_reason.contains("nobody"),
        "{}",
        kid.pending_reason
    );
    // A workflow that would be its own child fails, saying so.
    let id = client
        .start_workflow(
            "parent",
            1,
            &json!({"n": 1, "child": "parent", "input": {}, "self": true}),
        )
        .await?
        .workflow_id()
        .to_owned();
    wait_status(&client, &id, WorkflowStatus::Failed).await?;
    let failed = client.get_workflow(&id).await?;
    assert!(failed.error.contains("own child"), "{}", failed.error);
    assert!(children(&sidecar.url, &id).await?.is_empty());
    Ok(())
}
