//! Kubernetes discovery against the simulated API server
//! (`raftoral_conformance::kubernetes`), with real `raftoral serve`
//! processes reaching it through a kubeconfig.

use std::path::PathBuf;
use std::time::Duration;

use raftoral_client::WorkflowStatus;
use raftoral_client::proto::cluster::v1::{
    ClusterStatusRequest, MemberRole, TransferLeaderRequest,
    cluster_service_client::ClusterServiceClient,
};
use raftoral_conformance::apps::{Apps, client, history, wait_status};
use raftoral_conformance::certs::{TestCa, TlsDir};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::http::http;
use raftoral_conformance::kubernetes::{
    ApiServer, NAMESPACE, POD_SELECTOR, SERVICE, node_id_for_uid,
};
use raftoral_conformance::{
    DEADLINE, StepsInput, count_effect, eventually, eventually_async, steps_sum,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// A cheap random source for start orders and delays; the seed is printed
/// so a failing order can be replayed.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A pod decided but not necessarily started.
struct PlannedPod {
    id: u64,
    name: String,
    uid: String,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A namespace: the API server, the pods' processes, and who is who.
struct Sim {
    api: ApiServer,
    cluster: Cluster,
    kubeconfig: PathBuf,
    expect: usize,
    remove_after: &'static str,
    /// Give each pod a storage directory (its Raft log survives a restart).
    storage: bool,
    /// Mutual TLS between the pods: each gets a certificate of this CA.
    tls: Option<TestCa>,
    /// RAFTORAL_LEAVE_ON_STOP, as k8s/base sets it for a Deployment.
    leave: bool,
    created: u64,
    /// Pod name by node id, for the pods that exist.
    pods: std::collections::BTreeMap<u64, String>,
}

impl Sim {
    async fn new(expect: usize, remove_after: &'static str) -> anyhow::Result<Sim> {
        let api = ApiServer::start().await?;
        let cluster = Cluster::empty(FAST)?;
        let kubeconfig = api.kubeconfig(cluster.dir.path())?;
        Ok(Sim {
            api,
            cluster,
            kubeconfig,
            expect,
            remove_after,
            storage: false,
            tls: None,
            leave: false,
            created: 0,
            pods: Default::default(),
        })
    }

    /// Creates a pod: its process starts, then it appears in the API (the
    /// order a kubelet gives varies; discovery must not care).
    fn create_pod(&mut self) -> anyhow::Result<u64> {
        let pod = self.plan_pod()?;
        let id = pod.id;
        let port = self.cluster.spawn_pod(id, pod.args, pod.env)?;
        self.api.add_pod(&pod.name, &pod.uid, port);
        self.pods.insert(id, pod.name);
        Ok(id)
    }

    /// Creates a pod whose process has not started yet (a kubelet slow to
    /// start its containers): it is in the API with its address.
    fn create_pod_not_started(&mut self) -> anyhow::Result<PlannedPod> {
        let pod = self.plan_pod()?;
        let port = Cluster::pick_port()?;
        self.api.add_pod(&pod.name, &pod.uid, port);
        self.pods.insert(pod.id, pod.name.clone());
        Ok(PlannedPod { port, ..pod })
    }

    /// Starts the process of a pod made by [`Sim::create_pod_not_started`].
    fn start_pod(&mut self, pod: PlannedPod) -> anyhow::Result<()> {
        self.cluster
            .spawn_with(pod.id, format!("127.0.0.1:{}", pod.port), pod.args, pod.env)
    }

    /// The name, UID, id, arguments and environment of the next pod.
    fn plan_pod(&mut self) -> anyhow::Result<PlannedPod> {
        self.created += 1;
        let name = format!("app-{}", self.created);
        let uid = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.created,
            std::process::id() as u64 * 1000 + self.created
        );
        let id = node_id_for_uid(&uid);
        let env = [
            ("RAFTORAL_DISCOVERY", "kubernetes"),
            ("RAFTORAL_SERVICE_NAME", SERVICE),
            ("RAFTORAL_POD_SELECTOR", POD_SELECTOR),
            ("RAFTORAL_REMOVE_AFTER", self.remove_after),
            ("POD_NAMESPACE", NAMESPACE),
            ("POD_NAME", &name),
            ("POD_UID", &uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([
            (
                "KUBECONFIG".to_owned(),
                self.kubeconfig.display().to_string(),
            ),
            (
                "RAFTORAL_BOOTSTRAP_EXPECT".to_owned(),
                self.expect.to_string(),
            ),
        ])
        .collect();
        let mut args = if self.storage {
            let dir = self.cluster.dir.path().join(format!("data-{name}"));
            vec!["--storage-path".to_owned(), dir.display().to_string()]
        } else {
            Vec::new()
        };
        let mut env: Vec<(String, String)> = env;
        if self.leave {
            env.push(("RAFTORAL_LEAVE_ON_STOP".to_owned(), "true".to_owned()));
        }
        if let Some(ca) = &self.tls {
            // As the cert-manager overlay does: files laid out like the
            // Secret, and the name in the certificate checked instead of
            // the IP dialled.
            let dir = self.cluster.dir.path().join(format!("tls-{name}"));
            let files = TlsDir::write(&dir, &ca.issue(&name)?, &ca.pem())?;
            args.extend(files.flags());
            args.extend(["--probe-listen".to_owned(), "127.0.0.1:0".to_owned()]);
            env.push((
                "RAFTORAL_TLS_SERVER_NAME".to_owned(),
                "localhost".to_owned(),
            ));
        }
        Ok(PlannedPod {
            id,
            name,
            uid,
            port: 0,
            args,
            env,
        })
    }

    /// Deletes a pod: gone from the API, its process stopped.
    async fn delete_pod(&mut self, id: u64) -> anyhow::Result<()> {
        let name = self.pods.remove(&id).expect("pod");
        self.api.delete_pod(&name);
        self.cluster.remove(id).await
    }

    /// As the kubelet does: polls the pod's `/ready` until it answers 200,
    /// then sets the pod's Ready condition in the API. A Deployment
    /// controller moves on from there.
    async fn wait_ready(&mut self, id: u64) -> anyhow::Result<()> {
        self.cluster.wait_serving(id).await?;
        let addr = self.cluster.nodes[&id].raft_addr.clone();
        eventually_async(DEADLINE, "the new pod to report ready", || {
            let addr = addr.clone();
            async move { Ok(http(&addr, "GET", "/ready").await?.0 == 200) }
        })
        .await?;
        self.api.set_pod_ready(&self.pods[&id], true);
        Ok(())
    }

    /// A pod goes as a controller deletes it: its deletion time is set,
    /// SIGTERM (or, `kill`, a SIGKILL: a force delete or a lost node) and,
    /// once its process ended, its object leaves the API.
    async fn stop_pod(&mut self, id: u64, kill: bool) -> anyhow::Result<()> {
        if kill {
            self.cluster.kill(id).await?;
        } else {
            self.api.mark_deleting(&self.pods[&id]);
            let status = self.cluster.terminate(id).await?;
            anyhow::ensure!(status.success(), "pod {id} stopped with {status}");
            let log = self.cluster.log(id);
            anyhow::ensure!(
                !self.leave
                    || log.contains("left the cluster before stopping")
                    || log.contains("the removal may have applied"),
                "pod {id} did not leave on SIGTERM:\n{log}"
            );
        }
        let name = self.pods.remove(&id).expect("pod");
        self.api.delete_pod(&name);
        self.cluster.remove(id).await
    }

    /// Creates `n` pods and waits for them to be one cluster.
    async fn form(&mut self, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            self.create_pod()?;
        }
        self.one_cluster_of_the_pods().await
    }

    fn ids(&self) -> Vec<u64> {
        self.pods.keys().copied().collect()
    }

    /// Waits until every pod serves and all agree on one leader and on the
    /// members being exactly the pods, every one a voter.
    async fn one_cluster_of_the_pods(&mut self) -> anyhow::Result<()> {
        let ids = self.ids();
        for id in &ids {
            self.cluster.wait_serving(*id).await?;
        }
        self.cluster.wait_agreement(&ids, &ids).await?;
        let cluster = &self.cluster;
        eventually_async(DEADLINE, "every member a voter", || async {
            let status = cluster.status(ids[0]).await?;
            Ok(status
                .members
                .iter()
                .all(|m| m.role != MemberRole::Learner as i32))
        })
        .await?;
        for id in &ids {
            assert_eq!(
                self.cluster.status(*id).await?.node_id,
                *id,
                "the id comes from the pod UID"
            );
        }
        Ok(())
    }
}

/// One simultaneous start: `expect` pods created in a random order with
/// random delays; exactly one cluster must form, with all of them as voters.
async fn simultaneous_start(random: &mut Random) -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "60s").await?;
    for _ in 0..3 {
        sim.create_pod()?;
        // The scenario, not a wait: pods start at random moments.
        tokio::time::sleep(Duration::from_millis(random.below(400))).await;
    }
    sim.one_cluster_of_the_pods().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_started_together_form_exactly_one_cluster_every_time() -> anyhow::Result<()> {
    let mut random = Random::new();
    // 20 starts, four at a time (each in its own namespace and API server).
    for round in 0..5 {
        let mut starts = Vec::new();
        for _ in 0..4 {
            let mut random = Random(random.below(u64::MAX) | 1);
            starts.push(tokio::spawn(async move {
                simultaneous_start(&mut random).await
            }));
        }
        for start in starts {
            start
                .await?
                .map_err(|e| anyhow::anyhow!("round {round}: {e:#}"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn scaling_up_and_down_and_replacing_a_pod_follow_the_pods() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.form(3).await?;

    // 3 -> 5: the new pods join (learners, then voters).
    sim.create_pod()?;
    sim.create_pod()?;
    sim.one_cluster_of_the_pods().await?;

    // 5 -> 3: the leader removes the members whose pods are gone.
    let ids = sim.ids();
    sim.delete_pod(ids[3]).await?;
    sim.delete_pod(ids[0]).await?;
    sim.one_cluster_of_the_pods().await?;

    // A pod deleted and replaced: the replacement is a new member.
    let old = sim.ids()[1];
    sim.delete_pod(old).await?;
    let new = sim.create_pod()?;
    assert_ne!(old, new);
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

/// The API server goes away for `outage`; meanwhile a pod is deleted (the
/// sidecars cannot see it). Nobody is removed during the outage; after it,
/// discovery catches up and the gone pod is removed.
async fn api_outage(outage: Duration) -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.form(4).await?;
    let ids = sim.ids();
    sim.api.set_down(true);
    // Stop a member while the API is away: it is missing from Raft but the
    // pod cannot be seen gone, so it must stay a member.
    let gone = ids[3];
    let name = sim.pods.remove(&gone).expect("pod");
    sim.cluster.remove(gone).await?;
    let started = tokio::time::Instant::now();
    let survivors: Vec<u64> = ids[..3].to_vec();
    // Checked at a steady cadence for the whole outage.
    let mut cadence = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < outage {
        cadence.tick().await;
        let leader = sim.cluster.wait_agreement(&survivors, &ids).await?;
        assert!(survivors.contains(&leader));
    }
    sim.api.delete_pod(&name);
    sim.api.set_down(false);
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

#[tokio::test]
async fn a_thirty_second_api_outage_removes_nobody_and_discovery_catches_up() -> anyhow::Result<()>
{
    // The issue's 30 s: it runs beside the file's other tests, so the
    // file's wall time grows little.
    api_outage(Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_leader_restarted_while_the_api_is_away_removes_nobody() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.storage = true;
    sim.form(3).await?;
    let ids = sim.ids();
    sim.api.set_down(true);
    // A sidecar container restarts inside its pod (same UID, same storage)
    // while the API is away: it resumes as its member, knows no pod at all,
    // and is made leader. Its empty view must not look like every other
    // pod being gone.
    let restarted = ids[0];
    sim.cluster.kill(restarted).await?;
    sim.cluster.restart(restarted).await?;
    sim.cluster.wait_agreement(&ids, &ids).await?;
    let mut admin = ClusterServiceClient::connect(format!(
        "http://{}",
        sim.cluster.nodes[&restarted].raft_addr
    ))
    .await?;
    eventually_async(DEADLINE, "the restarted node to lead", || {
        let mut admin = admin.clone();
        async move {
            let moved = admin
                .transfer_leader(TransferLeaderRequest { node_id: restarted })
                .await;
            Ok(moved.is_ok_and(|r| r.into_inner().leader_id == restarted))
        }
    })
    .await?;
    // Well past RAFTORAL_REMOVE_AFTER, checked at a steady cadence.
    let started = tokio::time::Instant::now();
    let mut cadence = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < Duration::from_secs(4) {
        cadence.tick().await;
        let status = admin
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner();
        let members: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
        assert_eq!(members, ids, "a member was removed while the API was away");
    }
    assert!(
        sim.cluster
            .log(restarted)
            .contains("storage holds data: restarting as the member this pod was"),
        "{}",
        sim.cluster.log(restarted)
    );
    sim.api.set_down(false);
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

#[tokio::test]
async fn a_compacted_watch_relists_and_follows_on() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.form(3).await?;
    let lists = sim.api.lists("pods");
    sim.api.compact();
    // 410 Gone on the next watch: every sidecar lists again.
    eventually(DEADLINE, "the sidecars to relist after 410 Gone", || {
        sim.api.lists("pods") >= lists + 3
    })
    .await?;
    sim.create_pod()?;
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

#[tokio::test]
async fn missing_rbac_permission_is_a_clear_error() -> anyhow::Result<()> {
    let mut sim = Sim::new(1, "60s").await?;
    sim.api.deny("list", "endpointslices");
    let id = sim.create_pod()?;
    let cluster = &sim.cluster;
    eventually(DEADLINE, "the RBAC error in the log", || {
        cluster.log(id).contains("Kubernetes RBAC denies 'list' on 'endpointslices.discovery.k8s.io' in namespace 'raftoral-test'")
    })
    .await?;
    Ok(())
}

/// Workflows running through a sequence of pod replacements made at a
/// controller's speed: `replace(sim, apps)` does the replacements and
/// returns how many pods went. Then: a leader, every workflow completed
/// with the right result and the same history on every node, each step
/// run once but for at most one re-run per pod that went.
async fn workflows_survive(
    replicas: usize,
    replace: impl AsyncFnOnce(&mut Sim, &mut Apps) -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    // The shipped settings (k8s/base): members of gone pods are removed
    // after 60 s, a Deployment's pods leave on SIGTERM.
    let mut sim = Sim::new(replicas, "60s").await?;
    sim.leave = true;
    sim.form(replicas).await?;
    for id in sim.ids() {
        sim.wait_ready(id).await?;
    }
    let mut apps = Apps::start(&sim.cluster, &[]).await?;
    let c = client(&sim.cluster, sim.ids()[0]).await?;
    let n = 40;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(n, 100))
            .await?;
        ids.push(h.workflow_id().to_owned());
    }
    let gone = replace(&mut sim, &mut apps).await?;

    let nodes = sim.ids();
    let leader = sim.cluster.wait_agreement(&nodes, &nodes).await?;
    assert!(nodes.contains(&leader));
    let c = client(&sim.cluster, leader).await?;
    for id in &ids {
        wait_status(&c, id, WorkflowStatus::Completed).await?;
        let info = c.get_workflow(id).await?;
        assert_eq!(serde_json::from_slice::<u64>(&info.result)?, steps_sum(n));
        let first = history(&sim.cluster, nodes[0], id).await?;
        assert_eq!(first.len(), n as usize);
        for node in &nodes[1..] {
            assert_eq!(
                history(&sim.cluster, *node, id).await?,
                first,
                "histories differ"
            );
        }
        let effects = apps.effects();
        let mut rerun = 0;
        for step in 0..n {
            let done = count_effect(&effects, id, "done", step);
            assert!(done >= 1, "{id}: step {step} never ran");
            rerun += done - 1;
        }
        assert!(
            rerun <= gone as usize,
            "{id}: {rerun} steps ran twice with {gone} pods gone"
        );
    }
    Ok(())
}

/// A Deployment's rolling update (maxSurge 1, maxUnavailable 0): a surge
/// pod is created, and as soon as it reports ready an old pod is deleted;
/// the membership is never waited for. With `kill` the old pods die
/// without a SIGTERM (force deletes, lost nodes): then only the join gate
/// and the removal of deleted pods keep the quorum.
async fn rolling_update(sim: &mut Sim, apps: &mut Apps, kill: bool) -> anyhow::Result<u64> {
    let old = sim.ids();
    for id in &old {
        let new = sim.create_pod()?;
        sim.wait_ready(new).await?;
        apps.spawn(&sim.cluster, new, &[]).await?;
        if let Some(worker) = apps.workers.remove(id) {
            worker.terminate().await?;
        }
        sim.stop_pod(*id, kill).await?;
    }
    Ok(old.len() as u64)
}

#[tokio::test]
async fn a_rolling_update_of_3_at_controller_speed_keeps_quorum_and_every_workflow()
-> anyhow::Result<()> {
    workflows_survive(3, async |sim, apps| rolling_update(sim, apps, false).await).await
}

#[tokio::test]
async fn a_rolling_update_of_5_at_controller_speed_keeps_quorum_and_every_workflow()
-> anyhow::Result<()> {
    workflows_survive(5, async |sim, apps| rolling_update(sim, apps, false).await).await
}

#[tokio::test]
async fn old_pods_killed_at_controller_speed_keep_quorum_through_the_join_gate()
-> anyhow::Result<()> {
    workflows_survive(3, async |sim, apps| rolling_update(sim, apps, true).await).await
}

#[tokio::test]
async fn two_drains_and_a_scale_down_to_2_and_back_keep_quorum() -> anyhow::Result<()> {
    workflows_survive(5, async |sim, apps| {
        // Two drains in a row: each evicts a pod (SIGTERM) and the
        // Deployment replaces it; the PodDisruptionBudget lets the next
        // eviction go once the replacement is ready.
        let mut gone = 0;
        for _ in 0..2 {
            let old = sim.ids()[0];
            if let Some(worker) = apps.workers.remove(&old) {
                worker.terminate().await?;
            }
            sim.stop_pod(old, false).await?;
            gone += 1;
            let new = sim.create_pod()?;
            sim.wait_ready(new).await?;
            apps.spawn(&sim.cluster, new, &[]).await?;
        }
        // Scale 5 -> 2: three pods deleted at once.
        let going: Vec<u64> = sim.ids()[..3].to_vec();
        let mut stops = Vec::new();
        for id in &going {
            if let Some(worker) = apps.workers.remove(id) {
                stops.push(worker);
            }
        }
        for worker in stops {
            worker.terminate().await?;
        }
        for id in &going {
            sim.api.mark_deleting(&sim.pods[id]);
            sim.cluster.signal(*id, "TERM").await?;
        }
        for id in going {
            let status = sim.cluster.wait_exit(id).await?;
            anyhow::ensure!(status.success(), "pod {id} stopped with {status}");
            let name = sim.pods.remove(&id).expect("pod");
            sim.api.delete_pod(&name);
            sim.cluster.remove(id).await?;
            gone += 1;
        }
        // And back to 5 at once, as the controller does, without waiting
        // for the membership.
        for _ in 0..3 {
            let new = sim.create_pod()?;
            sim.wait_ready(new).await?;
            apps.spawn(&sim.cluster, new, &[]).await?;
        }
        Ok(gone)
    })
    .await
}

/// A leave the others cannot afford (with another member already dead,
/// the one left could not make a quorum) is refused by the leader: the pod
/// says so, stops anyway within its grace period, and stays a member.
#[tokio::test]
async fn a_leave_that_would_break_the_quorum_is_refused_and_the_pod_stops_anyway()
-> anyhow::Result<()> {
    let mut sim = Sim::new(3, "60s").await?;
    sim.leave = true;
    sim.form(3).await?;
    let ids = sim.ids();
    let leader = sim.cluster.wait_agreement(&ids, &ids).await?;
    let followers: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    sim.cluster.kill(followers[0]).await?;
    let cluster = &sim.cluster;
    eventually(DEADLINE, "the leader to see the killed node down", || {
        cluster
            .log(leader)
            .contains("node is down (connection refused)")
    })
    .await?;
    let going = followers[1];
    sim.api.mark_deleting(&sim.pods[&going]);
    let status = sim.cluster.terminate(going).await?;
    anyhow::ensure!(status.success(), "stopped with {status}");
    let log = sim.cluster.log(going);
    assert!(log.contains("could not leave the cluster"), "{log}");
    let members: Vec<u64> = sim
        .cluster
        .status(leader)
        .await?
        .members
        .iter()
        .map(|m| m.node_id)
        .collect();
    assert_eq!(members, ids, "a refused leave removed nobody");
    Ok(())
}

/// A container restarted inside its pod (SIGTERM, no deletion: a liveness
/// failure, an OOM kill's restart) keeps its volume and comes back as its
/// member: it must not leave on that SIGTERM, or it would come back
/// removed, with an id that can never rejoin.
#[tokio::test]
async fn a_container_restarted_in_its_pod_does_not_leave() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "60s").await?;
    sim.leave = true;
    sim.storage = true;
    sim.form(3).await?;
    let id = sim.ids()[1];
    let status = sim.cluster.terminate(id).await?;
    anyhow::ensure!(status.success(), "stopped with {status}");
    let log = sim.cluster.log(id);
    assert!(log.contains("staying a member"), "{log}");
    sim.cluster.restart(id).await?;
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

/// The leader's watch goes silent with its connection held open; a pod
/// created afterwards joins. The leader's view never shows it, but its
/// absence is confirmed by a new list before it counts: the member stays.
/// (Before, it was removed after RAFTORAL_REMOVE_AFTER.)
#[tokio::test]
async fn a_stalled_watch_removes_no_member_that_joined_meanwhile() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.form(3).await?;
    sim.api.stall_watches();
    let new = sim.create_pod()?;
    sim.one_cluster_of_the_pods().await?;
    // Well past RAFTORAL_REMOVE_AFTER, checked at a steady cadence.
    let ids = sim.ids();
    let started = tokio::time::Instant::now();
    let mut cadence = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < Duration::from_secs(4) {
        cadence.tick().await;
        let members: Vec<u64> = sim
            .cluster
            .status(ids[0])
            .await?
            .members
            .iter()
            .map(|m| m.node_id)
            .collect();
        assert!(members.contains(&new), "the new member was removed");
    }
    Ok(())
}

/// The API server accepts connections and answers nothing for longer than
/// RAFTORAL_REMOVE_AFTER while a pod is deleted: nobody is removed until it
/// answers again, then the deleted pod's member is.
#[tokio::test]
async fn a_silent_api_server_removes_nobody_until_it_answers() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    sim.form(4).await?;
    let ids = sim.ids();
    let leader = sim.cluster.wait_agreement(&ids, &ids).await?;
    let gone = *ids.iter().find(|id| **id != leader).expect("a follower");
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != gone).collect();
    sim.api.set_silent(true);
    sim.stop_pod(gone, true).await?;
    let started = tokio::time::Instant::now();
    let mut cadence = tokio::time::interval(Duration::from_millis(200));
    while started.elapsed() < Duration::from_secs(5) {
        cadence.tick().await;
        let leader = sim.cluster.wait_agreement(&survivors, &ids).await?;
        assert!(survivors.contains(&leader));
    }
    sim.api.set_silent(false);
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}

/// One of the first three pods is deleted (and replaced) after two of them
/// formed the cluster and before the third started: the third's view of
/// the first three pods changed. It starts as the initial member it is,
/// from the cluster's member list. (It joined before: a member with no
/// voters in its view, refusing votes; with the deleted pod's member dead,
/// no leader ever.)
#[tokio::test]
async fn a_pod_deleted_during_bootstrap_leaves_one_cluster() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "1s").await?;
    let a = sim.create_pod()?;
    let late = sim.create_pod_not_started()?;
    let c = sim.create_pod()?;
    let late_id = late.id;
    // A and C form the cluster with the late pod listed.
    sim.cluster.wait_serving(a).await?;
    sim.cluster.wait_serving(c).await?;
    let mut listed = vec![a, late_id, c];
    listed.sort_unstable();
    sim.cluster.wait_agreement(&[a, c], &listed).await?;
    // C is deleted and replaced before the late pod's process starts.
    sim.stop_pod(c, true).await?;
    let d = sim.create_pod()?;
    sim.start_pod(late)?;
    sim.one_cluster_of_the_pods().await?;
    assert_eq!(sim.ids().len(), 3);
    assert!(sim.ids().contains(&d) && sim.ids().contains(&late_id));
    let log = sim.cluster.log(late_id);
    assert!(
        log.contains("this pod is an initial member of the cluster that answers"),
        "{log}"
    );
    Ok(())
}

/// With mutual TLS between the nodes, discovery looks for an existing
/// cluster over TLS too: a pod started after the cluster formed finds it
/// and joins. (Its probe was plaintext: refused at the handshake, the pod
/// waited forever for "their cluster to answer".)
#[tokio::test]
async fn over_mutual_tls_a_pod_started_later_finds_the_cluster_and_joins() -> anyhow::Result<()> {
    let mut sim = Sim::new(3, "60s").await?;
    let ca = TestCa::new("k8s-test-ca")?;
    let admin = ca.issue("admin")?;
    sim.cluster.admin_tls = Some(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .identity(Identity::from_pem(&admin.cert, &admin.key))
            .domain_name("localhost"),
    );
    sim.tls = Some(ca);
    sim.form(3).await?;
    sim.create_pod()?;
    sim.one_cluster_of_the_pods().await?;
    Ok(())
}
