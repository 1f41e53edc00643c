//! Hostile input on the node-to-node port of real processes: the two-byte
//! frames that once stopped a node are refused, traffic without a cluster
//! id is refused, and a node whose Raft loop dies exits with an error.

use raftoral_client::proto::cluster::v1::{
    RaftEnvelope, RaftRequest, cluster_service_client::ClusterServiceClient,
};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{DEADLINE, eventually_async};

/// One HTTP/1.1 GET; returns (status code, body).
async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    raftoral_conformance::http::http(addr, "GET", path).await
}

/// One `Raft` call with one batch of raw frames.
async fn send_frames(
    addr: &str,
    from: u64,
    cluster_id: &str,
    frames: &[&[u8]],
) -> Result<(), tonic::Status> {
    let mut client = ClusterServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let batch = RaftRequest {
        from_node_id: from,
        messages: frames
            .iter()
            .map(|f| RaftEnvelope {
                group_id: 0,
                message: f.to_vec().into(),
            })
            .collect(),
        from_address: String::new(),
        cluster_id: cluster_id.to_owned(),
    };
    client
        .raft(tokio_stream::iter(vec![batch]))
        .await
        .map(|_| ())
}

fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn two_bytes_no_longer_stop_a_node_and_a_dead_loop_exits_the_process() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    let cluster_id = cluster.status(leader).await?.cluster_id;
    let addr = |id: u64| cluster.nodes[&id].raft_addr.clone();

    // MsgPropose (08 02) and MsgReadIndex (08 0f) without entries: the
    // leader's Raft loop panicked on them, directly or through a follower.
    let frames: [&[u8]; 2] = [&[0x08, 0x02], &[0x08, 0x0f]];
    for target in [leader, follower] {
        send_frames(&addr(target), other, &cluster_id, &frames).await?;
    }
    let refused = send_frames(&addr(leader), other, "", &frames)
        .await
        .expect_err("no cluster id");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    for target in [leader, follower] {
        let a = addr(target);
        eventually_async(DEADLINE, "the frames to be counted as refused", || {
            let a = a.clone();
            async move {
                let (_, metrics) = get(&a, "/metrics").await?;
                Ok(sample(&metrics, "raftoral_raft_messages_refused_total") >= Some(2))
            }
        })
        .await?;
    }
    assert_eq!(
        cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?,
        leader
    );
    for id in 1..=3 {
        assert_eq!(get(&addr(id), "/health").await?, (200, "ok\n".into()));
    }

    // A Raft loop that dies (here on purpose, through the fault file) makes
    // the process exit with an error instead of idling "shutting down".
    cluster.crash_raft_loop(follower)?;
    let status = cluster.wait_exit(follower).await?;
    assert!(!status.success(), "a dead Raft loop must exit non-zero");
    let log = cluster.log(follower);
    assert!(log.contains("the Raft loop panicked"), "{log}");
    let rest: Vec<u64> = (1..=3).filter(|id| *id != follower).collect();
    cluster.wait_agreement(&rest, &[1, 2, 3]).await?;
    Ok(())
}
