//! Harness for the end-to-end scenarios: real `raftoral serve` processes and
//! real worker processes on loopback, ports chosen at run time.
//!
//! Binaries are looked up next to the test executable (`target/debug`), so
//! build the workspace first (`make test` does); `RAFTORAL_BIN_DIR` overrides
//! the directory.

pub mod apps;
pub mod certs;
pub mod cluster;
pub mod fault_run;
pub mod http;
pub mod kubernetes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Input of the `steps` workflow of the conformance workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepsInput {
    /// Number of checkpoints.
    pub n: u64,
    /// Fail (return an error) right after this step.
    #[serde(default)]
    pub fail_at: Option<u64>,
    /// With `CONFORMANCE_HANG=1`, hang inside this step's computation.
    #[serde(default)]
    pub hang_at: Option<u64>,
    /// Work time of each step's computation, in milliseconds.
    #[serde(default)]
    pub step_delay_ms: u64,
}

/// Input of the `flaky` workflow: one step `flaky` whose attempts fail
/// while their number is at most `fail_times`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlakyInput {
    /// Attempts that fail (`Flaky`, "attempt N failed").
    pub fail_times: u32,
    /// The policy's maximum attempts.
    pub max_attempts: u32,
    /// The policy's initial interval, in milliseconds.
    pub initial_ms: u64,
    /// The policy's backoff coefficient.
    pub coefficient: f64,
    /// The failures are non-retryable.
    #[serde(default)]
    pub non_retryable: bool,
    /// Catch the step's failure and return it instead of failing.
    #[serde(default)]
    pub catch: bool,
    /// The policy's attempt timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attempts that hang (until the attempt timeout stops them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hang_times: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the `saga` workflow returns: the caught failure of its charge
/// (WORKERS.md), whichever language raised or replayed it.
pub fn saga_result() -> serde_json::Value {
    serde_json::json!({
        "caught": {
            "type": "CardDeclined",
            "message": "card declined",
            "details": {"code": "insufficient_funds", "amount": 42},
            "attempts": 1,
        },
        "refunded": true,
    })
}

/// Input of the `fanout` workflow: `n` branches side by side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutInput {
    /// Branches.
    pub n: u64,
    /// Work time of branch i's first step, in milliseconds (0 past the end).
    #[serde(default)]
    pub delays_ms: Vec<u64>,
    /// Each branch takes a second step after its first.
    #[serde(default)]
    pub chain: bool,
}

impl FanoutInput {
    /// The sum `fanout` returns for this input.
    pub fn sum(&self) -> u64 {
        (0..self.n).map(|i| i * i + u64::from(self.chain)).sum()
    }
}

impl StepsInput {
    /// A `steps` input of `n` checkpoints, each taking `step_delay_ms` of work.
    pub fn slow(n: u64, step_delay_ms: u64) -> Self {
        StepsInput {
            n,
            step_delay_ms,
            ..Default::default()
        }
    }
}

/// Input of the `blob` workflow: `n` checkpoints, each a string of `size`
/// bytes; its result is the total length. With `CONFORMANCE_HANG=1` the
/// worker hangs after the last checkpoint instead of returning (an app that
/// dies with a large history committed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobInput {
    /// Number of checkpoints.
    pub n: u64,
    /// Bytes per checkpoint value.
    pub size: usize,
}

/// The result of a `steps` workflow of `n` checkpoints (step i yields 2i).
pub fn steps_sum(n: u64) -> u64 {
    (0..n).map(|i| i * 2).sum()
}

/// How long a harness step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Directory holding the workspace binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RAFTORAL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`, which `make test` runs)",
        path.display()
    );
    path
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    loop {
        interval.tick().await;
        if check() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

/// Polls the async `check` until it returns true or `timeout` passes.
pub async fn eventually_async<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    loop {
        interval.tick().await;
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

/// A running `raftoral serve` process.
pub struct Sidecar {
    child: Child,
    /// `http://127.0.0.1:PORT` of the app API.
    pub url: String,
    /// Working directory with `sidecar.log`.
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts a single-node sidecar with `extra` flags and waits until it
    /// serves.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Sidecar> {
        Self::start_in(tempfile::tempdir()?, "127.0.0.1:0", extra).await
    }

    /// Starts a single-node sidecar whose app API listens on `sidecar_listen`.
    pub async fn start_on(sidecar_listen: &str, extra: &[&str]) -> anyhow::Result<Sidecar> {
        Self::start_in(tempfile::tempdir()?, sidecar_listen, extra).await
    }

    /// Stops this sidecar with SIGKILL and starts a new one on the same app
    /// API address, in the same directory.
    pub async fn restart(mut self, extra: &[&str]) -> anyhow::Result<Sidecar> {
        self.child.kill().await?;
        let addr = self.url.trim_start_matches("http://").to_owned();
        std::fs::remove_file(self.dir.path().join("addr.json"))?;
        Self::start_in(self.dir, &addr, extra).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        sidecar_listen: &str,
        extra: &[&str],
    ) -> anyhow::Result<Sidecar> {
        let addr_file = dir.path().join("addr.json");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("sidecar.log"))?;
        let mut child = Command::new(binary("raftoral"))
            .arg("serve")
            .args([
                "--sidecar-listen",
                sidecar_listen,
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--addr-file")
            .arg(&addr_file)
            .args(extra)
            .env("RUST_LOG", "info,raftoral=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn raftoral serve")?;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        let addrs = loop {
            interval.tick().await;
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                break serde_json::from_str::<HashMap<String, String>>(&text)?;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "raftoral serve exited with {status} before serving:\n{}",
                    std::fs::read_to_string(dir.path().join("sidecar.log")).unwrap_or_default()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("raftoral serve did not write its address file within {DEADLINE:?}");
            }
        };
        Ok(Sidecar {
            child,
            url: format!("http://{}", addrs["sidecar"]),
            dir,
        })
    }

    /// The sidecar's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child).await
    }
}

/// The worker to run: `CONFORMANCE_WORKER` (a command line split on
/// whitespace, e.g. `python3 sdk-python/conformance/worker.py`) runs another
/// SDK's worker through the same scenarios; unset, the Rust one.
fn worker_command(line: Option<&str>) -> anyhow::Result<Command> {
    let from_env = std::env::var("CONFORMANCE_WORKER").ok();
    match line.or(from_env.as_deref()) {
        Some(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut command = Command::new(words.next().context("empty CONFORMANCE_WORKER")?);
            command.args(words);
            Ok(command)
        }
        _ => Ok(Command::new(binary("conformance-worker-rust"))),
    }
}

/// A running conformance worker process.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Runs the conformance worker with `env`, expecting it to stop by
    /// itself before it is ready (bad settings); returns whether it printed
    /// `worker ready`, its exit status and its stderr.
    pub async fn start_expecting_failure(
        sidecar_url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<(bool, std::process::ExitStatus, String)> {
        let child = worker_command(None)?
            .env("RAFTORAL_SIDECAR_URL", sidecar_url)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn the conformance worker")?;
        let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .context("the worker did not stop by itself")??;
        let ready = String::from_utf8_lossy(&out.stdout).contains("worker ready");
        Ok((
            ready,
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Starts the conformance worker against `sidecar_url`; it records
    /// side effects in `effects`. Waits until it has registered.
    pub async fn start(
        sidecar_url: &str,
        effects: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Worker> {
        Self::start_as(None, sidecar_url, effects, env).await
    }

    /// Like [`Worker::start`], with the worker's command line given
    /// (`None`: `CONFORMANCE_WORKER`, else the Rust worker): scenarios that
    /// mix languages in one cluster.
    pub async fn start_as(
        command: Option<&str>,
        sidecar_url: &str,
        effects: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Worker> {
        let mut child = worker_command(command)?
            .env("RAFTORAL_SIDECAR_URL", sidecar_url)
            .env("CONFORMANCE_EFFECTS", effects)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn the conformance worker")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "worker ready" {
                    return Ok(());
                }
            }
            bail!("the worker exited before it was ready")
        })
        .await
        .context("worker did not become ready in time")?;
        ready?;
        Ok(Worker { child })
    }

    /// Sends a signal by name (`STOP` freezes the app with its stream
    /// open, `CONT` resumes it).
    pub async fn signal(&self, name: &str) -> anyhow::Result<()> {
        signal(&self.child, name).await
    }

    /// SIGKILL: the app dies without any goodbye.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child).await
    }
}

/// Sends `signal` (a name for `kill -s`, e.g. `STOP`, `CONT`) to a child.
pub(crate) async fn signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    let pid = child.id().context("process already reaped")?;
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill -s {signal} {pid} failed");
    }
    Ok(())
}

pub(crate) async fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    let pid = child.id().context("process already reaped")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    Ok(tokio::time::timeout(DEADLINE, child.wait())
        .await
        .context("process did not exit after SIGTERM")??)
}

/// One line of an effects file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// Workflow id.
    pub workflow_id: String,
    /// What happened (`start`, `done`, `cancelled`).
    pub what: String,
    /// Step number.
    pub step: u64,
    /// When, in milliseconds since the Unix epoch (worker's clock); None
    /// for a line written without a time.
    pub at_ms: Option<u64>,
}

/// Every line of an effects file, with its time.
pub fn read_effects_timed(path: &Path) -> Vec<Effect> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some(Effect {
                workflow_id: parts.next()?.to_owned(),
                what: parts.next()?.to_owned(),
                step: parts.next()?.parse().ok()?,
                at_ms: parts.next().and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// The lines of an effects file: (workflow id, what, step).
pub fn read_effects(path: &Path) -> Vec<(String, String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// How many times `what` happened for `step` of `workflow_id`.
pub fn count_effect(
    effects: &[(String, String, u64)],
    workflow_id: &str,
    what: &str,
    step: u64,
) -> usize {
    effects
        .iter()
        .filter(|(id, w, s)| id == workflow_id && w == what && *s == step)
        .count()
}
