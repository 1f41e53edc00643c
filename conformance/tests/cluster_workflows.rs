//! Workflows across a 3-node cluster, each node a real sidecar with its own
//! real worker process: placement, owner failover, replay, cancellation.

use raftoral_client::WorkflowStatus;
use raftoral_conformance::apps::{Apps, client, committed_at_least, history, wait_status};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{
    DEADLINE, StepsInput, count_effect, eventually, eventually_async, read_effects, steps_sum,
};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

#[tokio::test]
async fn ping_pong_from_every_node_even_one_whose_app_lacks_it() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let _apps = Apps::start(&cluster, &[(3, "CONFORMANCE_WORKFLOWS", "steps")]).await?;
    for node in 1..=3 {
        let c = client(&cluster, node).await?;
        let h = c.start_workflow("ping_pong", 1, "ping").await?;
        let answer: String = tokio::time::timeout(DEADLINE, h.result()).await??;
        assert_eq!(answer, "pong");
        let owner = c.get_workflow(h.workflow_id()).await?.owner_node_id;
        if node == 3 {
            assert!(
                owner == 1 || owner == 2,
                "node 3's app cannot run ping_pong, owner was {owner}"
            );
        } else {
            assert_eq!(owner, node, "the starting node runs it when it can");
        }
    }
    Ok(())
}

#[tokio::test]
async fn owner_sidecar_killed_mid_workflow_completes_elsewhere_with_each_step_once()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, false, FAST).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let apps = Apps::start(&cluster, &[]).await?;
    let owner = (1..=3).find(|n| *n != leader).unwrap();
    let other = (1..=3).find(|n| *n != leader && *n != owner).unwrap();
    let c = client(&cluster, owner).await?;
    let n = 40;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 20))
        .await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, owner);
    committed_at_least(&c, &id, 5).await?;
    cluster.kill(owner).await?;

    let survivor = client(&cluster, leader).await?;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    let info = survivor.get_workflow(&id).await?;
    assert_ne!(info.owner_node_id, owner, "the workflow moved");
    assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(n));
    let (h1, h2) = (
        history(&cluster, leader, &id).await?,
        history(&cluster, other, &id).await?,
    );
    assert_eq!(h1.len(), n as usize);
    assert_eq!(h1, h2, "survivors disagree on the history");
    let effects = apps.effects();
    let mut rerun = 0;
    for step in 0..n {
        let done = count_effect(&effects, &id, "done", step);
        assert!((1..=2).contains(&done), "step {step} ran {done} times");
        rerun += done - 1;
    }
    assert!(
        rerun <= 1,
        "only the step in flight at the kill may run twice, {rerun} did"
    );
    Ok(())
}

#[tokio::test]
async fn owner_app_killed_moves_the_workflow_after_the_app_timeout() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let mut apps = Apps::start(&cluster, &[]).await?;
    let c = client(&cluster, 1).await?;
    let n = 30;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 20))
        .await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, 1);
    committed_at_least(&c, &id, 3).await?;
    apps.workers.remove(&1).expect("worker 1").kill().await?;
    let sum: u64 = tokio::time::timeout(DEADLINE * 2, h.result()).await??;
    assert_eq!(sum, steps_sum(n));
    let owner = c.get_workflow(&id).await?.owner_node_id;
    assert!(owner == 2 || owner == 3, "owner is {owner}");
    Ok(())
}

#[tokio::test]
async fn cancellation_reaches_every_replica() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let apps = Apps::start(&cluster, &[]).await?;
    let c1 = client(&cluster, 1).await?;
    let h = c1
        .start_workflow("steps", 1, &StepsInput::slow(100_000, 5))
        .await?;
    let id = h.workflow_id().to_owned();
    committed_at_least(&c1, &id, 3).await?;
    let c2 = client(&cluster, 2).await?;
    // A request, made through another node than the owner's: the owner
    // delivers it, every replica raises it at the same step.
    let asked = c2.cancel_workflow(&id, "stop everywhere").await?;
    assert!(
        asked.cancel_reason == "stop everywhere" || asked.status() == WorkflowStatus::Cancelled,
        "{asked:?}"
    );
    wait_status(&c1, &id, WorkflowStatus::Cancelled).await?;
    let err = tokio::time::timeout(DEADLINE, h.result::<u64>())
        .await?
        .unwrap_err();
    assert!(
        matches!(err, raftoral_client::ClientError::Cancelled { .. }),
        "{err}"
    );
    // Every node's app saw the cancellation in its workflow function.
    for (node, path) in &apps.effects {
        eventually(
            DEADLINE,
            &format!("node {node}'s app to see the cancellation"),
            || {
                read_effects(path)
                    .iter()
                    .any(|(w, what, _)| *w == id && what == "cancelled")
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn whole_cluster_restart_resumes_workflows_in_flight() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let _apps = Apps::start(&cluster, &[]).await?;
    let c = client(&cluster, 1).await?;
    let n = 20;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(n, 30))
            .await?;
        ids.push(h.workflow_id().to_owned());
    }
    let first = ids[0].clone();
    committed_at_least(&c, &first, 3).await?;
    for node in 1..=3 {
        cluster.kill(node).await?;
    }
    for node in 1..=3 {
        cluster.restart(node).await?;
    }
    // The apps reconnect by themselves to the restarted sidecars (same
    // address), get every running workflow again and go on by replay.
    let c = client(&cluster, 2).await?;
    for id in &ids {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
        let info = c.get_workflow(id).await?;
        assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(n));
    }
    Ok(())
}

#[tokio::test]
async fn two_hundred_workflows_survive_a_node_restart_with_identical_histories()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let _apps = Apps::start(&cluster, &[]).await?;
    let n = 20;
    let mut ids = Vec::new();
    for i in 0..200u64 {
        let c = client(&cluster, 1 + i % 3).await?;
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(n, 2))
            .await?;
        ids.push(h.workflow_id().to_owned());
    }
    // A node picked from the clock: any of the three must do.
    let victim = 1
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos() as u64
            % 3);
    cluster.kill(victim).await?;
    cluster.restart(victim).await?;
    let watcher = client(&cluster, 1 + victim % 3).await?;
    for id in &ids {
        wait_status(&watcher, id, WorkflowStatus::Completed).await?;
        let result = watcher.get_workflow(id).await?.result;
        assert_eq!(serde_json::from_slice::<u64>(&result)?, steps_sum(n));
    }
    for id in &ids {
        let reference = history(&cluster, 1, id).await?;
        assert_eq!(reference.len(), n as usize);
        for node in 2..=3 {
            // The restarted node may still be applying the tail.
            eventually_async(
                DEADLINE,
                &format!("node {node} to agree on the history of {id}"),
                || {
                    let (cluster, reference) = (&cluster, &reference);
                    async move { Ok(history(cluster, node, id).await? == *reference) }
                },
            )
            .await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_replica_that_diverges_is_reported_and_the_owner_result_stands() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    // Node 2 runs different workflow code: its checkpoint names differ.
    let _apps = Apps::start(&cluster, &[(2, "CONFORMANCE_STEP_PREFIX", "renamed")]).await?;
    let c = client(&cluster, 1).await?;
    let h = c
        .start_workflow(
            "steps",
            1,
            &StepsInput {
                n: 3,
                ..Default::default()
            },
        )
        .await?;
    let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
    assert_eq!(sum, 6, "the owner's result is the workflow's result");
    eventually_async(DEADLINE, "node 2 to report non-determinism", || {
        let cluster = &cluster;
        async move { Ok(cluster.status(2).await?.nondeterminism_reports >= 1) }
    })
    .await?;
    assert!(
        cluster
            .log(2)
            .contains("non-determinism: this replica's result differs")
    );
    // Node 3 runs the same code as the owner: nothing to report.
    let h = c.start_workflow("ping_pong", 1, "ping").await?;
    let _: String = tokio::time::timeout(DEADLINE, h.result()).await??;
    assert_eq!(cluster.status(3).await?.nondeterminism_reports, 0);
    Ok(())
}
