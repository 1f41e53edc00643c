//! Defects found by driving the sidecar from outside, each reproduced with
//! real processes: stale histories after a restart, stale reads through a
//! follower, presence per workflow type, placement on absent apps, frozen
//! apps, killed owner nodes, false non-determinism reports.

use std::sync::Arc;

use raftoral_client::WorkflowStatus;
use raftoral_client::proto::sidecar::v1::{
    CancelWorkflowRequest, ListWorkflowsRequest, StartWorkflowRequest, WaitWorkflowRequest,
    workflow_service_client::WorkflowServiceClient,
};
use raftoral_conformance::apps::{Apps, client, committed_at_least, wait_status};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{
    BlobInput, DEADLINE, Sidecar, StepsInput, Worker, eventually, eventually_async, read_effects,
    steps_sum,
};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

async fn workflows(
    cluster: &Cluster,
    node: u64,
) -> anyhow::Result<WorkflowServiceClient<tonic::transport::Channel>> {
    Ok(WorkflowServiceClient::connect(cluster.nodes[&node].url.clone()).await?)
}

/// A node restarted after missing commits must not hand a (new) app the
/// stale history it restored: the app would compute committed steps again.
/// Here the restarted former owner cannot even reach the leader at first,
/// so it must hold its app back until it can.
#[tokio::test]
async fn a_restarted_node_hands_out_no_history_before_it_has_caught_up() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let mut apps = Apps::start(&cluster, &[]).await?;
    let owner = (1..=3).find(|n| *n != leader).unwrap();
    let c = client(&cluster, owner).await?;
    let n = 30;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 100))
        .await?;
    let id = h.workflow_id().to_owned();
    committed_at_least(&c, &id, 3).await?;
    // The owner's node and app die; the workflow moves on elsewhere.
    cluster.kill(owner).await?;
    apps.workers.remove(&owner).expect("worker").kill().await?;
    let survivor = client(&cluster, leader).await?;
    let at_kill = survivor.get_workflow(&id).await?.checkpoint_count;
    committed_at_least(&survivor, &id, at_kill + 3).await?;
    cluster.partition(&[owner])?;
    let committed = survivor.get_workflow(&id).await?.checkpoint_count;
    cluster.restart(owner).await?;
    // A new app starts against the restarted, still cut-off node.
    let effects = cluster.dir.path().join("restarted.log");
    let url = cluster.nodes[&owner].url.clone();
    let app = {
        let effects = effects.clone();
        tokio::spawn(async move { Worker::start(&url, &effects, &[]).await })
    };
    let recomputed = || -> Vec<u64> {
        read_effects(&effects)
            .iter()
            .filter(|(w, what, step)| *w == id && what == "start" && *step < committed)
            .map(|(_, _, step)| *step)
            .collect()
    };
    // Give the stale node the time to misbehave: a stale dispatch makes the
    // app compute within milliseconds of its registration.
    let window = eventually(
        std::time::Duration::from_secs(3),
        "a committed step computed again",
        || !recomputed().is_empty(),
    )
    .await;
    assert!(
        window.is_err(),
        "the restarted node's app computed committed steps {:?} again ({committed} were committed)",
        recomputed()
    );
    cluster.partition(&[])?;
    let _app = app.await??;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    assert!(recomputed().is_empty(), "{:?}", recomputed());
    let sum: u64 = serde_json::from_slice(&survivor.get_workflow(&id).await?.result)?;
    assert_eq!(sum, steps_sum(n));
    Ok(())
}

/// A write acknowledged by one node is seen at once through any other, also
/// by cancel and wait (they used to answer NOT_FOUND from a lagging node).
#[tokio::test]
async fn cancel_and_wait_through_a_follower_right_after_a_start_find_the_workflow()
-> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let mut through_leader = workflows(&cluster, leader).await?;
    let mut through_follower = workflows(&cluster, follower).await?;
    for i in 0..40 {
        let start = |id: String| StartWorkflowRequest {
            workflow_id: id,
            workflow_name: "nobody_runs_this".into(),
            version: 1,
            input: "null".into(),
            ..Default::default()
        };
        through_leader
            .start_workflow(start(format!("c{i}")))
            .await?;
        through_follower
            .cancel_workflow(CancelWorkflowRequest {
                workflow_id: format!("c{i}"),
                reason: "test".into(),
                cleanup_ms: None,
            })
            .await
            .map_err(|s| anyhow::anyhow!("cancel #{i} through the follower: {s}"))?;
        through_leader
            .start_workflow(start(format!("w{i}")))
            .await?;
        let waited = through_follower
            .wait_workflow(WaitWorkflowRequest {
                workflow_id: format!("w{i}"),
                timeout: Some(raftoral_client::proto::prost_types::Duration {
                    seconds: 0,
                    nanos: 1_000_000,
                }),
            })
            .await;
        match waited {
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => {}
            other => {
                panic!("wait #{i} through the follower: expected DEADLINE_EXCEEDED, got {other:?}")
            }
        }
    }
    Ok(())
}

/// Presence is tracked per workflow type: when the only app on node 1 that
/// runs `steps` dies, another app there (running other types) does not keep
/// the workflow on node 1.
#[tokio::test]
async fn failover_follows_the_app_that_can_run_the_type() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let effects = |name: &str| cluster.dir.path().join(format!("{name}.log"));
    let app_a = Worker::start(
        &cluster.nodes[&1].url,
        &effects("a"),
        &[("CONFORMANCE_WORKFLOWS", "steps")],
    )
    .await?;
    let _app_b = Worker::start(
        &cluster.nodes[&1].url,
        &effects("b"),
        &[("CONFORMANCE_WORKFLOWS", "ping_pong")],
    )
    .await?;
    let _app_c = Worker::start(
        &cluster.nodes[&3].url,
        &effects("c"),
        &[("CONFORMANCE_WORKFLOWS", "steps")],
    )
    .await?;
    let c = client(&cluster, 1).await?;
    let n = 20;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 50))
        .await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, 1);
    committed_at_least(&c, &id, 3).await?;
    app_a.kill().await?;
    let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
    assert_eq!(sum, steps_sum(n));
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, 3);
    Ok(())
}

/// A workflow whose only app has left is not placed on that app's node: it
/// is PENDING with the reason, and runs when an app comes back.
#[tokio::test]
async fn a_type_whose_only_app_left_is_pending_until_one_returns() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let only = [(2, "CONFORMANCE_WORKFLOWS", "steps")];
    let path = cluster.dir.path().join("lonely.log");
    let app = Worker::start(
        &cluster.nodes[&2].url,
        &path,
        &[("CONFORMANCE_WORKFLOWS", "steps")],
    )
    .await?;
    app.kill().await?;
    let c = client(&cluster, 1).await?;
    // The app's departure reaches the replicated presence asynchronously:
    // start workflows until one is PENDING; the earlier ones ran or wait too.
    let mut started = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // Polls the condition (a start that is PENDING) at a steady cadence.
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        poll.tick().await;
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(2, 0))
            .await?;
        started.push(h.workflow_id().to_owned());
        let info = c.get_workflow(h.workflow_id()).await?;
        if info.status() == WorkflowStatus::Pending {
            assert!(
                info.pending_reason.contains("no live worker"),
                "reason: {}",
                info.pending_reason
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "starts were still placed on node 2 {DEADLINE:?} after its only app died"
        );
    }
    let mut apps = Apps {
        workers: Default::default(),
        effects: Default::default(),
    };
    apps.spawn(&cluster, 2, &only).await?;
    for id in &started {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
    }
    Ok(())
}

/// A frozen app (SIGSTOP, stream open) counts as gone after the app
/// timeout: its workflow moves and completes, and when it wakes up nothing
/// is reported as non-determinism.
#[tokio::test]
async fn a_frozen_app_loses_its_workflow_and_reports_nothing_false() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let apps = Apps::start(&cluster, &[]).await?;
    let c = client(&cluster, 1).await?;
    let n = 20;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 50))
        .await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, 1);
    committed_at_least(&c, &id, 3).await?;
    apps.workers[&1].signal("STOP").await?;
    // Started while the app is frozen but still counted present: placed on
    // node 1, their execute requests wait in the frozen app's socket.
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(
            c.start_workflow("steps", 1, &StepsInput::slow(3, 50))
                .await?,
        );
    }
    let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
    for h in &during {
        let s: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
        assert_eq!(s, steps_sum(3));
    }
    apps.workers[&1].signal("CONT").await?;
    assert_eq!(sum, steps_sum(n));
    assert_ne!(c.get_workflow(&id).await?.owner_node_id, 1);
    no_false_reports(&cluster, &c).await?;
    // Woken, the app must not act on the stale requests it still held: it
    // reconnects and learns that others own (and finished) them.
    let ids: Vec<&str> = during.iter().map(|h| h.workflow_id()).collect();
    let stale: Vec<_> = read_effects(&apps.effects[&1])
        .into_iter()
        .filter(|(w, what, _)| ids.contains(&w.as_str()) && what == "start")
        .collect();
    assert!(
        stale.is_empty(),
        "the woken app computed steps it did not own: {stale:?}"
    );
    Ok(())
}

/// A paused owner node (SIGSTOP longer than the owner timeout) loses its
/// workflows; when it resumes, its app's late proposals are refused as not
/// running any more, which is not a divergence of the code.
#[tokio::test]
async fn a_paused_owner_node_causes_no_false_nondeterminism() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let apps = Apps::start(&cluster, &[]).await?;
    let owner = (1..=3).find(|n| *n != leader).unwrap();
    let c = client(&cluster, owner).await?;
    let n = 10;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(n, 100))
            .await?;
        ids.push(h.workflow_id().to_owned());
    }
    committed_at_least(&c, &ids[0], 2).await?;
    cluster.signal(owner, "STOP").await?;
    let survivor = client(&cluster, leader).await?;
    for id in &ids {
        wait_status(&survivor, id, WorkflowStatus::Completed).await?;
    }
    let resumed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    cluster.signal(owner, "CONT").await?;
    // Once the resumed node has applied what it missed, its app's late
    // proposals are refused; give those refusals a moment to come back as
    // results before checking that none counts as non-determinism.
    let target = cluster.status(leader).await?.commit_index;
    eventually_async(DEADLINE, "the resumed node to catch up", || async {
        Ok(cluster.status(owner).await?.applied_index >= target)
    })
    .await?;
    let reported = eventually_async(
        std::time::Duration::from_secs(2),
        "a non-determinism report",
        || async {
            let mut total = 0;
            for node in cluster.nodes.keys() {
                total += cluster.status(*node).await?.nondeterminism_reports;
            }
            Ok(total > 0)
        },
    )
    .await;
    assert!(
        reported.is_err(),
        "a paused owner was reported as non-deterministic"
    );
    no_false_reports(&cluster, &c).await?;
    // Every one finished elsewhere while the node was paused: what the node
    // had not forwarded yet was old news, and its app must compute nothing
    // of them after the resume.
    let late: Vec<_> = raftoral_conformance::read_effects_timed(&apps.effects[&owner])
        .into_iter()
        .filter(|e| {
            ids.contains(&e.workflow_id)
                && e.what == "start"
                && e.at_ms.is_some_and(|at| at >= resumed_at)
        })
        .collect();
    assert!(
        late.is_empty(),
        "the resumed owner's app computed steps: {late:?}"
    );
    Ok(())
}

/// Runs one more workflow through `c`'s node (so everything the resumed
/// app had queued was processed before it), then checks that no node
/// reported non-determinism and nothing failed.
async fn no_false_reports(
    cluster: &Cluster,
    c: &raftoral_client::RaftoralClient,
) -> anyhow::Result<()> {
    let h = c.start_workflow("ping_pong", 1, "ping").await?;
    let answer: String = tokio::time::timeout(DEADLINE, h.result()).await??;
    assert_eq!(answer, "pong");
    for node in cluster.nodes.keys() {
        let reports = cluster.status(*node).await?.nondeterminism_reports;
        assert_eq!(reports, 0, "node {node} reported non-determinism falsely");
    }
    let failed = workflows(cluster, 1)
        .await?
        .list_workflows(ListWorkflowsRequest {
            status: WorkflowStatus::Failed as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .workflows;
    assert!(failed.is_empty(), "workflows failed: {failed:?}");
    Ok(())
}

/// A SIGKILLed owner node refuses connections: the leader moves its
/// workflows at once instead of waiting out the owner timeout (a minute
/// here, twice the test's deadline), and places nothing new on it.
#[tokio::test]
async fn a_killed_owner_node_loses_its_workflows_without_waiting_for_the_owner_timeout()
-> anyhow::Result<()> {
    let slow_timeout = ["--owner-timeout-ms", "60000", "--app-timeout-ms", "1000"];
    let mut cluster = Cluster::start(3, false, &slow_timeout).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let _apps = Apps::start(&cluster, &[]).await?;
    let owner = (1..=3).find(|n| *n != leader).unwrap();
    let c = client(&cluster, owner).await?;
    let n = 20;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 50))
        .await?;
    let id = h.workflow_id().to_owned();
    committed_at_least(&c, &id, 3).await?;
    cluster.kill(owner).await?;
    let survivor = client(&cluster, leader).await?;
    // Started right after the kill, from the node whose app would be the
    // first choice for nothing: wherever they land, they must complete.
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(
            survivor
                .start_workflow("steps", 1, &StepsInput::slow(2, 0))
                .await?,
        );
    }
    let moved = tokio::time::timeout(DEADLINE, async {
        wait_status(&survivor, &id, WorkflowStatus::Completed).await
    })
    .await;
    assert!(
        matches!(moved, Ok(Ok(()))),
        "the workflow of the killed node did not move within {DEADLINE:?}: {moved:?}"
    );
    for h in later {
        let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
        assert_eq!(sum, steps_sum(2));
    }
    Ok(())
}

/// A history larger than the app accepts in one message (20 values of
/// 3.5 MB: 70 MB, over the SDK's 64 MiB) reaches a restarted app in pieces,
/// and the workflows after it on the same app are dispatched too.
#[tokio::test]
async fn a_history_larger_than_one_message_is_replayed_in_pieces() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let blob_only = ("CONFORMANCE_WORKFLOWS", "blob");
    let hanging = Worker::start(
        &sidecar.url,
        &effects,
        &[blob_only, ("CONFORMANCE_HANG", "1")],
    )
    .await?;
    let c = raftoral_client::RaftoralClient::connect(&sidecar.url).await?;
    let (n, size) = (20u64, 3_500_000usize);
    let big = c.start_workflow("blob", 1, &BlobInput { n, size }).await?;
    committed_at_least(&c, big.workflow_id(), n).await?;
    let small = c
        .start_workflow("blob", 1, &BlobInput { n: 1, size: 10 })
        .await?;
    committed_at_least(&c, small.workflow_id(), 1).await?;
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[blob_only]).await?;
    let total: usize = tokio::time::timeout(DEADLINE, big.result()).await??;
    assert_eq!(total, n as usize * size);
    let total: usize = tokio::time::timeout(DEADLINE, small.result()).await??;
    assert_eq!(total, 10);
    Ok(())
}

/// A run the app held when its node died, for a workflow that then moved
/// and completed elsewhere, ends once the app is back: the sidecar sends
/// every running workflow of a type before the registration ack, and the
/// SDK core ends the runs that were not among them. They used to wait for
/// events forever (a leaked run per such workflow).
#[tokio::test]
async fn a_run_that_finished_elsewhere_while_its_app_was_away_ends_after_the_reconnect()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let node = (1..=3).find(|n| *n != leader).unwrap();
    // The only app at first, so the workflow lands here; its step finishes
    // only when the test says so, after the node died: the run then waits
    // for a commit that this app cannot make any more.
    let app = client(&cluster, node).await?;
    app.register_workflow("steps", 1).await?;
    let release = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let (app, release) = (app.clone(), release.clone());
        tokio::spawn(async move {
            app.handle_workflows(move |req| {
                let release = release.clone();
                async move {
                    let ctx = req.context.clone();
                    let _: u64 = ctx
                        .checkpoint_compute("step-0", async move {
                            release.notified().await;
                            0u64
                        })
                        .await?;
                    Ok(Vec::new())
                }
            })
            .await
        })
    };
    let h = app
        .start_workflow("steps", 1, &StepsInput::slow(2, 0))
        .await?;
    let core = app.core();
    eventually(DEADLINE, "the app runs the workflow", || {
        core.running() == 1
    })
    .await?;
    // The leader's app takes the workflow over when this node dies, and
    // completes it while this app is away.
    let mut apps = Apps {
        workers: Default::default(),
        effects: Default::default(),
    };
    apps.spawn(&cluster, leader, &[]).await?;
    cluster.kill(node).await?;
    release.notify_one();
    let survivor = client(&cluster, leader).await?;
    tokio::time::timeout(
        DEADLINE,
        wait_status(&survivor, h.workflow_id(), WorkflowStatus::Completed),
    )
    .await??;
    cluster.restart(node).await?;
    eventually(
        DEADLINE,
        "the app drops the run of the workflow that completed while it was away",
        || core.running() == 0,
    )
    .await?;
    app.shutdown().await;
    worker.abort();
    Ok(())
}
