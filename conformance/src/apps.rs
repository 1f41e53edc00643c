//! One conformance worker per node of a [`Cluster`], and the client-side
//! checks the cluster scenarios share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use raftoral_client::proto::sidecar::v1::{
    GetWorkflowHistoryRequest, workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{RaftoralClient, WorkflowStatus};

use crate::cluster::Cluster;
use crate::{DEADLINE, Worker, eventually_async, read_effects};

/// Three nodes with a worker of `workflows` (`CONFORMANCE_WORKFLOWS`) on
/// each, and `owner`, a follower where the scenario starts its workflows
/// (so it owns them) and kills them mid-way to watch a replica take over.
/// With `hang_owner` its worker hangs in its steps (`CONFORMANCE_HANG=1`).
pub struct ThreeApps {
    /// The cluster (started with `args`).
    pub cluster: Cluster,
    /// Its workers.
    pub apps: Apps,
    /// The leader when the workers started.
    pub leader: u64,
    /// The follower that owns the workflows started through it.
    pub owner: u64,
    /// The third node.
    pub other: u64,
}

impl ThreeApps {
    /// Starts the cluster and its workers.
    pub async fn start(workflows: &str, hang_owner: bool, args: &[&str]) -> anyhow::Result<Self> {
        let cluster = Cluster::start(3, false, args).await?;
        let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
        let owner = (1..=3).find(|n| *n != leader).expect("a follower");
        let other = (1..=3)
            .find(|n| *n != leader && *n != owner)
            .expect("a third");
        let mut env: Vec<(u64, &str, &str)> = (1..=3)
            .map(|n| (n, "CONFORMANCE_WORKFLOWS", workflows))
            .collect();
        if hang_owner {
            env.push((owner, "CONFORMANCE_HANG", "1"));
        }
        let apps = Apps::start(&cluster, &env).await?;
        Ok(ThreeApps {
            cluster,
            apps,
            leader,
            owner,
            other,
        })
    }
}

/// The worker processes of a cluster, by node id, with their effects files.
pub struct Apps {
    /// Running workers by node id.
    pub workers: BTreeMap<u64, Worker>,
    /// Effects file of each node's worker (kept after the worker is gone).
    pub effects: BTreeMap<u64, PathBuf>,
}

impl Apps {
    /// One worker per node; `env` gives (node, variable, value) settings.
    pub async fn start(cluster: &Cluster, env: &[(u64, &str, &str)]) -> anyhow::Result<Apps> {
        let mut apps = Apps {
            workers: BTreeMap::new(),
            effects: BTreeMap::new(),
        };
        for id in cluster.nodes.keys() {
            apps.spawn(cluster, *id, env).await?;
        }
        Ok(apps)
    }

    /// Starts (or replaces) node `id`'s worker.
    pub async fn spawn(
        &mut self,
        cluster: &Cluster,
        id: u64,
        env: &[(u64, &str, &str)],
    ) -> anyhow::Result<()> {
        let path = cluster.dir.path().join(format!("effects{id}.log"));
        let vars: Vec<(&str, &str)> = env
            .iter()
            .filter(|(n, _, _)| *n == id)
            .map(|(_, k, v)| (*k, *v))
            .collect();
        self.workers.insert(
            id,
            Worker::start(&cluster.nodes[&id].url, &path, &vars).await?,
        );
        self.effects.insert(id, path);
        Ok(())
    }

    /// Every effect line of every worker.
    pub fn effects(&self) -> Vec<(String, String, u64)> {
        self.effects
            .values()
            .flat_map(|p| read_effects(p))
            .collect()
    }
}

/// A client of node `id`.
pub async fn client(cluster: &Cluster, id: u64) -> anyhow::Result<RaftoralClient> {
    Ok(RaftoralClient::connect(&cluster.nodes[&id].url).await?)
}

/// The result of workflow `id` as JSON, waiting for it (twice the
/// harness's deadline at most: a workflow that does not finish fails the
/// test).
pub async fn result_json(
    c: &RaftoralClient,
    id: &str,
) -> Result<serde_json::Value, raftoral_client::ClientError> {
    let handle = c.workflow_handle(id);
    tokio::time::timeout(DEADLINE * 2, handle.result::<serde_json::Value>())
        .await
        .expect("the workflow finishes in time")
}

/// Waits until workflow `id` has `status`.
pub async fn wait_status(
    c: &RaftoralClient,
    id: &str,
    status: WorkflowStatus,
) -> anyhow::Result<()> {
    eventually_async(
        DEADLINE * 2,
        &format!("workflow {id} to be {status:?}"),
        || {
            let (c, id) = (c.clone(), id.to_owned());
            async move { Ok(c.get_workflow(&id).await?.status() == status) }
        },
    )
    .await
}

/// Waits until workflow `id` has at least `n` committed checkpoints.
pub async fn committed_at_least(c: &RaftoralClient, id: &str, n: u64) -> anyhow::Result<()> {
    eventually_async(DEADLINE, &format!("{n} committed steps of {id}"), || {
        let (c, id) = (c.clone(), id.to_owned());
        async move { Ok(c.get_workflow(&id).await?.checkpoint_count >= n) }
    })
    .await
}

/// Every history entry of workflow `id` in commit order, as node `node`
/// reports them: (seq, name, kind, attempt, value).
pub async fn history_entries(
    cluster: &Cluster,
    node: u64,
    id: &str,
) -> anyhow::Result<Vec<(u64, String, i32, u32, Vec<u8>)>> {
    let mut svc = WorkflowServiceClient::connect(cluster.nodes[&node].url.clone()).await?;
    Ok(svc
        .get_workflow_history(GetWorkflowHistoryRequest {
            workflow_id: id.into(),
        })
        .await?
        .into_inner()
        .entries
        .into_iter()
        .map(|e| {
            (
                e.seq,
                e.checkpoint_name,
                e.kind,
                e.attempt,
                e.value.to_vec(),
            )
        })
        .collect())
}

/// Workflow `id`'s history as the node serving `url` reports it, in commit
/// order.
pub async fn history_at(
    url: &str,
    id: &str,
) -> anyhow::Result<Vec<raftoral_client::proto::sidecar::v1::HistoryEntry>> {
    let mut svc = WorkflowServiceClient::connect(url.to_owned()).await?;
    Ok(svc
        .get_workflow_history(GetWorkflowHistoryRequest {
            workflow_id: id.into(),
        })
        .await?
        .into_inner()
        .entries)
}

/// Polls workflow `id`'s history on the node serving `url` until `holds`
/// says yes (`what` names the condition in the timeout's error); returns
/// that history.
pub async fn wait_history(
    url: &str,
    id: &str,
    what: &str,
    holds: impl Fn(&[raftoral_client::proto::sidecar::v1::HistoryEntry]) -> bool,
) -> anyhow::Result<Vec<raftoral_client::proto::sidecar::v1::HistoryEntry>> {
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        interval.tick().await;
        let entries = history_at(url, id).await?;
        if holds(&entries) {
            return Ok(entries);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} in the history of {id}: {entries:?}"
        );
    }
}

/// (name, value) of each committed checkpoint, as one node reports them.
pub async fn history(
    cluster: &Cluster,
    node: u64,
    id: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut svc = WorkflowServiceClient::connect(cluster.nodes[&node].url.clone()).await?;
    let entries = svc
        .get_workflow_history(GetWorkflowHistoryRequest {
            workflow_id: id.into(),
        })
        .await?
        .into_inner()
        .entries;
    for (i, e) in entries.iter().enumerate() {
        anyhow::ensure!(
            e.seq == i as u64,
            "history of {id} on node {node} has a gap"
        );
    }
    Ok(entries
        .into_iter()
        .map(|e| (e.checkpoint_name, e.value.to_vec()))
        .collect())
}

/// Runs `raftoral workflow --addr URL ARGS...` (the CLI as users run it)
/// and returns its output, one JSON value per line.
pub async fn workflow_cli(url: &str, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = tokio::process::Command::new(crate::bin_dir().join("raftoral"))
        .args(["workflow", "--addr", url])
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "raftoral workflow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}
