//! Embedded mode: engine and SDK in one process, nodes talking gRPC to each
//! other over loopback. The same checkpoint core as the sidecar, so the same
//! scenarios hold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftoral::NodeConfig;
use raftoral_client::{
    ClientError, RaftoralClient, StreamOptions, WorkflowError, WorkflowRequest, WorkflowStatus,
    checkpoint, checkpoint_compute,
};
use raftoral_embedded::{EmbeddedLink, EmbeddedNode};
use tokio::sync::Notify;

#[path = "../../engine/tests/common/mod.rs"]
mod common;
use common::until;

const DEADLINE: Duration = Duration::from_secs(30);

/// Side effects: (workflow id, step) → times computed.
type Effects = Arc<Mutex<BTreeMap<(String, u64), usize>>>;

/// Registers `steps` on `client` and runs it: `n` steps, each computed with
/// a counted side effect; `gate` (if set) blocks step `gate.0` until notified.
fn run_steps(
    client: &RaftoralClient,
    effects: Effects,
    gate: Option<(u64, Arc<Notify>)>,
) -> tokio::task::JoinHandle<Result<(), ClientError>> {
    let client = client.clone();
    tokio::spawn(async move {
        client.register_workflow("steps", 1).await?;
        client
            .handle_workflows(move |req: WorkflowRequest| {
                let (effects, gate) = (effects.clone(), gate.clone());
                async move {
                    let n: u64 = req.input()?;
                    let ctx = req.context;
                    let mut sum = 0u64;
                    for i in 0..n {
                        let (effects, gate, id) =
                            (effects.clone(), gate.clone(), ctx.workflow_id().to_owned());
                        let v: u64 = checkpoint_compute!(ctx, &format!("step-{i}"), async move {
                            if let Some((at, notify)) = gate
                                && at == i
                            {
                                notify.notified().await;
                            }
                            *effects.lock().unwrap().entry((id, i)).or_default() += 1;
                            // Simulated work of the step (not a wait for a condition): it gives
                            // the test time to act between commits.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            i * 2
                        });
                        sum += v;
                    }
                    let done: u64 = checkpoint!(ctx, "sum", sum);
                    Ok::<_, WorkflowError>(serde_json::to_vec(&done)?)
                }
            })
            .await
    })
}

/// Waits until every node has applied every node's registration of `name`.
async fn registered_everywhere(nodes: &BTreeMap<u64, EmbeddedNode>, name: &str) {
    let ids: Vec<u64> = nodes.keys().copied().collect();
    for node in nodes.values() {
        let n = node.node().clone();
        until("registrations to replicate", || {
            ids.iter()
                .all(|id| n.read(|sm| sm.is_registered(*id, name, 1)))
        })
        .await;
    }
}

/// How many times step `step` of `id` was computed.
fn count(effects: &Effects, id: &str, step: u64) -> usize {
    effects
        .lock()
        .unwrap()
        .get(&(id.to_owned(), step))
        .copied()
        .unwrap_or(0)
}

fn expected(n: u64) -> u64 {
    (0..n).map(|i| i * 2).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_single_node_runs_and_replays_after_an_app_restart() -> anyhow::Result<()> {
    let node = EmbeddedNode::start(NodeConfig::default(), None).await?;
    let effects: Effects = Default::default();
    let gate = Arc::new(Notify::new());
    // The first app is stuck inside step 4 when it shuts down; a short grace
    // period drops it instead of waiting.
    let options = StreamOptions {
        shutdown_grace: Duration::from_millis(100),
        ..StreamOptions::default()
    };
    let first = RaftoralClient::with_link(
        "first app",
        Arc::new(EmbeddedLink::new(node.node().clone())),
        options,
    );
    let worker = run_steps(&first, effects.clone(), Some((4, gate.clone())));
    let handle = first.start_workflow("steps", 1, &8u64).await?;
    let id = handle.workflow_id().to_owned();
    // Wait until steps 0..3 are committed and step 4 is blocked.
    until("steps 0..3 to commit", || {
        node.node().workflow(&id).map_or(0, |w| w.checkpoints.len()) >= 4
    })
    .await;
    // The app goes away mid-step (graceful shutdown: nothing is reported).
    first.shutdown().await;
    worker.await??;
    assert_eq!(
        node.node().workflow(&id).unwrap().status,
        WorkflowStatus::Running
    );

    // A new app on the same node replays: steps 0..3 are not computed again.
    let second = RaftoralClient::with_link(
        "second app",
        Arc::new(EmbeddedLink::new(node.node().clone())),
        StreamOptions::default(),
    );
    let _worker2 = run_steps(&second, effects.clone(), None);
    let sum: u64 = tokio::time::timeout(
        DEADLINE,
        second
            .start_workflow_with_id(&id, "steps", 1, &8u64)
            .await?
            .result(),
    )
    .await??;
    assert_eq!(sum, expected(8));
    for i in 0..8 {
        assert_eq!(count(&effects, &id, i), 1, "step {i}");
    }
    second.shutdown().await;
    node.shutdown().await;
    Ok(())
}

async fn embedded_cluster(n: u64) -> anyhow::Result<BTreeMap<u64, EmbeddedNode>> {
    embedded_cluster_with(n, |_| {}).await
}

/// `n` nodes (fast ticks, 800 ms owner and app timeouts), then `tweak`.
async fn embedded_cluster_with(
    n: u64,
    tweak: impl Fn(&mut NodeConfig),
) -> anyhow::Result<BTreeMap<u64, EmbeddedNode>> {
    let (listeners, peers) = common::bound_peers(n).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let mut config = NodeConfig {
            node_id: id,
            tick_interval: Duration::from_millis(20),
            peers: peers.clone(),
            owner_timeout: Duration::from_millis(800),
            app_timeout: Duration::from_millis(800),
            ..NodeConfig::default()
        };
        tweak(&mut config);
        nodes.insert(id, EmbeddedNode::start_on(config, Some(listener)).await?);
    }
    let first = nodes.values().next().unwrap().node().clone();
    assert!(
        first.wait_status(DEADLINE, |s| s.leader_id != 0).await,
        "no leader"
    );
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_fails_over_when_the_owner_node_stops() -> anyhow::Result<()> {
    let mut nodes = embedded_cluster(3).await?;
    let effects: Effects = Default::default();
    let mut workers = Vec::new();
    for node in nodes.values() {
        workers.push(run_steps(&node.client(), effects.clone(), None));
    }
    // Everyone registered before the start, so every node replicates it.
    for node in nodes.values() {
        let n = node.node().clone();
        until("registrations to replicate", || {
            (1..=3).all(|id| n.read(|sm| sm.is_registered(id, "steps", 1) && sm.is_present(id)))
        })
        .await;
    }
    let leader = nodes[&1].node().raft_status().leader_id;
    let owner = (1..=3).find(|id| *id != leader).unwrap();
    let watcher = (1..=3).find(|id| *id != owner).unwrap();
    let steps = 60u64;
    let handle = nodes[&owner]
        .client()
        .start_workflow("steps", 1, &steps)
        .await?;
    let id = handle.workflow_id().to_owned();
    let w = nodes[&watcher].node().clone();
    until("a few steps", || {
        w.workflow(&id).map_or(0, |wf| wf.checkpoints.len()) >= 5
    })
    .await;
    nodes.remove(&owner).unwrap().shutdown().await;
    let done = w.wait_workflow(&id, DEADLINE * 2).await?;
    assert_eq!(done.status, WorkflowStatus::Completed);
    assert_ne!(done.owner, owner);
    assert_eq!(
        serde_json::from_slice::<u64>(&done.result)?,
        expected(steps)
    );
    assert_eq!(done.checkpoints.len() as u64, steps + 1);
    let reruns: usize = (0..steps).map(|i| count(&effects, &id, i) - 1).sum();
    assert!(
        reruns <= 1,
        "only the step in flight may run twice, {reruns} did"
    );
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_cancellation_reaches_every_replica() -> anyhow::Result<()> {
    let nodes = embedded_cluster(3).await?;
    let effects: Effects = Default::default();
    let mut workers = Vec::new();
    for node in nodes.values() {
        workers.push(run_steps(&node.client(), effects.clone(), None));
    }
    let c1 = nodes[&1].client();
    // Registration of all three apps is replicated before the start.
    let n1 = nodes[&1].node().clone();
    until("registrations to replicate", || {
        (1..=3).all(|id| n1.read(|sm| sm.is_registered(id, "steps", 1)))
    })
    .await;
    let handle = c1.start_workflow("steps", 1, &100_000u64).await?;
    let id = handle.workflow_id().to_owned();
    until("a few steps", || {
        n1.workflow(&id).map_or(0, |w| w.checkpoints.len()) >= 3
    })
    .await;
    nodes[&2].client().cancel_workflow(&id, "enough").await?;
    match tokio::time::timeout(DEADLINE, handle.result::<u64>()).await? {
        Err(ClientError::Cancelled { reason, .. }) => assert_eq!(reason, "enough"),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    // Every app's function saw the cancellation, so every worker is idle again.
    for node in nodes.values() {
        let core = node.client().core();
        until("every replica to drop the cancelled workflow", || {
            core.running() == 0
        })
        .await;
    }
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

/// The owner's app blocks after the workflow's last checkpoint, so only the
/// replicas report a result (kept for comparison); then the owner node stops.
/// The node that takes over must commit its replica's result: the apps have
/// forgotten the finished run and will not send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_finished_first_commits_its_result_when_it_becomes_owner()
-> anyhow::Result<()> {
    let mut nodes = embedded_cluster(3).await?;
    let leader = nodes[&1].node().raft_status().leader_id;
    let owner = (1..=3).find(|id| *id != leader).unwrap();
    let finished_replicas = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (id, node) in &nodes {
        let (client, stuck) = (node.client(), *id == owner);
        let finished = finished_replicas.clone();
        workers.push(tokio::spawn(async move {
            client.register_workflow("two_steps", 1).await?;
            client
                .handle_workflows(move |req: WorkflowRequest| {
                    let finished = finished.clone();
                    async move {
                        let ctx = req.context;
                        let a: u64 = checkpoint!(ctx, "a", 20);
                        let b: u64 = checkpoint!(ctx, "b", 22);
                        if stuck {
                            // The owner's app hangs before reporting.
                            std::future::pending::<()>().await;
                        }
                        finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, WorkflowError>(serde_json::to_vec(&(a + b))?)
                    }
                })
                .await
        }));
    }
    registered_everywhere(&nodes, "two_steps").await;
    let handle = nodes[&owner]
        .client()
        .start_workflow("two_steps", 1, &())
        .await?;
    let id = handle.workflow_id().to_owned();
    let watcher = nodes[&leader].node().clone();
    until("the start to apply on the watcher", || {
        watcher.workflow(&id).is_some()
    })
    .await;
    assert_eq!(watcher.workflow(&id).unwrap().owner, owner);
    // Both replicas ran to the end and reported; the owner did not.
    until("both replicas to finish", || {
        finished_replicas.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(
        watcher.workflow(&id).unwrap().status,
        WorkflowStatus::Running
    );
    nodes.remove(&owner).unwrap().shutdown().await;
    let done = watcher.wait_workflow(&id, DEADLINE).await?;
    assert_eq!(done.status, WorkflowStatus::Completed);
    assert_ne!(done.owner, owner);
    assert_eq!(serde_json::from_slice::<u64>(&done.result)?, 42);
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

/// The owner's node is cut off from the cluster when its app reports the
/// result: the attempt to commit it fails (no leader within the proposal
/// timeout). The session keeps trying, so once the partition heals the
/// workflow completes; the app has forgotten the run and would never send the
/// result again. Failover is set far away so only the retry can finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_could_not_be_committed_is_retried_after_a_partition() -> anyhow::Result<()> {
    let nodes = embedded_cluster_with(3, |c| {
        c.owner_timeout = Duration::from_secs(600);
        c.app_timeout = Duration::from_secs(600);
        c.proposal_timeout = Duration::from_millis(300);
    })
    .await?;
    let leader = nodes[&1].node().raft_status().leader_id;
    let owner = (1..=3).find(|id| *id != leader).unwrap();
    // Opens once for every app, whenever each reaches it.
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for node in nodes.values() {
        let (client, gate) = (node.client(), gate.clone());
        workers.push(tokio::spawn(async move {
            client.register_workflow("gated", 1).await?;
            client
                .handle_workflows(move |req: WorkflowRequest| {
                    let mut gate = gate.clone();
                    async move {
                        let ctx = req.context;
                        let a: u64 = checkpoint!(ctx, "a", 41);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok::<_, WorkflowError>(serde_json::to_vec(&(a + 1))?)
                    }
                })
                .await
        }));
    }
    registered_everywhere(&nodes, "gated").await;
    let owner_node = nodes[&owner].node().clone();
    let handle = nodes[&owner]
        .client()
        .start_workflow("gated", 1, &())
        .await?;
    let id = handle.workflow_id().to_owned();
    until("checkpoint a to commit on the owner", || {
        owner_node
            .workflow(&id)
            .is_some_and(|w| w.checkpoints.len() == 1)
    })
    .await;
    // Cut the owner off, both directions.
    let others: Vec<u64> = (1..=3).filter(|id| *id != owner).collect();
    owner_node.transport().faults().block(others);
    open_gate.send_replace(true);
    let owner_core = nodes[&owner].client().core();
    until("the owner's app to report and forget the run", || {
        owner_core.running() == 0
    })
    .await;
    until("an attempt to commit the result to fail", || {
        owner_node.result_retries() > 0
    })
    .await;
    assert_eq!(
        owner_node.workflow(&id).unwrap().status,
        WorkflowStatus::Running,
        "nothing can commit on a node cut off from its cluster"
    );
    owner_node.transport().faults().block([]);
    let done = nodes[&leader].node().wait_workflow(&id, DEADLINE).await?;
    assert_eq!(done.status, WorkflowStatus::Completed);
    assert_eq!(done.owner, owner, "no failover: the retry finished it");
    assert_eq!(serde_json::from_slice::<u64>(&done.result)?, 42);
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

/// A replica that falls behind the compacted log catches up by snapshot. The
/// events of the entries the snapshot covers never happen on it, so its
/// session must bring the app back in line: the replica's run gets the
/// checkpoints it missed and ends in step, and a waiter wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_caught_up_by_snapshot_finishes_in_step() -> anyhow::Result<()> {
    let nodes = embedded_cluster_with(3, |c| {
        c.owner_timeout = Duration::from_secs(600);
        c.app_timeout = Duration::from_secs(600);
        c.snapshot_entries = 20;
        c.snapshot_keep_entries = 5;
        // The replica must be compacted past, however healthy it looks.
        c.snapshot_max_retained_entries = 5;
    })
    .await?;
    let leader = nodes[&1].node().raft_status().leader_id;
    let replica = (1..=3).find(|id| *id != leader).unwrap();
    let effects: Effects = Arc::default();
    let workers: Vec<_> = nodes
        .values()
        .map(|node| run_steps(&node.client(), effects.clone(), None))
        .collect();
    registered_everywhere(&nodes, "steps").await;
    let n = 100u64;
    let handle = nodes[&leader]
        .client()
        .start_workflow("steps", 1, &n)
        .await?;
    let id = handle.workflow_id().to_owned();
    let lagging = nodes[&replica].node().clone();
    until("the replica to apply a few steps", || {
        lagging
            .workflow(&id)
            .is_some_and(|w| w.checkpoints.len() >= 3)
    })
    .await;
    let others: Vec<u64> = (1..=3).filter(|n| *n != replica).collect();
    lagging.transport().faults().block(others);
    let waiter = {
        let (lagging, id) = (lagging.clone(), id.clone());
        tokio::spawn(async move { lagging.wait_workflow(&id, DEADLINE).await })
    };
    let sum: u64 = tokio::time::timeout(DEADLINE, handle.result()).await??;
    assert_eq!(sum, expected(n));
    let head = nodes[&leader].node().clone();
    until("the leader to compact past the replica", || {
        head.raft_status().first_index > lagging.raft_status().applied_index + 1
    })
    .await;
    lagging.transport().faults().block([]);
    let done = waiter.await??;
    assert_eq!(done.status, WorkflowStatus::Completed);
    let replica_core = nodes[&replica].client().core();
    until("the replica's run to end in step", || {
        replica_core.running() == 0
    })
    .await;
    assert_eq!(lagging.nondeterminism_reports(), 0);
    for step in 0..n {
        assert_eq!(count(&effects, &id, step), 1, "step {step} computed once");
    }
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    for worker in workers {
        worker.abort();
    }
    Ok(())
}
