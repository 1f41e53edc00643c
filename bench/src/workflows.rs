//! Workflow benchmarks through the SDK: `ping_pong` (1 checkpoint) and
//! `steps-10` (10 sequential checkpoints), in embedded mode and through real
//! sidecar processes, on the same cluster shape in the same run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftoral::NodeConfig;
use raftoral_client::{RaftoralClient, WorkflowError, WorkflowRequest, checkpoint};
use raftoral_embedded::EmbeddedNode;
use serde::Serialize;
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::sidecars::{self, free_port};
use crate::stats::{Latency, Recorder};

/// Where the SDK runs relative to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Engine in the app's process.
    Embedded,
    /// Engine in `raftoral serve` processes, SDK over gRPC.
    Sidecar,
}

/// Cluster shape of one measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Nodes.
    pub nodes: u64,
    /// Log on disk with fsync.
    pub durable: bool,
    /// Embedded or sidecar.
    pub mode: Mode,
    /// Mutual TLS between the nodes (certificates made for the run).
    pub tls: bool,
}

/// One row of results.
#[derive(Debug, Serialize)]
pub struct WorkflowRow {
    /// The cluster.
    pub shape: Shape,
    /// SDK language.
    pub sdk: &'static str,
    /// Workload name.
    pub workload: String,
    /// Sequential end-to-end latency (start + result).
    pub latency: Latency,
    /// Sequential runs: each checkpoint's latency inside the workflow
    /// function (proposal to commit); `steps` only.
    pub checkpoint: Option<Latency>,
    /// (concurrency, workflows/s, checkpoints/s).
    pub throughput: Vec<(usize, f64, f64)>,
}

/// The workflow types every bench worker registers.
pub const WORKFLOWS: [&str; 5] = ["ping_pong", "steps", "parallel", "flaky_once", "hold"];

/// The types only the in-process Rust workers register: `sleep` takes a
/// number of milliseconds, sleeps durably that long and returns `true`
/// (the timers bench, `timers.rs`); `echo` waits for the event `ping` and
/// returns its payload (the signals bench, `signals.rs`); `fanout` starts
/// N `ping_pong` children and awaits them together (the children bench,
/// `children.rs`).
pub const RUST_ONLY: [&str; 3] = ["sleep", "echo", "fanout"];

/// The bench worker's workflows; every worker language implements the same
/// contract (`bench/workers/`): `ping_pong` answers "pong" to "ping" after
/// one checkpoint; `steps` takes N and makes N sequential checkpoints,
/// returning each one's latency as the workflow function saw it (proposal
/// to commit, nanoseconds), so every language is timed the same way; `hold`
/// makes one checkpoint and then never finishes (the memory figures).
pub async fn handler(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let ctx = req.context.clone();
    match req.workflow_name.as_str() {
        "ping_pong" => {
            let input: String = req.input()?;
            let out: String = checkpoint!(
                ctx,
                "result",
                if input == "ping" { "pong" } else { "ping" }.to_string()
            );
            Ok(serde_json::to_vec(&out)?)
        }
        "steps" => {
            let n: u64 = req.input()?;
            let mut nanos = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                let _: u64 = ctx.checkpoint(&format!("step-{i}"), || i + 1).await?;
                nanos.push(t.elapsed().as_nanos() as u64);
            }
            Ok(serde_json::to_vec(&nanos)?)
        }
        "parallel" => {
            // N independent steps awaited together: positions in call
            // order, all N proposals in flight at once.
            let n: u64 = req.input()?;
            let steps = (0..n).map(|i| {
                let ctx = ctx.clone();
                async move { ctx.checkpoint(&format!("step-{i}"), || i + 1).await }
            });
            let values = futures::future::try_join_all(steps).await?;
            Ok(serde_json::to_vec(&values.len())?)
        }
        "flaky_once" => {
            // One step that fails its first attempt and succeeds on the
            // retry, with no delay: the cost of the failure path.
            let policy = raftoral_client::RetryPolicy {
                initial_interval: std::time::Duration::ZERO,
                jitter: 0.0,
                ..raftoral_client::RetryPolicy::default()
            };
            let attempts: u32 = ctx
                .try_checkpoint_compute("flaky", &policy, |attempt| async move {
                    if attempt == 1 {
                        Err(raftoral_client::StepError::new("Flaky", "first attempt"))
                    } else {
                        Ok(attempt)
                    }
                })
                .await?;
            Ok(serde_json::to_vec(&attempts)?)
        }
        "fanout" => {
            // All children started side by side (their starts share
            // appends), then awaited together.
            let n: usize = req.input()?;
            let calls = (0..n).map(|_| {
                ctx.call_child::<_, String>(
                    "ping_pong",
                    "ping",
                    raftoral_client::ChildOptions::default(),
                )
            });
            let results = futures::future::try_join_all(calls).await?;
            Ok(serde_json::to_vec(&results.len())?)
        }
        "echo" => {
            let payload: Option<u64> = ctx.wait_event("ping", None).await?;
            Ok(serde_json::to_vec(&payload)?)
        }
        "sleep" => {
            let ms: u64 = req.input()?;
            ctx.sleep(std::time::Duration::from_millis(ms)).await?;
            Ok(serde_json::to_vec(&true)?)
        }
        "hold" => {
            let _: u64 = checkpoint!(ctx, "started", 1);
            // Holds the workflow open (running) for the memory figure; the
            // bench client's short shutdown grace drops these at the end.
            ctx.checkpoint_compute("never", std::future::pending::<u64>())
                .await?;
            Ok(Vec::new())
        }
        other => Err(format!("no workflow '{other}'").into()),
    }
}

/// The Rust bench worker as a process of its own (`raftoral-bench worker`,
/// started by the `sdks` part): registers the bench workflows on the sidecar
/// at `RAFTORAL_SIDECAR_URL`, prints `worker ready`, and runs them with
/// `run` (such as [`handler`]) until killed.
pub async fn serve_worker<F, Fut>(run: F) -> anyhow::Result<()>
where
    F: Fn(WorkflowRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, WorkflowError>> + Send + 'static,
{
    let url = std::env::var("RAFTORAL_SIDECAR_URL").context("RAFTORAL_SIDECAR_URL is not set")?;
    let client = RaftoralClient::connect(url).await?;
    for name in WORKFLOWS {
        client.register_workflow(name, 1).await?;
    }
    println!("worker ready");
    client.handle_workflows(run).await?;
    Ok(())
}

/// A running cluster with its workers, as the app sees it.
pub struct Bench {
    /// Client of node 1: the caller, and also node 1's worker when it has one.
    pub client: RaftoralClient,
    /// Worker clients and their `handle_workflows` tasks, by node id.
    workers: BTreeMap<u64, (RaftoralClient, Worker)>,
    embedded: Vec<EmbeddedNode>,
    /// Sidecar processes by node id.
    pub processes: BTreeMap<u64, Child>,
    /// Node-to-node addresses by node id.
    pub raft_addrs: BTreeMap<u64, String>,
    /// Client API URLs of the sidecar processes by node id.
    pub urls: BTreeMap<u64, String>,
    _dir: tempfile::TempDir,
}

type Worker = JoinHandle<Result<(), raftoral_client::ClientError>>;

impl Bench {
    /// Starts the cluster and a worker on node 1, which is also the caller.
    pub async fn start(shape: Shape, raftoral_bin: &Path) -> anyhow::Result<Bench> {
        Self::start_with_workers(shape, raftoral_bin, &[1]).await
    }

    /// Starts the cluster with a worker (its own client, registering every
    /// bench workflow) on each node of `workers`. The caller is node 1's
    /// client either way; it only runs workflows when 1 is in `workers`.
    pub async fn start_with_workers(
        shape: Shape,
        raftoral_bin: &Path,
        workers: &[u64],
    ) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let tls = if shape.tls {
            Some(crate::sidecars::cluster_certs(dir.path())?)
        } else {
            None
        };
        let mut raft_addrs = BTreeMap::new();
        for id in 1..=shape.nodes {
            raft_addrs.insert(id, format!("127.0.0.1:{}", free_port()?));
        }
        let mut embedded = Vec::new();
        // One client per node that needs one: node 1 and the workers'.
        let mut clients = BTreeMap::new();
        let wanted = |id: u64| id == 1 || workers.contains(&id);
        // A short grace: the hold workflows never return, and the bench must
        // not wait on them at shutdown.
        let options = raftoral_client::StreamOptions {
            shutdown_grace: Duration::from_millis(100),
            ..Default::default()
        };
        // Nodes 2..n are `raftoral serve` processes in both modes, started
        // first: they elect a leader among themselves, so node 1 (the
        // caller's) joins as a follower, like two in three workflows' owners,
        // and the two modes differ only in node 1's app link. (Embedded nodes
        // in one process would also skip the process hops between nodes.)
        let others: Vec<u64> = raft_addrs.keys().copied().filter(|id| *id != 1).collect();
        let mut processes = BTreeMap::new();
        let mut urls = BTreeMap::new();
        if !others.is_empty() {
            let sidecars = sidecars::spawn(
                raftoral_bin,
                dir.path(),
                &raft_addrs,
                &others,
                shape.durable,
                tls.as_ref(),
            )
            .await?;
            processes = sidecars.processes;
            urls.extend(sidecars.urls.clone());
            for (id, url) in sidecars.urls.into_iter().filter(|(id, _)| wanted(*id)) {
                clients.insert(
                    id,
                    RaftoralClient::connect_with(&url, options.clone()).await?,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            let admin = tls
                .clone()
                .map(raftoral::consensus::tls::Tls::load)
                .transpose()?;
            while sidecars::leader_over(&raft_addrs[&others[0]], admin.as_deref())
                .await
                .is_none()
            {
                if Instant::now() > deadline {
                    bail!("nodes {others:?} elected no leader within 30 s");
                }
                poll.tick().await;
            }
        }
        match shape.mode {
            Mode::Embedded => {
                let config = NodeConfig {
                    node_id: 1,
                    peers: if shape.nodes > 1 {
                        raft_addrs.clone()
                    } else {
                        BTreeMap::new()
                    },
                    advertise: raft_addrs[&1].clone(),
                    storage_path: shape.durable.then(|| dir.path().join("n1")),
                    tls: tls.clone(),
                    ..NodeConfig::default()
                };
                let listen = (shape.nodes > 1)
                    .then(|| raft_addrs[&1].parse())
                    .transpose()?;
                let node = EmbeddedNode::start(config, listen).await?;
                clients.insert(1, node.client());
                embedded.push(node);
            }
            Mode::Sidecar => {
                let sidecars = sidecars::spawn(
                    raftoral_bin,
                    dir.path(),
                    &raft_addrs,
                    &[1],
                    shape.durable,
                    tls.as_ref(),
                )
                .await?;
                processes.extend(sidecars.processes);
                urls.extend(sidecars.urls.clone());
                for (id, url) in sidecars.urls {
                    clients.insert(
                        id,
                        RaftoralClient::connect_with(&url, options.clone()).await?,
                    );
                }
            }
        }
        let mut running = BTreeMap::new();
        for id in workers {
            let client = clients
                .get(id)
                .with_context(|| format!("no node {id} for a worker"))?
                .clone();
            for name in WORKFLOWS.iter().chain(RUST_ONLY.iter()) {
                client.register_workflow(name, 1).await?;
            }
            let worker = {
                let client = client.clone();
                tokio::spawn(async move { client.handle_workflows(handler).await })
            };
            running.insert(*id, (client, worker));
        }
        Ok(Bench {
            client: clients.remove(&1).context("no node 1")?,
            workers: running,
            embedded,
            processes,
            raft_addrs,
            urls,
            _dir: dir,
        })
    }

    /// Runs one workflow to its end; for `steps`, the checkpoint latencies
    /// the worker measured (see [`handler`]).
    async fn run_one(&self, workload: &Workload) -> anyhow::Result<Vec<u64>> {
        let handle = match workload {
            Workload::PingPong => self.client.start_workflow("ping_pong", 1, "ping").await?,
            Workload::Steps(n) => self.client.start_workflow("steps", 1, n).await?,
            Workload::Parallel(n) => self.client.start_workflow("parallel", 1, n).await?,
            Workload::FlakyOnce => self.client.start_workflow("flaky_once", 1, &()).await?,
        };
        let result = handle.result_raw().await?;
        Ok(match workload {
            Workload::PingPong | Workload::Parallel(_) | Workload::FlakyOnce => Vec::new(),
            Workload::Steps(_) => serde_json::from_slice(&result)
                .context("steps must return its checkpoint latencies in ns")?,
        })
    }

    /// Measures one workload; `sdk` names the worker's language in the row.
    pub async fn measure(
        self: &Arc<Self>,
        shape: Shape,
        sdk: &'static str,
        workload: Workload,
        runs: u64,
        throughput_workflows: u64,
    ) -> anyhow::Result<WorkflowRow> {
        for _ in 0..50 {
            self.run_one(&workload).await?;
        }
        let this = self.clone();
        let (recorder, checkpoints) = tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let mut checkpoints = Recorder::new();
            for _ in 0..runs {
                let t = Instant::now();
                let nanos = this.run_one(&workload).await?;
                recorder.record(t.elapsed());
                for ns in nanos {
                    checkpoints.record(Duration::from_nanos(ns));
                }
            }
            anyhow::Ok((recorder, checkpoints))
        })
        .await??;
        let checkpoint = Some(checkpoints.summary()).filter(|l| l.count > 0);
        let mut throughput = Vec::new();
        for c in [1usize, 64, 256] {
            let total = if c == 1 {
                throughput_workflows / 10
            } else {
                throughput_workflows
            };
            let per_task = (total / c as u64).max(1);
            let this = self.clone();
            let rate = concurrently(c, per_task, move || {
                let this = this.clone();
                async move { this.run_one(&workload).await.map(|_| ()) }
            })
            .await?;
            throughput.push((c, rate, rate * workload.checkpoints() as f64));
        }
        Ok(WorkflowRow {
            shape,
            sdk,
            workload: workload.name(),
            latency: recorder.summary(),
            checkpoint,
            throughput,
        })
    }

    /// The directory of the cluster's files (node `n`'s storage is `n<id>`).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Resident memory of sidecar process `id`, in MiB.
    pub fn rss_mib(&self, id: u64) -> Option<f64> {
        let pid = self.processes.get(&id)?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    /// Stops everything.
    pub async fn stop(self) {
        self.client.shutdown().await;
        for (client, worker) in self.workers.into_values() {
            client.shutdown().await;
            let _ = worker.await;
        }
        for node in self.embedded {
            node.shutdown().await;
        }
        for (_, mut child) in self.processes {
            let _ = child.kill().await;
        }
    }
}

/// Runs `one` `per_task` times over in each of `tasks` concurrent tasks;
/// returns the calls per second.
pub async fn concurrently<F, Fut>(tasks: usize, per_task: u64, one: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    one().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for handle in futures::future::join_all(handles).await {
        handle??;
    }
    Ok((per_task * tasks as u64) as f64 / started.elapsed().as_secs_f64())
}

/// A workload.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// One checkpoint.
    PingPong,
    /// N sequential checkpoints.
    Steps(u64),
    /// N checkpoints awaited together.
    Parallel(u64),
    /// One step that fails once and succeeds on a retry with no delay.
    FlakyOnce,
}

impl Workload {
    fn name(&self) -> String {
        match self {
            Workload::PingPong => "ping_pong".into(),
            Workload::Steps(n) => format!("steps-{n}"),
            Workload::Parallel(n) => format!("parallel-{n}"),
            Workload::FlakyOnce => "flaky_once".into(),
        }
    }

    fn checkpoints(&self) -> u64 {
        match self {
            Workload::PingPong => 1,
            Workload::Steps(n) | Workload::Parallel(n) => *n,
            Workload::FlakyOnce => 2,
        }
    }
}
