//! A node joining a node that holds the growth run's workflows: the time
//! until it is a voter with the leader's commit index applied, while starts
//! go on against the leader (each a commit) and the leader is watched. The
//! starts' latency during the join (the leader encodes and sends a snapshot
//! of everything) is compared with the same load just before it.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use raftoral_client::RaftoralClient;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::sidecars;
use crate::stats::{Latency, Recorder};

/// Starts in flight against the leader during the join.
const LOAD_TASKS: usize = 4;
/// Starts of the same load before the join, as the baseline of its
/// latency: the join begins once they are in.
const BASELINE_STARTS: u64 = 10_000;

/// What the join measured.
#[derive(Debug, Serialize)]
pub struct Join {
    /// From the joiner's process start until it is a voter and has applied
    /// the leader's commit index, ms.
    pub caught_up_ms: f64,
    /// Starts acknowledged by the leader meanwhile.
    pub commits_during: u64,
    /// Starts refused or failed meanwhile.
    pub refused_during: u64,
    /// Samples (every 50 ms) in which node 1 was not the leader.
    pub leader_lost_samples: u64,
    /// The joiner's resident memory once caught up, MiB.
    pub joiner_rss_mib: f64,
    /// Latency of a start (one commit) in the [`BASELINE_STARTS`] starts
    /// before the join.
    pub start_before: Latency,
    /// Latency of a start while the node joined.
    pub start_during: Latency,
}

/// A node's `/metrics` (served on its node-to-node port); empty when it
/// does not answer.
pub async fn scrape(raft_addr: &str) -> String {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(raft_addr).await?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {raft_addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        std::io::Result::Ok(body)
    };
    fetch.await.unwrap_or_default()
}

/// One gauge of a scraped `/metrics`.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn rss_mib(child: &Child) -> f64 {
    child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts node 2 with `--join` through node 1 (at `leader_raft`, client API
/// `leader_url`), storage in `dir`, and measures it catching up.
pub async fn measure(
    raftoral_bin: &Path,
    dir: &Path,
    leader_raft: &str,
    leader_url: &str,
) -> anyhow::Result<Join> {
    let client = RaftoralClient::connect(leader_url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let joining = Arc::new(AtomicBool::new(false));
    let (baseline_count, baseline_done) = (Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..LOAD_TASKS)
        .map(|_| {
            let (client, stop, joining, ok, refused) = (
                client.clone(),
                stop.clone(),
                joining.clone(),
                ok.clone(),
                refused.clone(),
            );
            let (baseline_count, baseline_done) = (baseline_count.clone(), baseline_done.clone());
            tokio::spawn(async move {
                let (mut before, mut during) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let outcome = client.start_workflow("nobody_runs_this", 1, "x").await;
                    let during_join = joining.load(Ordering::Relaxed);
                    match outcome {
                        Ok(_) if during_join => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            during.push(t.elapsed());
                        }
                        Ok(_) => {
                            before.push(t.elapsed());
                            if baseline_count.fetch_add(1, Ordering::Relaxed) + 1 == BASELINE_STARTS
                            {
                                // A permit is kept if nobody waits yet.
                                baseline_done.notify_one();
                            }
                        }
                        Err(_) if during_join => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                }
                (before, during)
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(120), baseline_done.notified())
        .await
        .context("the baseline starts did not complete within 120 s")?;
    joining.store(true, Ordering::Relaxed);
    let address = format!("127.0.0.1:{}", sidecars::free_port()?);
    let started = Instant::now();
    let mut joiner = Command::new(raftoral_bin)
        .args(["serve", "--node-id", "2", "--listen", &address])
        .args(["--sidecar-listen", "127.0.0.1:0", "--join", leader_raft])
        .arg("--storage-path")
        .arg(dir.join("n2"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("spawn the joiner")?;
    let mut lost = 0;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let caught_up_ms = loop {
        poll.tick().await;
        // One scrape of each node per poll: the scrapes are part of the
        // load on the leader, which the baseline did not have.
        let (leader, joined) = (scrape(leader_raft).await, scrape(&address).await);
        if gauge(&leader, "raftoral_raft_is_leader") != Some(1.0) {
            lost += 1;
        }
        let voters = gauge(&leader, "raftoral_raft_voters");
        let commit = gauge(&leader, "raftoral_raft_commit_index");
        let applied = gauge(&joined, "raftoral_raft_applied_index");
        if voters == Some(2.0) && applied.zip(commit).is_some_and(|(a, c)| a >= c) {
            break started.elapsed().as_secs_f64() * 1000.0;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the joiner did not catch up within 300 s"
        );
        if let Some(status) = joiner.try_wait()? {
            anyhow::bail!("the joiner exited: {status}");
        }
    };
    stop.store(true, Ordering::Relaxed);
    let (mut before, mut during) = (Recorder::new(), Recorder::new());
    for task in load {
        let (b, d) = task.await?;
        b.into_iter().for_each(|x| before.record(x));
        d.into_iter().for_each(|x| during.record(x));
    }
    let joiner_rss_mib = rss_mib(&joiner);
    joiner.kill().await?;
    Ok(Join {
        caught_up_ms,
        commits_during: ok.load(Ordering::Relaxed),
        refused_during: refused.load(Ordering::Relaxed),
        leader_lost_samples: lost,
        joiner_rss_mib,
        start_before: before.summary(),
        start_during: during.summary(),
    })
}
