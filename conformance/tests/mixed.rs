//! Languages side by side: one cluster (a node per worker, at least three)
//! whose nodes run workers of different SDKs, all registering the same
//! workflow types, so a workflow one language started is taken over by
//! another (a replica that followed the commits), and then replayed by new
//! apps from a history that other languages wrote.
//!
//! `CONFORMANCE_MIXED` gives the workers of nodes 1, 2, 3... as command lines
//! separated by `;` (the matrix runner sets it to its workers); unset, every
//! node runs `CONFORMANCE_WORKER` or the Rust worker.

use std::collections::BTreeMap;

use raftoral_client::WorkflowStatus;
use raftoral_conformance::apps::{client, committed_at_least, history, wait_status};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{
    DEADLINE, StepsInput, Worker, count_effect, eventually_async, read_effects, steps_sum,
};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// The worker command of each node (`None`: the default worker): one node
/// per given worker, at least three.
fn commands() -> BTreeMap<u64, Option<String>> {
    let line = std::env::var("CONFORMANCE_MIXED").unwrap_or_default();
    let given: Vec<&str> = line
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    (1..=given.len().max(3) as u64)
        .map(|node| {
            let command = (!given.is_empty()).then(|| given[(node as usize - 1) % given.len()]);
            (node, command.map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn every_language_takes_over_from_another_with_identical_histories() -> anyhow::Result<()> {
    let commands = commands();
    let size = commands.len() as u64;
    let all: Vec<u64> = (1..=size).collect();
    let cluster = Cluster::start(size, false, FAST).await?;
    cluster.wait_agreement(&all, &all).await?;
    let mut workers = BTreeMap::new();
    let effects: BTreeMap<u64, _> = (1..=size)
        .map(|node| (node, cluster.dir.path().join(format!("effects{node}.log"))))
        .collect();
    for (node, command) in &commands {
        let url = &cluster.nodes[node].url;
        let worker = Worker::start_as(command.as_deref(), url, &effects[node], &[]).await?;
        workers.insert(*node, worker);
    }
    let c = client(&cluster, 1).await?;
    let n = 80;
    let h = c
        .start_workflow("steps", 1, &StepsInput::slow(n, 20))
        .await?;
    let id = h.workflow_id().to_owned();
    // Node 1's language runs it first; kill the owner's app twice, so the
    // other two languages each take over from the history another wrote.
    let mut owners = vec![c.get_workflow(&id).await?.owner_node_id];
    assert_eq!(owners[0], 1, "the starting node runs it when it can");
    for round in 1..=2u64 {
        committed_at_least(&c, &id, 10 * round).await?;
        let owner = *owners.last().expect("an owner");
        workers
            .remove(&owner)
            .expect("the owner's app")
            .kill()
            .await?;
        eventually_async(DEADLINE * 2, "the workflow to move", || {
            let (c, id, owners) = (c.clone(), id.clone(), owners.clone());
            async move {
                let info = c.get_workflow(&id).await?;
                Ok(!owners.contains(&info.owner_node_id)
                    || info.status() == WorkflowStatus::Completed)
            }
        })
        .await?;
        owners.push(c.get_workflow(&id).await?.owner_node_id);
    }
    // Then every app dies and each node gets the next node's language: the
    // new apps replay a history that other languages wrote.
    committed_at_least(&c, &id, 35).await?;
    for (_, worker) in std::mem::take(&mut workers) {
        worker.kill().await?;
    }
    for node in 1..=size {
        let command = commands[&(node % size + 1)].as_deref();
        let url = &cluster.nodes[&node].url;
        let worker = Worker::start_as(command, url, &effects[&node], &[]).await?;
        workers.insert(node, worker);
    }
    wait_status(&c, &id, WorkflowStatus::Completed).await?;
    let info = c.get_workflow(&id).await?;
    assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(n));
    assert_eq!(owners.len(), 3);
    assert_eq!(
        owners
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "three different nodes owned it in turn: {owners:?}"
    );
    // Every node holds the same history, written by three languages.
    let reference = history(&cluster, 1, &id).await?;
    assert_eq!(reference.len(), n as usize);
    for (seq, (name, value)) in reference.iter().enumerate() {
        assert_eq!(name, &format!("step-{seq}"));
        assert_eq!(value, (seq * 2).to_string().as_bytes());
    }
    for node in 2..=size {
        assert_eq!(history(&cluster, node, &id).await?, reference);
    }
    // Committed steps never ran again: at most the step in flight at each
    // of the three kills ran twice.
    let all: Vec<_> = effects.values().flat_map(|p| read_effects(p)).collect();
    let mut rerun = 0;
    for step in 0..n {
        let done = count_effect(&all, &id, "done", step);
        assert!((1..=2).contains(&done), "step {step} ran {done} times");
        rerun += done - 1;
    }
    assert!(rerun <= 3, "{rerun} steps ran twice");
    Ok(())
}
