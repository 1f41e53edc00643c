//! Reads are linearizable on every node (Raft ReadIndex): a write that
//! completed through one node is seen through any other at once, and a node
//! cut off from the leader refuses to answer rather than answer stale.

use raftoral_client::proto::sidecar::v1::ListWorkflowsRequest;
use raftoral_client::proto::sidecar::v1::workflow_service_client::WorkflowServiceClient;
use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::cluster::Cluster;

#[tokio::test]
async fn a_start_through_one_node_is_read_at_once_through_the_others() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let (mut clients, mut listers) = (Vec::new(), Vec::new());
    for id in 1..=3 {
        let url = &cluster.nodes[&id].url;
        clients.push(RaftoralClient::connect(url).await?);
        listers.push(WorkflowServiceClient::connect(url.clone()).await?);
    }
    for i in 0..30usize {
        let (writer, reader) = (&clients[i % 3], &clients[(i + 1) % 3]);
        let id = format!("read-after-write-{i}");
        writer
            .start_workflow_with_id(&id, "nobody_runs_this", 1, &i)
            .await?;
        // No polling: the first read must see it.
        let info = reader.get_workflow(&id).await?;
        assert_eq!(info.workflow_id, id);
        assert_eq!(info.status(), WorkflowStatus::Pending);
        let listed = listers[(i + 1) % 3]
            .list_workflows(ListWorkflowsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .workflows;
        assert!(
            listed.iter().any(|w| w.workflow_id == id),
            "{id} not listed"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_node_cut_off_from_the_leader_refuses_reads_instead_of_answering_stale()
-> anyhow::Result<()> {
    // The harness's proposal timeout (3 s) bounds how long the refusal takes.
    let cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    let majority = (1..=3).find(|id| *id != cut).unwrap();
    cluster.cut_off(cut).await?;
    // Written on the majority side after the cut: the cut node cannot know.
    let writer = RaftoralClient::connect(&cluster.nodes[&majority].url).await?;
    writer
        .start_workflow_with_id("after-the-cut", "nobody_runs_this", 1, &())
        .await?;
    let reader = RaftoralClient::connect(&cluster.nodes[&cut].url).await?;
    let Err(err) = reader.get_workflow("after-the-cut").await else {
        panic!("a node cut off from the leader answered a read");
    };
    assert_eq!(
        err.code(),
        Some(tonic::Code::Unavailable),
        "not NOT_FOUND (stale): {err}"
    );
    // Healed, it answers, and sees the write.
    cluster.partition(&[])?;
    raftoral_conformance::eventually_async(
        raftoral_conformance::DEADLINE,
        "the read to succeed after healing",
        || {
            let reader = reader.clone();
            async move { Ok(reader.get_workflow("after-the-cut").await.is_ok()) }
        },
    )
    .await?;
    Ok(())
}
