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
use raftoral_conformance::apps::{
    client, committed_at_least, history, history_entries, wait_status,
};
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

/// Failed steps, caught failures and steps side by side written by one
/// language and replayed by another: every app is killed while the
/// workflows wait in their last step, and each node restarts with the next
/// node's language.
#[tokio::test]
async fn failures_and_parallel_steps_replay_in_every_language() -> anyhow::Result<()> {
    use raftoral_conformance::{FanoutInput, FlakyInput};
    let commands = commands();
    let size = commands.len() as u64;
    let all: Vec<u64> = (1..=size).collect();
    let cluster = Cluster::start(size, false, FAST).await?;
    cluster.wait_agreement(&all, &all).await?;
    let effects: BTreeMap<u64, _> = (1..=size)
        .map(|node| (node, cluster.dir.path().join(format!("effects{node}.log"))))
        .collect();
    let types = (
        "CONFORMANCE_WORKFLOWS",
        "saga,flaky,fanout,helpers,sleeper,racer",
    );
    let mut workers = BTreeMap::new();
    for (node, command) in &commands {
        let url = &cluster.nodes[node].url;
        // Node 1's language writes the histories and hangs in the last steps.
        let env: &[(&str, &str)] = if *node == 1 {
            &[types, ("CONFORMANCE_HANG", "1")]
        } else {
            &[types]
        };
        let worker = Worker::start_as(command.as_deref(), url, &effects[node], env).await?;
        workers.insert(*node, worker);
    }
    let c = client(&cluster, 1).await?;
    let saga = c.start_workflow("saga", 1, &serde_json::json!({})).await?;
    let fanout_input = FanoutInput {
        n: 5,
        delays_ms: vec![250, 200, 150, 100, 50],
        chain: true,
    };
    let fanout = c.start_workflow("fanout", 1, &fanout_input).await?;
    let flaky_input = FlakyInput {
        fail_times: 1,
        max_attempts: 1,
        initial_ms: 0,
        coefficient: 1.0,
        catch: true,
        ..FlakyInput::default()
    };
    let flaky = c.start_workflow("flaky", 1, &flaky_input).await?;
    let helpers = c
        .start_workflow("helpers", 1, &serde_json::json!({}))
        .await?;
    let sleeper = c
        .start_workflow("sleeper", 1, &serde_json::json!({"sleeps": [100, 100]}))
        .await?;
    // The step wins the race: the timer is cancelled in the history.
    let racer = c
        .start_workflow(
            "racer",
            1,
            &serde_json::json!({"timer_ms": 600_000, "step_ms": 10}),
        )
        .await?;
    let ids = [
        saga.workflow_id().to_owned(),
        fanout.workflow_id().to_owned(),
        flaky.workflow_id().to_owned(),
        helpers.workflow_id().to_owned(),
        sleeper.workflow_id().to_owned(),
        racer.workflow_id().to_owned(),
    ];
    // saga and fanout wait in their last step (hung on node 1); flaky is
    // done, its failure caught.
    eventually_async(DEADLINE, "the workflows to reach their last step", || {
        let (effects, ids, n) = (effects[&1].clone(), ids.clone(), fanout_input.n);
        let c = c.clone();
        async move {
            let lines = read_effects(&effects);
            let flaky_done = c.get_workflow(&ids[2]).await?.status() == WorkflowStatus::Completed;
            Ok(count_effect(&lines, &ids[0], "start", 2) == 1
                && count_effect(&lines, &ids[1], "start", n) == 1
                && count_effect(&lines, &ids[3], "start", 1) == 1
                && count_effect(&lines, &ids[4], "start", 1) == 1
                && count_effect(&lines, &ids[5], "start", 1) == 1
                && flaky_done)
        }
    })
    .await?;
    for (_, worker) in std::mem::take(&mut workers) {
        worker.kill().await?;
    }
    for node in 1..=size {
        let command = commands[&(node % size + 1)].as_deref();
        let url = &cluster.nodes[&node].url;
        let worker = Worker::start_as(command, url, &effects[&node], &[types]).await?;
        workers.insert(node, worker);
    }
    for id in &ids {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
    }
    let result = |id: &str| {
        let c = c.clone();
        let id = id.to_owned();
        async move {
            let info = c.get_workflow(&id).await?;
            anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&info.result)?)
        }
    };
    assert_eq!(
        result(&ids[0]).await?,
        raftoral_conformance::saga_result(),
        "the failure another language wrote was raised with its type and details"
    );
    assert_eq!(
        result(&ids[1]).await?,
        serde_json::json!({"sum": fanout_input.sum()})
    );
    assert_eq!(
        result(&ids[2]).await?,
        serde_json::json!({"caught": {"type": "Flaky", "message": "attempt 1 failed", "attempts": 1}})
    );
    // Another language replayed the draws and the time node 1's recorded.
    let drawn = result(&ids[3]).await?;
    assert_eq!(drawn["recorded"], drawn["replayed"]);
    // And the timers it started and fired, and the race it decided.
    assert_eq!(result(&ids[4]).await?, serde_json::json!({"slept": 2}));
    assert_eq!(
        result(&ids[5]).await?,
        serde_json::json!({"winner": "step", "value": "worked"})
    );
    // Every replica's result is the owner's: the same JSON value, whatever
    // order its language writes object keys in (compared as bytes, the
    // saga's and helpers' results differed between Rust and Python).
    for node in 1..=size {
        assert_eq!(
            cluster.status(node).await?.nondeterminism_reports,
            0,
            "non-determinism reported on node {node}"
        );
    }
    // The same histories everywhere, and no committed step ran again.
    let all_effects: Vec<_> = effects.values().flat_map(|p| read_effects(p)).collect();
    assert_eq!(
        count_effect(&all_effects, &ids[0], "start", 0),
        1,
        "charged once"
    );
    assert_eq!(
        count_effect(&all_effects, &ids[5], "start", 0),
        1,
        "the race's step ran once"
    );
    for i in 0..fanout_input.n {
        assert_eq!(count_effect(&all_effects, &ids[1], "done", i), 1);
        assert_eq!(count_effect(&all_effects, &ids[1], "done", 1000 + i), 1);
    }
    for id in &ids {
        let reference = history_entries(&cluster, 1, id).await?;
        for node in 2..=size {
            assert_eq!(
                history_entries(&cluster, node, id).await?,
                reference,
                "history of {id} on node {node}"
            );
        }
    }
    Ok(())
}
