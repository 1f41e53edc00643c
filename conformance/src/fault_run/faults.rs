//! The faults, one at a time: what they are, how the seeded generator picks
//! them, and how each is done and undone on the real processes.

use std::fmt;
use std::time::Duration;

use anyhow::Context;

use raftoral_client::WorkflowStatus;

use super::checks::list_all;
use super::load::Nodes;
use super::rng::Rng;
use crate::Worker;
use crate::apps::Apps;
use crate::cluster::Cluster;

/// `--owner-timeout-ms` of the run's nodes: short, so failovers happen
/// within the run; node pauses are drawn on both sides of it.
pub const OWNER_TIMEOUT_MS: u64 = 1000;
/// `--app-timeout-ms` of the run's nodes: above the SDK's 2 s heartbeat
/// interval, so a live idle app is never taken for gone; worker pauses are
/// drawn on both sides of it.
pub const APP_TIMEOUT_MS: u64 = 3000;
/// How long a process frozen past its timeout may keep its workflows.
const MOVE_DEADLINE: Duration = crate::DEADLINE;

/// One fault. `node` is the node (and its worker) it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node, leave it down for `down`, restart it on its storage.
    KillNode {
        /// The node.
        node: u64,
        /// How long it stays down.
        down: Duration,
    },
    /// SIGKILL a node's worker and start a new one.
    KillWorker {
        /// The worker's node.
        node: u64,
    },
    /// SIGKILL a node and its worker (a pod lost), restart the node on its
    /// storage and a new worker that connects the moment the node serves.
    KillPod {
        /// The node.
        node: u64,
    },
    /// SIGSTOP a node for `hold`, then SIGCONT.
    StopNode {
        /// The node.
        node: u64,
        /// How long it stays frozen (longer when its workflows are slow to
        /// move, up to a deadline).
        hold: Duration,
    },
    /// SIGSTOP a worker for `hold`, then SIGCONT.
    StopWorker {
        /// The worker's node.
        node: u64,
        /// How long it stays frozen (longer when its workflows are slow to
        /// move, up to a deadline).
        hold: Duration,
    },
    /// SIGTERM a node (it must exit 0), restart it on its storage.
    TermNode {
        /// The node.
        node: u64,
    },
    /// SIGKILL every node, restart them all.
    WholeCluster,
}

impl Fault {
    /// The kind, for the figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillNode { .. } => "node SIGKILL",
            Fault::KillWorker { .. } => "worker SIGKILL",
            Fault::KillPod { .. } => "node+worker SIGKILL",
            Fault::StopNode { hold, .. } if !past(*hold, OWNER_TIMEOUT_MS) => {
                "node SIGSTOP < timeout"
            }
            Fault::StopNode { .. } => "node SIGSTOP > timeout",
            Fault::StopWorker { hold, .. } if !past(*hold, APP_TIMEOUT_MS) => {
                "worker SIGSTOP < timeout"
            }
            Fault::StopWorker { .. } => "worker SIGSTOP > timeout",
            Fault::TermNode { .. } => "node SIGTERM",
            Fault::WholeCluster => "whole-cluster SIGKILL",
        }
    }

    /// One fault drawn from `rng`, on one of `nodes` (the whole-cluster kill
    /// is scheduled apart, once per run).
    pub fn pick(rng: &mut Rng, nodes: &[u64]) -> Fault {
        let node = nodes[rng.range(0, nodes.len() as u64 - 1) as usize];
        // Pauses: half shorter than the timeout (nothing may move), half
        // longer (work must move, then the paused process comes back).
        let hold = |rng: &mut Rng, timeout: u64, longest: u64| {
            Duration::from_millis(if rng.chance(1, 2) {
                rng.range(100, timeout * 7 / 10)
            } else {
                rng.range(timeout * 3 / 2, longest)
            })
        };
        match rng.range(0, 9) {
            0 | 1 => Fault::KillNode {
                node,
                down: Duration::from_millis(rng.range(0, 1500)),
            },
            2 | 3 => Fault::KillWorker { node },
            4 | 5 => Fault::StopNode {
                node,
                hold: hold(rng, OWNER_TIMEOUT_MS, 5000),
            },
            6 | 7 => Fault::StopWorker {
                node,
                hold: hold(rng, APP_TIMEOUT_MS, 7500),
            },
            8 => Fault::TermNode { node },
            _ => Fault::KillPod { node },
        }
    }
}

/// True when `hold` is past `timeout_ms`.
fn past(hold: Duration, timeout_ms: u64) -> bool {
    hold.as_millis() > u128::from(timeout_ms)
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillNode { node, down } => write!(f, "SIGKILL node {node}, down {down:?}"),
            Fault::KillWorker { node } => write!(f, "SIGKILL worker {node}"),
            Fault::KillPod { node } => write!(f, "SIGKILL node {node} and its worker"),
            Fault::StopNode { node, hold } => write!(f, "SIGSTOP node {node} for {hold:?}"),
            Fault::StopWorker { node, hold } => write!(f, "SIGSTOP worker {node} for {hold:?}"),
            Fault::TermNode { node } => write!(f, "SIGTERM node {node}"),
            Fault::WholeCluster => write!(f, "SIGKILL every node"),
        }
    }
}

/// Errors only in the workers' logs: their reconnect warnings would bury
/// the run's own lines.
const QUIET: &str = "error";

/// Starts (or replaces) node `id`'s worker.
pub async fn spawn_worker(apps: &mut Apps, cluster: &Cluster, id: u64) -> anyhow::Result<()> {
    apps.spawn(cluster, id, &[(id, "RUST_LOG", QUIET)]).await
}

/// One worker per node of `cluster`.
pub async fn start_workers(cluster: &Cluster) -> anyhow::Result<Apps> {
    let env: Vec<(u64, &str, &str)> = cluster
        .nodes
        .keys()
        .map(|id| (*id, "RUST_LOG", QUIET))
        .collect();
    Apps::start(cluster, &env).await
}

/// What a fault revealed while it was done, apart from the final checks.
pub type Complaint = String;

/// Does `fault` and undoes it: every process runs again when this returns.
/// Returns complaints about how the processes behaved: a SIGTERM that did
/// not exit 0, a process frozen past its timeout that kept its workflows.
pub async fn apply(
    fault: Fault,
    cluster: &mut Cluster,
    apps: &mut Apps,
    nodes: &Nodes,
) -> anyhow::Result<Vec<Complaint>> {
    let mut complaints = Vec::new();
    match fault {
        Fault::KillNode { node, down } => {
            cluster.kill(node).await?;
            // The fault's length, not a wait for a condition.
            tokio::time::sleep(down).await;
            cluster.restart(node).await?;
        }
        Fault::KillWorker { node } => {
            apps.workers
                .remove(&node)
                .context("worker not running")?
                .kill()
                .await?;
            spawn_worker(apps, cluster, node).await?;
        }
        Fault::KillPod { node } => {
            cluster.kill(node).await?;
            apps.workers
                .remove(&node)
                .context("worker not running")?
                .kill()
                .await?;
            cluster.restart(node).await?;
            spawn_worker(apps, cluster, node).await?;
        }
        Fault::StopNode { node, hold } => {
            let must_move = past(hold, OWNER_TIMEOUT_MS);
            let frozen = Frozen::Node(cluster, node);
            complaints.extend(pause(nodes, node, frozen, hold, must_move).await?);
        }
        Fault::StopWorker { node, hold } => {
            let must_move = past(hold, APP_TIMEOUT_MS);
            let worker = apps.workers.get(&node).context("worker not running")?;
            complaints.extend(pause(nodes, node, Frozen::App(worker), hold, must_move).await?);
        }
        Fault::TermNode { node } => {
            let status = cluster.terminate(node).await?;
            if !status.success() {
                complaints.push(format!(
                    "node {node} exited with {status} after SIGTERM, not 0"
                ));
            }
            cluster.restart(node).await?;
        }
        Fault::WholeCluster => {
            let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
            for id in &ids {
                cluster.kill(*id).await?;
            }
            for id in &ids {
                cluster.restart(*id).await?;
            }
        }
    }
    Ok(complaints)
}

/// The process a pause freezes.
enum Frozen<'a> {
    /// A node of the cluster.
    Node(&'a Cluster, u64),
    /// A worker.
    App(&'a Worker),
}

impl Frozen<'_> {
    async fn signal(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Frozen::Node(cluster, id) => cluster.signal(*id, name).await,
            Frozen::App(worker) => worker.signal(name).await,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Frozen::Node(..) => "node",
            Frozen::App(_) => "app",
        }
    }
}

/// SIGSTOP for `hold`, then SIGCONT. With `must_move` (a pause past the
/// timeout), every running workflow of node `node` (those it had and any
/// placed on it while frozen) must have moved to other nodes before the
/// process is let go: a frozen process is as gone as a dead one.
async fn pause(
    nodes: &Nodes,
    node: u64,
    frozen: Frozen<'_>,
    hold: Duration,
    must_move: bool,
) -> anyhow::Result<Option<Complaint>> {
    frozen.signal("STOP").await?;
    // The fault's length, not a wait for a condition.
    tokio::time::sleep(hold).await;
    let mut complaint = None;
    let what = frozen.what();
    let deadline = tokio::time::Instant::now() + MOVE_DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    if must_move {
        loop {
            tick.tick().await;
            match owned_by(nodes, node).await {
                Some(kept) if kept.is_empty() => break,
                Some(kept) if tokio::time::Instant::now() > deadline => {
                    complaint = Some(format!(
                        "node {node}'s {what} frozen for {:?} still owned {} running workflows (first: {})",
                        hold + MOVE_DEADLINE,
                        kept.len(),
                        kept[0]
                    ));
                    break;
                }
                None if tokio::time::Instant::now() > deadline => {
                    complaint = Some(format!(
                        "no other node answered while node {node}'s {what} was frozen"
                    ));
                    break;
                }
                _ => {}
            }
        }
    }
    frozen.signal("CONT").await?;
    Ok(complaint)
}

/// Running workflows owned by `node`, as another node lists them; None when
/// no other node answered.
async fn owned_by(nodes: &Nodes, node: u64) -> Option<Vec<String>> {
    for via in nodes.ids().into_iter().filter(|n| *n != node) {
        let Ok(all) = list_all(nodes, via).await else {
            continue;
        };
        return Some(
            all.into_iter()
                .filter(|w| w.status() == WorkflowStatus::Running && w.owner_node_id == node)
                .map(|w| w.workflow_id)
                .collect(),
        );
    }
    None
}
