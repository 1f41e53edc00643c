//! ReadIndex contexts are unique per node and per run: concurrent read
//! barriers from two followers do not collide on the leader (which keeps one
//! pending request per context and drops a second with the same bytes, so
//! one of them used to wait an election timeout and ask again).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_from_two_followers_are_answered_without_retries() -> anyhow::Result<()> {
    // Slow ticks: a read is asked again after an election timeout (1 s
    // here), which a loaded machine must not reach by itself.
    let (nodes, _peers) = common::served_cluster_with(3, |c| {
        c.tick_interval = std::time::Duration::from_millis(100);
        c.owner_timeout = std::time::Duration::from_secs(5);
    })
    .await?;
    let leader = nodes[&1].raft_status().leader_id;
    let followers: Vec<_> = nodes
        .values()
        .filter(|n| n.id() != leader)
        .cloned()
        .collect();
    let (a, b) = (&followers[0], &followers[1]);
    // Warm up one by one: a leader that has not committed in its term yet
    // drops reads, whatever their context.
    a.read_barrier().await?;
    b.read_barrier().await?;
    let before = a.read_retries() + b.read_retries();
    for _ in 0..20 {
        let (ra, rb) = tokio::join!(a.read_barrier(), b.read_barrier());
        ra?;
        rb?;
    }
    assert_eq!(
        a.read_retries() + b.read_retries() - before,
        0,
        "concurrent reads of two followers collided on the leader"
    );
    for node in nodes.values() {
        node.shutdown().await;
    }
    Ok(())
}
