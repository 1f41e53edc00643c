//! `raftoral cluster recover`: the way out of a lost quorum, with real
//! processes.

use raftoral_client::WorkflowStatus;
use raftoral_conformance::apps::{Apps, client, committed_at_least, history, wait_status};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{StepsInput, steps_sum};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

async fn recover(storage: &std::path::Path, yes: bool) -> anyhow::Result<std::process::Output> {
    let mut command =
        tokio::process::Command::new(raftoral_conformance::bin_dir().join("raftoral"));
    command
        .args(["cluster", "recover", "--storage-path"])
        .arg(storage);
    if yes {
        command.arg("--yes");
    }
    Ok(command.output().await?)
}

/// Two of three nodes are lost for good. The third, stopped, is recovered
/// from its storage: it restarts as the only voter with every workflow,
/// the one that was running goes on, and a node with empty storage joins
/// it.
#[tokio::test]
async fn a_lost_quorum_is_recovered_from_one_node_s_storage() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, FAST).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let mut apps = Apps::start(&cluster, &[]).await?;
    let c = client(&cluster, 1).await?;
    let mut done = Vec::new();
    for _ in 0..3 {
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(5, 1))
            .await?;
        done.push(h.workflow_id().to_owned());
    }
    for id in &done {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
    }
    let n = 40;
    let running = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 50))
        .await?
        .workflow_id()
        .to_owned();
    committed_at_least(&c, &running, 5).await?;
    let before = history(&cluster, 1, &running).await?.len();

    // Nodes 2 and 3 are gone for good: no quorum.
    for id in [2, 3] {
        if let Some(worker) = apps.workers.remove(&id) {
            worker.terminate().await?;
        }
        cluster.kill(id).await?;
    }
    let storage = cluster.dir.path().join("data1");
    let refused = recover(&storage, true).await?;
    assert!(
        !refused.status.success(),
        "recovered a running node's storage"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop the node"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let status = cluster.terminate(1).await?;
    assert!(status.success());

    // Without --yes: the plan, nothing changed.
    let plan = recover(&storage, false).await?;
    assert!(!plan.status.success());
    let said: serde_json::Value = serde_json::from_slice(&plan.stdout)?;
    assert_eq!(said["node"], 1);
    assert_eq!(said["removed"], serde_json::json!([2, 3]));
    assert_eq!(said["done"], false);
    let again = recover(&storage, false).await?;
    assert_eq!(plan.stdout, again.stdout, "a dry run changed the storage");

    let out = recover(&storage, true).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.restart(1).await?;
    let leader = cluster.wait_agreement(&[1], &[1]).await?;
    assert_eq!(leader, 1);

    let c = client(&cluster, 1).await?;
    for id in &done {
        let info = c.get_workflow(id).await?;
        assert_eq!(info.status(), WorkflowStatus::Completed, "{id}");
        assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(5));
    }
    // The running workflow goes on from where it was, on node 1's app.
    wait_status(&c, &running, WorkflowStatus::Completed).await?;
    let after = history(&cluster, 1, &running).await?;
    assert_eq!(after.len(), n as usize);
    assert!(after.len() >= before);
    let info = c.get_workflow(&running).await?;
    assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(n));

    // A node with empty storage joins the recovered one.
    cluster.join(4, 1, true).await?;
    cluster.wait_agreement(&[1, 4], &[1, 4]).await?;
    assert_eq!(history(&cluster, 4, &running).await?, after);
    drop(apps);
    Ok(())
}

#[tokio::test]
async fn recover_refuses_a_directory_that_is_no_node_s_storage() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = recover(dir.path(), true).await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no node.id"), "{err}");
    Ok(())
}
