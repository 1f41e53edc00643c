//! Failover times under a steady stream of workflows through node 1's sidecar.
//!
//! - **Leader kill**: the leader (another node) is SIGKILLed; the figure is
//!   the time from the kill to the completion of the first workflow started
//!   after it (one that needed the new leader for every commit).
//! - **Owner kill**: workers run on nodes 2 and 3 only, and the one that is
//!   not the leader is SIGKILLed; the figure is the time from the kill until
//!   every workflow started before it has completed, i.e. until the dead
//!   owner's workflows were moved and finished by the survivor.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use raftoral_client::WorkflowStatus;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::workflows::{Bench, Mode, Shape};

/// The cluster of every failover measurement.
const SHAPE: Shape = Shape {
    nodes: 3,
    durable: true,
    mode: Mode::Sidecar,
    tls: false,
};

/// Which node is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The Raft leader.
    Leader,
    /// A workflow owner that does not lead.
    Owner,
}

impl Kind {
    /// The figure's key in the JSON results.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Leader => "leader_failover_ms",
            Kind::Owner => "owner_failover_ms",
        }
    }
}

/// The figures of several kills of one kind.
#[derive(Debug, Serialize)]
pub struct Series {
    /// Each kill's figure, in milliseconds, in order.
    pub kills: Vec<f64>,
    /// The median of `kills` (the upper one for an even count).
    pub median: Option<f64>,
    /// Owner kills: kill to the first completion of a workflow started after
    /// it, in milliseconds, per kill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_new_ms: Option<Vec<f64>>,
}

/// Runs `kills` kills of `kind`, each on a fresh cluster, printing a line per
/// kill and the median. A kill that cannot measure (node 1 leads, or nothing
/// ran on the victim) is retried, up to four attempts per kill.
pub async fn series(kind: Kind, raftoral_bin: &Path, kills: u32) -> anyhow::Result<Series> {
    let mut figures = Vec::new();
    let mut first_new = Vec::new();
    let mut attempts = 0;
    while figures.len() < kills as usize && attempts < kills * 4 {
        attempts += 1;
        let mut bench = match kind {
            Kind::Leader => Bench::start(SHAPE, raftoral_bin).await?,
            Kind::Owner => Bench::start_with_workers(SHAPE, raftoral_bin, &[2, 3]).await?,
        };
        match kind {
            Kind::Leader => {
                if let Some(gap) = leader_kill(&mut bench).await? {
                    println!("leader kill: next workflow completed {gap:.0} ms after the kill");
                    figures.push(gap);
                }
            }
            Kind::Owner => {
                if let Some(k) = owner_kill(&mut bench).await? {
                    println!(
                        "owner kill (node {}, {} workflows on it): all earlier workflows completed \
                         {:.0} ms after the kill, first later one {:.0} ms",
                        k.victim, k.stranded, k.all_done_ms, k.first_new_ms
                    );
                    figures.push(k.all_done_ms);
                    first_new.push(k.first_new_ms);
                }
            }
        }
        bench.stop().await;
    }
    let mut sorted = figures.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted.get(sorted.len() / 2).copied();
    if let Some(m) = median {
        println!(
            "failover after {} kill: median {m:.0} ms over {} kills",
            match kind {
                Kind::Leader => "a leader",
                Kind::Owner => "an owner",
            },
            figures.len()
        );
    }
    Ok(Series {
        kills: figures,
        median,
        first_new_ms: (kind == Kind::Owner).then_some(first_new),
    })
}

/// One kill: returns the gap in milliseconds, or None when node 1 led (its
/// own sidecar cannot be killed under the app).
pub async fn leader_kill(bench: &mut Bench) -> anyhow::Result<Option<f64>> {
    let addr1 = bench.raft_addrs[&1].clone();
    let Some(leader) = crate::sidecars::leader_of(&addr1).await else {
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

/// One owner kill's figures.
#[derive(Debug)]
pub struct OwnerKill {
    /// The killed node.
    pub victim: u64,
    /// Workflows running on the victim just before the kill.
    pub stranded: usize,
    /// Kill to the last completion among workflows started before it.
    pub all_done_ms: f64,
    /// Kill to the first completion of a workflow started after it.
    pub first_new_ms: f64,
}

/// Where one workflow of the owner-kill load is.
#[derive(Debug, Clone)]
enum Run {
    /// The start call is in flight: it may still become a workflow, so a
    /// kill during it must wait for it.
    Starting,
    /// The start failed; the loop starts another one.
    NotStarted,
    Running(String),
    Done(Instant),
    Failed(String, String),
}

/// Load loops for the owner kill: few enough that the cluster is not
/// saturated, enough that both workers own workflows at any time.
const OWNER_LOAD: usize = 8;

/// One owner kill on a cluster from [`Bench::start_with_workers`] with
/// workers on nodes 2 and 3. None when nothing was running on the victim.
/// Fails when a workflow fails or one started before the kill has not
/// completed within 60 s.
pub async fn owner_kill(bench: &mut Bench) -> anyhow::Result<Option<OwnerKill>> {
    // (start time, state) of each workflow of the load.
    let runs: Arc<Mutex<Vec<(Instant, Run)>>> = Arc::default();
    // Dropped on return, which stops the loops.
    let mut load = JoinSet::new();
    for _ in 0..OWNER_LOAD {
        let (client, runs) = (bench.client.clone(), runs.clone());
        load.spawn(async move {
            loop {
                let index = {
                    let mut runs = runs.lock().unwrap();
                    runs.push((Instant::now(), Run::Starting));
                    runs.len() - 1
                };
                let set = |run: Run| runs.lock().unwrap()[index].1 = run;
                let Ok(handle) = client.start_workflow("steps", 1, &10u64).await else {
                    set(Run::NotStarted);
                    continue;
                };
                let id = handle.workflow_id().to_owned();
                set(Run::Running(id.clone()));
                match handle.result_raw().await {
                    Ok(_) => set(Run::Done(Instant::now())),
                    Err(e) => set(Run::Failed(id, e.to_string())),
                }
            }
        });
    }
    let completed = || {
        let runs = runs.lock().unwrap();
        runs.iter()
            .filter(|(_, r)| matches!(r, Run::Done(_)))
            .count()
    };
    let warm_up = Instant::now() + Duration::from_secs(60);
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    while completed() < 50 {
        if Instant::now() > warm_up {
            bail!("fewer than 50 workflows completed within 60 s before the kill");
        }
        poll.tick().await;
    }
    let Some(leader) = crate::sidecars::leader_of(&bench.raft_addrs[&1]).await else {
        bail!("no leader");
    };
    // Kill a worker node that does not lead, so only ownership moves.
    let victim = if leader == 2 { 3 } else { 2 };
    let running: Vec<String> = runs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, r)| match r {
            Run::Running(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let owners =
        futures::future::join_all(running.iter().map(|id| bench.client.get_workflow(id))).await;
    let stranded = owners
        .into_iter()
        .flatten()
        .filter(|w| w.status() == WorkflowStatus::Running && w.owner_node_id == victim)
        .count();
    let killed_at = Instant::now();
    if let Some(child) = bench.processes.get_mut(&victim) {
        child.kill().await?;
    }
    if stranded == 0 {
        return Ok(None);
    }
    let deadline = killed_at + Duration::from_secs(60);
    loop {
        // The last completion among workflows started before the kill, the
        // ones of them still running, and the first completion after it.
        let (mut last, mut waiting, mut first_new) = (killed_at, Vec::new(), None::<Instant>);
        for (started, run) in runs.lock().unwrap().iter() {
            let before = *started < killed_at;
            match run {
                Run::Failed(id, e) => bail!("workflow {id} failed after an owner kill: {e}"),
                Run::Done(t) if before => last = last.max(*t),
                Run::Done(t) => first_new = Some(first_new.map_or(*t, |f| f.min(*t))),
                Run::Starting | Run::Running(_) if before => waiting.push(run.clone()),
                _ => {}
            }
        }
        let ms = |t: Instant| t.duration_since(killed_at).as_secs_f64() * 1000.0;
        if let (true, Some(first_new)) = (waiting.is_empty(), first_new) {
            return Ok(Some(OwnerKill {
                victim,
                stranded,
                all_done_ms: ms(last),
                first_new_ms: ms(first_new),
            }));
        }
        if Instant::now() > deadline {
            // Name what the cluster says of the stuck ones.
            let mut stuck = Vec::new();
            for run in waiting.iter().take(5) {
                let Run::Running(id) = run else { continue };
                stuck.push(match bench.client.get_workflow(id).await {
                    Ok(w) => format!(
                        "{id}: {:?} on node {}, {} checkpoints",
                        w.status(),
                        w.owner_node_id,
                        w.checkpoint_count
                    ),
                    Err(e) => format!("{id}: {e}"),
                });
            }
            bail!(
                "60 s after killing node {victim} (leader {leader}): {} workflows started \
                 before the kill are not complete [{}]; a later one completed: {}",
                waiting.len(),
                stuck.join("; "),
                first_new.is_some()
            );
        }
        poll.tick().await;
    }
}
