//! `/health`, `/ready` and `/metrics`: plain HTTP/1.1 on each node's
//! node-to-node port, next to its gRPC services, against real processes.

use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::http::{http, sample};
use raftoral_conformance::{DEADLINE, eventually_async};

#[tokio::test]
async fn probes_follow_quorum_loss_and_recovery() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    let addr = |id: u64| cluster.nodes[&id].raft_addr.clone();
    eventually_async(DEADLINE, "every node ready", || {
        let addrs: Vec<String> = (1..=3).map(addr).collect();
        async move {
            for a in &addrs {
                if http(a, "GET", "/ready").await?.0 != 200 {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    })
    .await?;
    let mut leaders = 0;
    for id in 1..=3 {
        let (code, body) = http(&addr(id), "GET", "/metrics").await?;
        assert_eq!(code, 200);
        assert_eq!(sample(&body, "raftoral_node_id"), Some(id));
        assert_eq!(sample(&body, "raftoral_raft_voters"), Some(3));
        assert_eq!(sample(&body, "raftoral_node_ready"), Some(1));
        leaders += sample(&body, "raftoral_raft_is_leader").unwrap_or(0);
    }
    assert_eq!(leaders, 1, "exactly one node reports itself leader");

    // Node 3 alone loses its leader: live, not ready, and it says why.
    cluster.partition(&[3])?;
    let a3 = addr(3);
    eventually_async(DEADLINE, "node 3 to report no leader", || {
        let a3 = a3.clone();
        async move {
            let (code, body) = http(&a3, "GET", "/ready").await?;
            Ok(code == 503 && body.contains("no leader known"))
        }
    })
    .await?;
    assert_eq!(http(&a3, "GET", "/health").await?, (200, "ok\n".into()));
    // The majority side stays ready.
    assert_eq!(http(&addr(1), "GET", "/ready").await?.0, 200);

    cluster.partition(&[])?;
    eventually_async(DEADLINE, "node 3 ready again after healing", || {
        let a3 = a3.clone();
        async move { Ok(http(&a3, "GET", "/ready").await?.0 == 200) }
    })
    .await?;

    // Bad requests get HTTP answers; gRPC on the same port still works.
    let (code, body) = http(&a3, "GET", "/nope").await?;
    assert_eq!(code, 404);
    assert!(body.contains("/health, /ready and /metrics"), "{body}");
    assert_eq!(http(&a3, "POST", "/ready").await?.0, 405);
    assert_eq!(cluster.status(3).await?.node_id, 3);
    Ok(())
}
