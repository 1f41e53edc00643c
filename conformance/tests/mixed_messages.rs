//! Languages talking to each other's workflows (issue 28: "a Node client
//! signals a Python workflow; a Python client resolves a Node awakeable"):
//! one cluster with a node per worker language, and each language's client
//! mode (conformance/WORKERS.md, "Client mode") sending events to and
//! completing awakeables of the workflows that every other language runs.
//!
//! `CONFORMANCE_MIXED` gives the workers of nodes 1, 2, 3... and
//! `CONFORMANCE_MIXED_CLIENTS` their clients, in the same order (command
//! lines separated by `;`; the matrix runner sets both). Unset, every node
//! runs `CONFORMANCE_WORKER` (or the Rust worker) and the Rust client.

use std::collections::BTreeMap;

use raftoral_client::RaftoralClient;
use raftoral_conformance::apps::{client, result_json};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{DEADLINE, Worker, bin_dir, eventually_async};
use serde_json::{Value, json};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "waiter,awakener");

/// The command lines of a `;`-separated variable.
fn lines(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What runs on one node: its worker (`None`: the default one) and the
/// client of the same language.
struct Node {
    worker: Option<String>,
    client: String,
}

/// One node per given worker, at least three, each with its language's
/// client.
fn nodes() -> anyhow::Result<BTreeMap<u64, Node>> {
    let workers = lines("CONFORMANCE_MIXED");
    let mut clients = lines("CONFORMANCE_MIXED_CLIENTS");
    if clients.is_empty() {
        let rust = bin_dir().join("conformance-client-rust");
        anyhow::ensure!(
            rust.exists(),
            "{} is missing: build the workspace binaries first",
            rust.display()
        );
        clients.push(rust.display().to_string());
    } else {
        anyhow::ensure!(
            clients.len() == workers.len(),
            "CONFORMANCE_MIXED_CLIENTS has {} clients for {} workers",
            clients.len(),
            workers.len()
        );
    }
    Ok((1..=workers.len().max(3))
        .map(|n| {
            let worker = (!workers.is_empty()).then(|| workers[(n - 1) % workers.len()].clone());
            let client = clients[(n - 1) % clients.len()].clone();
            (n as u64, Node { worker, client })
        })
        .collect())
}

/// Runs the client `line` (split on whitespace) with `arg` against the
/// sidecar at `url`.
async fn run_client(line: &str, url: &str, arg: &str) -> anyhow::Result<std::process::Output> {
    use anyhow::Context as _;
    let mut words = line.split_whitespace();
    let mut command = tokio::process::Command::new(words.next().context("an empty client line")?);
    command
        .args(words)
        .arg(arg)
        .env("RAFTORAL_SIDECAR_URL", url)
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .with_context(|| format!("client `{line}` did not answer {arg} in time"))?
        .with_context(|| format!("spawn client `{line}`"))
}

/// One call through the client `line`: the JSON line it printed.
async fn call(line: &str, url: &str, command: Value) -> anyhow::Result<Value> {
    let out = run_client(line, url, &command.to_string()).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "client `{line}` failed on {command} ({}): {stdout}{stderr}",
        out.status
    );
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let Some(last) = last else {
        anyhow::bail!("client `{line}` printed nothing for {command}: {stderr}");
    };
    serde_json::from_str(last).map_err(|e| anyhow::anyhow!("client `{line}` printed {last:?}: {e}"))
}

/// Starts a `name` workflow through `c`, the client of node `owner`, until
/// one is owned by `owner` (the starting node runs it when it can).
async fn start_owned(
    c: &RaftoralClient,
    owner: u64,
    name: &str,
    input: &Value,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let id = c
            .start_workflow(name, 1, input)
            .await?
            .workflow_id()
            .to_owned();
        let info = c.get_workflow(&id).await?;
        if info.owner_node_id == owner {
            return Ok(id);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no {name} workflow started through node {owner} is owned by it (last: {})",
            info.owner_node_id
        );
    }
}

/// The awakeable id the `awakener` workflow `id` published, once there.
async fn published(c: &RaftoralClient, id: &str) -> anyhow::Result<String> {
    let found = std::sync::Arc::new(std::sync::Mutex::new(None));
    eventually_async(DEADLINE, &format!("the awakeable of {id}"), || {
        let (c, id, found) = (c.clone(), id.to_owned(), found.clone());
        async move {
            let value: Option<String> = c.status_value(&id, "awakeable").await?;
            let there = value.is_some();
            *found.lock().expect("not poisoned") = value;
            Ok(there)
        }
    })
    .await?;
    let id = found.lock().expect("not poisoned").take();
    Ok(id.expect("published"))
}

/// The payload node `from`'s client sends to a workflow of node `to`: JSON
/// with a nested value and text beyond ASCII, encoded by the sender's
/// language and decoded by the owner's.
fn payload(from: u64, to: u64, what: &str) -> Value {
    json!({"from": from, "to": to, "what": what, "note": "déjà vu ✓", "list": [1, 2.5, null, true]})
}

/// The workflows node `from`'s client completes: a waiter and an awakener
/// owned by each other node, keyed by that node.
struct Targets {
    waiters: BTreeMap<u64, String>,
    awakeners: BTreeMap<u64, String>,
    /// An awakener (of the next node) this client rejects.
    rejected: String,
}

#[tokio::test]
async fn every_language_signals_and_resolves_workflows_of_every_other() -> anyhow::Result<()> {
    let nodes = nodes()?;
    let size = nodes.len() as u64;
    let all: Vec<u64> = (1..=size).collect();
    let cluster = Cluster::start(size, false, FAST).await?;
    cluster.wait_agreement(&all, &all).await?;
    let mut workers = Vec::new();
    for (n, node) in &nodes {
        let url = &cluster.nodes[n].url;
        let effects = cluster.dir.path().join(format!("effects{n}.log"));
        workers.push(Worker::start_as(node.worker.as_deref(), url, &effects, &[WORKFLOWS]).await?);
    }
    let mut clients = BTreeMap::new();
    for n in 1..=size {
        clients.insert(n, client(&cluster, n).await?);
    }
    // For every client node, a waiter and an awakener owned by every other
    // node (so by every other language), and one awakener to reject.
    let waits = json!({"name": "msg", "waits": 1});
    let mut targets = BTreeMap::new();
    for from in 1..=size {
        let mut t = Targets {
            waiters: BTreeMap::new(),
            awakeners: BTreeMap::new(),
            rejected: String::new(),
        };
        for to in (1..=size).filter(|to| *to != from) {
            let c = &clients[&to];
            t.waiters
                .insert(to, start_owned(c, to, "waiter", &waits).await?);
            t.awakeners
                .insert(to, start_owned(c, to, "awakener", &json!(null)).await?);
        }
        let next = from % size + 1;
        t.rejected = start_owned(&clients[&next], next, "awakener", &json!(null)).await?;
        targets.insert(from, t);
    }
    // Every client at once, each through its own node's sidecar, one call
    // after another.
    let runs = nodes.iter().map(|(from, node)| {
        let from = *from;
        let line = node.client.clone();
        let url = cluster.nodes[&from].url.clone();
        let c = clients[&from].clone();
        let t = &targets[&from];
        async move {
            for (to, id) in &t.waiters {
                let key = format!("key-{from}-{to}");
                let send = json!({"op": "signal", "workflow_id": id, "name": "msg",
                    "payload": payload(from, *to, "event"), "key": key});
                assert_eq!(
                    call(&line, &url, send.clone()).await?,
                    json!({"ok": true, "duplicate": false}),
                    "`{line}` signals {id} of node {to}"
                );
                assert_eq!(
                    call(&line, &url, send).await?,
                    json!({"ok": true, "duplicate": true}),
                    "`{line}` sends the same key to {id} again"
                );
            }
            for (to, id) in &t.awakeners {
                let awakeable = published(&c, id).await?;
                let resolve =
                    json!({"op": "resolve", "id": awakeable, "payload": payload(from, *to, "value")});
                assert_eq!(
                    call(&line, &url, resolve).await?,
                    json!({"ok": true}),
                    "`{line}` resolves {awakeable} of node {to}"
                );
            }
            let awakeable = published(&c, &t.rejected).await?;
            let message = format!("declined by the client of node {from}");
            let reject =
                json!({"op": "reject", "id": awakeable, "message": message, "type": "Declined"});
            assert_eq!(call(&line, &url, reject).await?, json!({"ok": true}));
            // Refusals: a completed awakeable, an unknown workflow.
            let again = call(&line, &url, json!({"op": "resolve", "id": awakeable, "payload": 1}));
            let again = again.await?;
            assert_eq!(again["ok"], false, "`{line}`: {again}");
            assert_eq!(again["code"], "ALREADY_EXISTS", "`{line}`: {again}");
            let unknown = json!({"op": "signal", "workflow_id": format!("no-such-{from}"),
                "name": "msg", "payload": 1});
            let unknown_awakeable = json!({"op": "resolve", "id": format!("awk/1/no-such-{from}"),
                "payload": 1});
            for command in [unknown, unknown_awakeable] {
                let refused = call(&line, &url, command.clone()).await?;
                assert_eq!(refused["ok"], false, "`{line}` {command}: {refused}");
                assert_eq!(
                    refused["code"], "NOT_FOUND",
                    "`{line}` {command}: {refused}"
                );
                let message = refused["error"].as_str().unwrap_or_default();
                assert!(!message.is_empty(), "`{line}` {command}: {refused}");
            }
            // A command line that is not a command: exit status 2.
            for bad in ["not json", r#"{"op":"explode"}"#] {
                let out = run_client(&line, &url, bad).await?;
                assert_eq!(out.status.code(), Some(2), "`{line}` {bad}: {out:?}");
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(runs).await?;
    // Every workflow got what the other language sent.
    let c = &clients[&1];
    for (from, t) in &targets {
        for (to, id) in &t.waiters {
            assert_eq!(
                result_json(c, id).await?,
                json!({"events": [payload(*from, *to, "event")]}),
                "waiter {id} of node {to}, signalled by node {from}'s client"
            );
        }
        for (to, id) in &t.awakeners {
            assert_eq!(
                result_json(c, id).await?,
                json!({"value": payload(*from, *to, "value")}),
                "awakener {id} of node {to}, resolved by node {from}'s client"
            );
        }
        assert_eq!(
            result_json(c, &t.rejected).await?,
            json!({"rejected": {"type": "Declined",
                "message": format!("declined by the client of node {from}")}}),
            "awakener {} rejected by node {from}'s client",
            t.rejected
        );
    }
    drop(workers);
    Ok(())
}

/// The node whose worker runs the children of node `k`'s parents: two
/// further on, so with the matrix's four languages (rust, python, raw,
/// node) a Python parent has Node children and the reverse.
fn child_node(k: u64, size: u64) -> u64 {
    (k - 1 + 2) % size + 1
}

#[tokio::test]
async fn a_parent_in_one_language_gets_the_results_of_children_run_by_another() -> anyhow::Result<()>
{
    let nodes = nodes()?;
    let size = nodes.len() as u64;
    let all: Vec<u64> = (1..=size).collect();
    for k in 1..=size {
        // This round, on a cluster of its own (registrations outlive their
        // apps): node k runs parents only, its child node ping_pong only,
        // so every child runs in another language than its parent.
        let cluster = Cluster::start(size, false, FAST).await?;
        cluster.wait_agreement(&all, &all).await?;
        let mut workers = Vec::new();
        for (n, node) in &nodes {
            let only = match *n {
                n if n == k => "parent",
                n if n == child_node(k, size) => "ping_pong",
                _ => "steps",
            };
            let url = &cluster.nodes[n].url;
            let effects = cluster.dir.path().join(format!("effects{n}.log"));
            let env = [("CONFORMANCE_WORKFLOWS", only)];
            workers.push(Worker::start_as(node.worker.as_deref(), url, &effects, &env).await?);
        }
        let c = client(&cluster, k).await?;
        let input = json!({"n": 3, "child": "ping_pong", "input": "ping"});
        let id = start_owned(&c, k, "parent", &input).await?;
        assert_eq!(
            result_json(&c, &id).await?,
            json!({"results": ["pong", "pong", "pong"]}),
            "parent {id} on node {k}"
        );
        for seq in 1..=3 {
            let child = c.get_workflow(&format!("{id}/{seq}")).await?;
            assert_eq!(child.parent_id, id);
            assert_eq!(
                child.owner_node_id,
                child_node(k, size),
                "child {seq} of the parent on node {k}"
            );
        }
        for w in workers {
            w.kill().await?;
        }
    }
    Ok(())
}
