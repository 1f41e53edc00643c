//! Replicated engine scenarios: real `raftoral serve` processes forming a
//! cluster over loopback.

use std::collections::BTreeSet;

use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{DEADLINE, StepsInput, Worker, eventually_async, steps_sum};

#[tokio::test]
async fn three_nodes_form_one_cluster_a_fourth_joins_and_one_is_removed() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    assert!((1..=3).contains(&leader));

    cluster.join(4, 2, false).await?;
    cluster.wait_agreement(&[1, 2, 3, 4], &[1, 2, 3, 4]).await?;

    // The new member serves the replicated state: a workflow started through
    // node 1 is visible on node 4.
    let c1 = RaftoralClient::connect(&cluster.nodes[&1].url).await?;
    let started = c1.start_workflow("nobody_runs_this", 1, &()).await?;
    let c4 = RaftoralClient::connect(&cluster.nodes[&4].url).await?;
    let id = started.workflow_id().to_owned();
    eventually_async(DEADLINE, "node 4 to apply the start", || {
        let (c4, id) = (c4.clone(), id.clone());
        async move { Ok(c4.get_workflow(&id).await.is_ok()) }
    })
    .await?;

    let out = tokio::process::Command::new(raftoral_conformance::bin_dir().join("raftoral"))
        .args([
            "cluster",
            "--addr",
            &cluster.nodes[&1].raft_addr,
            "remove",
            "3",
        ])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.kill(3).await?;
    cluster.wait_agreement(&[1, 2, 4], &[1, 2, 4]).await?;

    // A removed id is never reused.
    let mut client =
        raftoral_client::proto::cluster::v1::cluster_service_client::ClusterServiceClient::connect(
            format!("http://{}", cluster.nodes[&1].raft_addr),
        )
        .await?;
    let err = client
        .join_cluster(raftoral_client::proto::cluster::v1::JoinClusterRequest {
            node_id: 3,
            address: "127.0.0.1:1".into(),
        })
        .await
        .expect_err("id 3 was removed");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");

    // `cluster status --json` names leader and members.
    let out = tokio::process::Command::new(raftoral_conformance::bin_dir().join("raftoral"))
        .args([
            "cluster",
            "--addr",
            &cluster.nodes[&2].raft_addr,
            "status",
            "--json",
        ])
        .output()
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let members: Vec<u64> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(members, vec![1, 2, 4]);
    assert!(v["leader"].as_u64().unwrap() > 0);
    Ok(())
}

#[tokio::test]
async fn leader_killed_mid_workflows_loses_no_committed_checkpoint() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (a, b) = (others[0], others[1]);
    let effects = cluster.dir.path().join("effects.log");
    let _worker = Worker::start(&cluster.nodes[&a].url, &effects, &[]).await?;
    let client = RaftoralClient::connect(&cluster.nodes[&a].url).await?;
    let input = StepsInput {
        n: 30,
        step_delay_ms: 5,
        ..Default::default()
    };
    let mut handles = Vec::new();
    for _ in 0..10 {
        handles.push(client.start_workflow("steps", 1, &input).await?);
    }
    let first = handles[0].workflow_id().to_owned();
    eventually_async(DEADLINE, "some checkpoints to commit", || {
        let (client, id) = (client.clone(), first.clone());
        async move { Ok(client.get_workflow(&id).await?.checkpoint_count >= 5) }
    })
    .await?;
    cluster.kill(leader).await?;
    let expected_sum: u64 = (0..30u64).map(|i| i * 2).sum();
    for h in &handles {
        let sum: u64 = tokio::time::timeout(DEADLINE * 2, h.result()).await??;
        assert_eq!(sum, expected_sum);
    }
    // Both survivors hold every checkpoint of every workflow, identical.
    let cb = RaftoralClient::connect(&cluster.nodes[&b].url).await?;
    for h in &handles {
        let id = h.workflow_id().to_owned();
        eventually_async(
            DEADLINE,
            "the other survivor to apply the completion",
            || {
                let (cb, id) = (cb.clone(), id.clone());
                async move { Ok(cb.get_workflow(&id).await?.status() == WorkflowStatus::Completed) }
            },
        )
        .await?;
        let on_a = client.get_workflow(&id).await?;
        let on_b = cb.get_workflow(&id).await?;
        assert_eq!((on_a.checkpoint_count, on_b.checkpoint_count), (30, 30));
        assert_eq!(on_a.result, on_b.result);
    }
    Ok(())
}

/// Ids of all workflows a node knows.
async fn workflow_ids(client: &RaftoralClient) -> anyhow::Result<BTreeSet<String>> {
    let mut svc = raftoral_client::proto::sidecar::v1::workflow_service_client::WorkflowServiceClient::connect(
        client.endpoint().to_owned(),
    )
    .await?;
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = svc
            .list_workflows(raftoral_client::proto::sidecar::v1::ListWorkflowsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        ids.extend(page.workflows.into_iter().map(|w| w.workflow_id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        token = page.next_page_token;
    }
}

async fn start_many(client: &RaftoralClient, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        ids.insert(
            client
                .start_workflow("nobody_runs_this", 1, &())
                .await?
                .workflow_id()
                .to_owned(),
        );
    }
    Ok(ids)
}

#[tokio::test]
async fn restarted_follower_catches_up_by_log_then_by_snapshot() -> anyhow::Result<()> {
    // The log is not kept back for the killed follower, however soon it
    // comes back (the leader would keep it for a follower heard from within
    // the owner timeout).
    let mut cluster = Cluster::start(
        3,
        true,
        &[
            "--snapshot-entries",
            "100",
            "--snapshot-max-retained-entries",
            "1000",
        ],
    )
    .await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let client = RaftoralClient::connect(&cluster.nodes[&leader].url).await?;

    // By log: a few entries while it is down.
    cluster.kill(follower).await?;
    let mut acknowledged = start_many(&client, 20).await?;
    cluster.restart(follower).await?;
    let fc = RaftoralClient::connect(&cluster.nodes[&follower].url).await?;
    eventually_async(DEADLINE, "the follower to catch up by log", || {
        let (fc, want) = (fc.clone(), acknowledged.clone());
        async move { Ok(workflow_ids(&fc).await?.is_superset(&want)) }
    })
    .await?;

    // By snapshot: far more entries than the log keeps behind a snapshot.
    cluster.kill(follower).await?;
    acknowledged.extend(start_many(&client, 1300).await?);
    let status = cluster.status(leader).await?;
    assert!(
        status.first_index > 30,
        "the leader compacted its log: {status:?}"
    );
    cluster.restart(follower).await?;
    let fc = RaftoralClient::connect(&cluster.nodes[&follower].url).await?;
    eventually_async(DEADLINE, "the follower to catch up by snapshot", || {
        let (fc, want) = (fc.clone(), acknowledged.clone());
        async move { Ok(workflow_ids(&fc).await?.is_superset(&want)) }
    })
    .await?;
    assert!(
        cluster
            .log(follower)
            .contains("installed a snapshot from the leader"),
        "the follower should have been caught up by snapshot"
    );
    Ok(())
}

#[tokio::test]
async fn whole_cluster_killed_and_restarted_keeps_all_committed_state() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, true, &[]).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let client = RaftoralClient::connect(&cluster.nodes[&2].url).await?;
    let acknowledged = start_many(&client, 50).await?;
    for id in 1..=3 {
        cluster.kill(id).await?;
    }
    for id in 1..=3 {
        cluster.restart(id).await?;
    }
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    for id in 1..=3 {
        let c = RaftoralClient::connect(&cluster.nodes[&id].url).await?;
        eventually_async(DEADLINE, "every committed start to be back", || {
            let (c, want) = (c.clone(), acknowledged.clone());
            async move { Ok(workflow_ids(&c).await? == want) }
        })
        .await?;
    }
    // And the cluster takes new work.
    let client = RaftoralClient::connect(&cluster.nodes[&2].url).await?;
    start_many(&client, 1).await?;
    Ok(())
}

#[tokio::test]
async fn twenty_thousand_checkpoints_keep_the_log_bounded() -> anyhow::Result<()> {
    let cluster = Cluster::start(
        1,
        true,
        &[
            "--snapshot-entries",
            "1000",
            "--log-segment-bytes",
            "262144",
        ],
    )
    .await?;
    let effects = cluster.dir.path().join("effects.log");
    let _worker = Worker::start(&cluster.nodes[&1].url, &effects, &[]).await?;
    let client = RaftoralClient::connect(&cluster.nodes[&1].url).await?;
    let handle = client
        .start_workflow(
            "steps",
            1,
            &StepsInput {
                n: 20_000,
                ..Default::default()
            },
        )
        .await?;
    let sum: u64 = tokio::time::timeout(DEADLINE * 6, handle.result()).await??;
    assert_eq!(sum, steps_sum(20_000u64));
    let status = cluster.status(1).await?;
    // ~20,000 entries of ~100 bytes were written; compaction keeps at most
    // a few segments of 256 KiB.
    assert!(
        status.log_disk_bytes < 1024 * 1024,
        "log not bounded: {status:?}"
    );
    assert!(status.first_index > 15_000, "log not compacted: {status:?}");
    assert!(status.snapshot_index >= 19_000, "{status:?}");
    Ok(())
}

#[tokio::test]
async fn a_torn_log_tail_is_repaired_at_restart() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, true, &[]).await?;
    let client = RaftoralClient::connect(&cluster.nodes[&1].url).await?;
    let acknowledged = start_many(&client, 30).await?;
    cluster.kill(1).await?;
    // Tear the last record, as a crash in the middle of a write would.
    let wal = cluster.dir.path().join("data1").join("wal");
    let last = std::fs::read_dir(&wal)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    let last = last.into_iter().max().expect("a segment");
    // Segments are preallocated: the data ends where the zeros begin, and an
    // unfinished write leaves zeros where its last bytes should be.
    let mut data = std::fs::read(&last)?;
    let end = data
        .iter()
        .rposition(|b| *b != 0)
        .expect("the segment holds records")
        + 1;
    data[end - 3..end].fill(0);
    std::fs::write(&last, data)?;
    cluster.restart(1).await?;
    let client = RaftoralClient::connect(&cluster.nodes[&1].url).await?;
    let ids = workflow_ids(&client).await?;
    // Everything but (at most) the torn last entry is back.
    assert!(
        ids.len() + 1 >= acknowledged.len() && ids.is_subset(&acknowledged),
        "{} of {}",
        ids.len(),
        acknowledged.len()
    );
    assert!(
        cluster
            .log(1)
            .contains("torn write at the log tail cut off")
    );
    // The node is healthy: it commits new work.
    start_many(&client, 3).await?;
    Ok(())
}

#[tokio::test]
async fn a_minority_partition_cannot_commit_and_converges_after_healing() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    let old_leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();
    cluster.partition(&[old_leader])?;

    // The majority elects a leader among itself and commits.
    let (a, b) = (majority[0], majority[1]);
    let ca = RaftoralClient::connect(&cluster.nodes[&a].url).await?;
    eventually_async(
        DEADLINE,
        "the majority to elect a leader of its own",
        || {
            let cluster = &cluster;
            let majority = majority.clone();
            async move {
                let (sa, sb) = (cluster.status(a).await?, cluster.status(b).await?);
                Ok(sa.leader_id == sb.leader_id && majority.contains(&sa.leader_id))
            }
        },
    )
    .await?;
    let committed = start_many(&ca, 10).await?;

    // The isolated node cannot commit: its starts fail (no leader, or a
    // timeout; the SDK retries for a while first), and it does not answer
    // reads it cannot prove fresh.
    let isolated = RaftoralClient::connect(&cluster.nodes[&old_leader].url).await?;
    let err = isolated
        .start_workflow("nobody_runs_this", 1, &())
        .await
        .err()
        .expect("a minority must not commit");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    let stale = workflow_ids(&isolated).await;
    let status = stale
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>())
        .map(|s| s.code());
    assert_eq!(
        status,
        Some(tonic::Code::Unavailable),
        "a cut-off node answered a list: {stale:?}"
    );

    // Healed: the old leader follows the new one and converges.
    cluster.partition(&[])?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    eventually_async(DEADLINE, "the old leader to converge", || {
        let (isolated, want) = (isolated.clone(), committed.clone());
        async move { Ok(workflow_ids(&isolated).await?.is_superset(&want)) }
    })
    .await?;
    let cb = RaftoralClient::connect(&cluster.nodes[&b].url).await?;
    assert_eq!(workflow_ids(&cb).await?, workflow_ids(&isolated).await?);
    Ok(())
}
