//! The SDKs side by side: the same sidecar cluster, the same caller (the
//! Rust client on node 1), and one worker process on node 1 in each language
//! (Rust, Python, Node), each implementing the contract of
//! [`crate::workflows::handler`] (`bench/workers/`). Each worker times its
//! own checkpoints (proposal to commit, inside the workflow function), so
//! the per-checkpoint figures compare the bindings directly. A control
//! worker, `rust-thread` ([`crate::language_thread`]), crosses threads per
//! checkpoint as the bindings do, without a language runtime.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::workflows::{Bench, Mode, Shape, WorkflowRow, Workload};

/// A worker language and how to start its bench worker.
#[derive(Debug, Clone)]
pub enum Sdk {
    /// `raftoral-bench worker`: the Rust SDK in a process of its own.
    Rust,
    /// `raftoral-bench worker --language-thread`: the control for the
    /// bindings, workflow functions on threads of their own
    /// ([`crate::language_thread`]).
    RustThread,
    /// `bench/workers/bench_worker.py` run by this interpreter (a venv with the
    /// `raftoral-client` wheel installed).
    Python(PathBuf),
    /// `worker.mjs` in this npm project (the `@raftoral/client` tarballs
    /// installed in its node_modules).
    Node(PathBuf),
}

impl Sdk {
    /// The name in the rows.
    pub fn name(&self) -> &'static str {
        match self {
            Sdk::Rust => "rust",
            Sdk::RustThread => "rust-thread",
            Sdk::Python(_) => "python",
            Sdk::Node(_) => "node",
        }
    }

    fn command(&self) -> anyhow::Result<Command> {
        Ok(match self {
            Sdk::Rust => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("worker");
                c
            }
            Sdk::RustThread => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args(["worker", "--language-thread"]);
                c
            }
            Sdk::Python(python) => {
                let mut c = Command::new(python);
                c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/bench_worker.py"));
                c
            }
            Sdk::Node(project) => {
                let mut c = Command::new("node");
                c.arg(project.join("worker.mjs"));
                c
            }
        })
    }

    /// Starts the worker against `url` and waits for its `worker ready` line.
    async fn spawn(&self, url: &str) -> anyhow::Result<Child> {
        let mut child = self
            .command()?
            .env("RAFTORAL_SIDECAR_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start the {} bench worker", self.name()))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "worker ready" {
                    return anyhow::Ok(true);
                }
            }
            Ok(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => Ok(child),
            Ok(Ok(false)) => bail!(
                "the {} bench worker exited before it was ready",
                self.name()
            ),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("the {} bench worker was not ready within 60 s", self.name()),
        }
    }
}

/// Worker memory: RSS idle and with `running` workflows held open.
#[derive(Debug, Serialize)]
pub struct WorkerMemory {
    /// Worker language.
    pub sdk: &'static str,
    /// RSS of the worker process once registered, MiB.
    pub idle_mib: f64,
    /// Workflows running (each with one checkpoint committed) on it.
    pub running: u64,
    /// RSS of the worker process with them, MiB.
    pub running_mib: f64,
}

/// Every row and memory figure of one `sdks` run.
#[derive(Debug, Serialize)]
pub struct SdkRun {
    /// Latency and throughput rows, by SDK, nodes and workload.
    pub rows: Vec<WorkflowRow>,
    /// Worker memory by SDK (3 nodes).
    pub memory: Vec<WorkerMemory>,
}

/// Runs ping_pong and steps-10 on 1 and 3 nodes with each SDK's worker, then
/// each worker's memory with `hold` workflows running.
pub async fn run(
    raftoral_bin: &Path,
    sdks: &[Sdk],
    runs: u64,
    throughput_workflows: u64,
    hold: u64,
) -> anyhow::Result<SdkRun> {
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for nodes in [1, 3] {
        let shape = Shape {
            nodes,
            durable: true,
            mode: Mode::Sidecar,
            tls: false,
        };
        for sdk in sdks {
            // A fresh cluster per SDK: no worker of another language is
            // registered, and every workflow lands on this one.
            let bench = Arc::new(Bench::start_with_workers(shape, raftoral_bin, &[]).await?);
            let mut worker = sdk.spawn(&bench.urls[&1]).await?;
            for workload in [Workload::PingPong, Workload::Steps(10)] {
                let row = bench
                    .measure(shape, sdk.name(), workload, runs, throughput_workflows)
                    .await
                    .with_context(|| format!("{} worker, {nodes} nodes", sdk.name()))?;
                print_row(&row);
                rows.push(row);
            }
            // The control's `hold` runs as the Rust worker's does.
            if nodes == 3 && !matches!(sdk, Sdk::RustThread) {
                let m = held_memory(&bench, sdk, &worker, hold).await?;
                println!(
                    "{} worker RSS: idle {:.1} MiB, {} running workflows {:.1} MiB",
                    m.sdk, m.idle_mib, m.running, m.running_mib
                );
                memory.push(m);
            }
            let _ = worker.kill().await;
            if let Ok(bench) = Arc::try_unwrap(bench) {
                bench.stop().await;
            }
        }
    }
    Ok(SdkRun { rows, memory })
}

/// Starts `hold` workflows (each parks after one checkpoint) and reads the
/// worker's RSS once every one of them has its checkpoint committed, so all
/// are running in the worker at that moment.
async fn held_memory(
    bench: &Arc<Bench>,
    sdk: &Sdk,
    worker: &Child,
    hold: u64,
) -> anyhow::Result<WorkerMemory> {
    let pid = worker.id().context("worker exited")?;
    let idle_mib = rss_mib(pid)?;
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let bench = bench.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (t..hold).step_by(64) {
                    ids.push(
                        bench
                            .client
                            .start_workflow("hold", 1, &())
                            .await?
                            .workflow_id()
                            .to_string(),
                    );
                }
                anyhow::Ok(ids)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in futures::future::join_all(tasks).await {
        ids.extend(t??);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    for id in &ids {
        while bench.client.get_workflow(id).await?.checkpoint_count == 0 {
            if Instant::now() > deadline {
                bail!("workflow {id} made no checkpoint within 120 s");
            }
            poll.tick().await;
        }
    }
    Ok(WorkerMemory {
        sdk: sdk.name(),
        idle_mib,
        running: ids.len() as u64,
        running_mib: rss_mib(pid)?,
    })
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// One line per row, as the run goes.
pub fn print_row(row: &WorkflowRow) {
    let cp = row
        .checkpoint
        .as_ref()
        .map(|c| format!("checkpoint p50 {:.3} p99 {:.3}", c.p50_ms, c.p99_ms))
        .unwrap_or_default();
    println!(
        "{:<6} {} nodes {:<10} p50 {:.3} p99 {:.3} ms, c=1 {:.0} c=64 {:.0} c=256 {:.0} wf/s {cp}",
        row.sdk,
        row.shape.nodes,
        row.workload,
        row.latency.p50_ms,
        row.latency.p99_ms,
        row.throughput[0].1,
        row.throughput[1].1,
        row.throughput[2].1,
    );
}
