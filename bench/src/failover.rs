//! Failover time: a steady stream of workflows through node 1's sidecar while
//! the leader (another node) is SIGKILLed; the figure is the time from the
//! kill to the completion of the first workflow started after it (one that
//! needed the new leader for every commit).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftoral_client::proto::cluster::v1::{
    ClusterStatusRequest, cluster_service_client::ClusterServiceClient,
};

use crate::workflows::Bench;

async fn leader_of(addr: &str) -> Option<u64> {
    let mut c = ClusterServiceClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    let s = c
        .cluster_status(ClusterStatusRequest {})
        .await
        .ok()?
        .into_inner();
    (s.leader_id != 0).then_some(s.leader_id)
}

/// One kill: returns the gap in milliseconds, or None when node 1 led (its
/// own sidecar cannot be killed under the app).
pub async fn leader_kill(bench: &mut Bench) -> anyhow::Result<Option<f64>> {
    let addr1 = bench.raft_addrs[&1].clone();
    let Some(leader) = leader_of(&addr1).await else {
        anyhow::bail!("no leader");
    };
    if leader == 1 {
        return Ok(None);
    }
    // (started, completed) of each workflow of the load.
    let done: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, done, stop) = (bench.client.clone(), done.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Real callers retry a start that failed with UNAVAILABLE.
                let started = Instant::now();
                let Ok(handle) = client.start_workflow("ping_pong", 1, "ping").await else {
                    continue;
                };
                if handle.result_raw().await.is_ok() {
                    done.lock().unwrap().push((started, Instant::now()));
                }
            }
        })
    };
    // Let the load run, then kill the leader.
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    while done.lock().unwrap().len() < 50 {
        poll.tick().await;
    }
    let killed_at = Instant::now();
    if let Some(child) = bench.processes.get_mut(&leader) {
        child.kill().await?;
    }
    let deadline = killed_at + Duration::from_secs(60);
    // Polled every millisecond: the resolution of the figure.
    let mut poll = tokio::time::interval(Duration::from_millis(1));
    let gap = loop {
        if let Some((_, t)) = done.lock().unwrap().iter().find(|(s, _)| *s > killed_at) {
            break t.duration_since(killed_at);
        }
        if Instant::now() > deadline {
            anyhow::bail!("no progress within 60 s of the leader kill");
        }
        poll.tick().await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    Ok(Some(gap.as_secs_f64() * 1000.0))
}
