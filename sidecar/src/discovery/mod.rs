//! Peer discovery for `raftoral serve`: `static` (RAFTORAL_PEERS or
//! --join, the default) or `kubernetes` (pods and EndpointSlices of a
//! headless Service, read through the API server).
//!
//! Kubernetes discovery decides how this node starts (bootstrap a new
//! cluster, join the one that answers, or restart from its storage), then
//! keeps watching: the leader removes members whose pod was deleted, or has
//! been gone longer than RAFTORAL_REMOVE_AFTER, and a pod that joined
//! reports ready only when the membership can lose one more pod
//! (`gate.rs`). See docs/KUBERNETES.md.
//!
//! Reads the serve configuration (`crate::config`), which holds only this
//! folder's flags (`args.rs`); nothing else of the sidecar imports it but
//! `server.rs`.

mod args;
mod bootstrap;
mod gate;
pub mod identity;
mod reconcile;
mod view;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use raftoral_proto::cluster::v1::{
    ClusterStatusRequest, ClusterStatusResponse, cluster_service_client::ClusterServiceClient,
};
use tokio::sync::watch as channel;

use crate::config::ServeArgs;
pub(crate) use args::parse_duration;
pub use args::{DiscoveryArgs, Mode};
pub use gate::JoinGate;
pub use reconcile::reconcile;
use view::Peer;
use watch::{Relist, Snapshot, Target};

/// The file a pod's service account namespace is mounted at.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What this node does at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Its storage holds data: resume as the member it was.
    Restart,
    /// Form a new cluster with these members (id → address).
    Bootstrap(BTreeMap<u64, String>),
    /// Join the cluster that answered at this address.
    Join(String),
}

/// Kubernetes discovery running for this node.
pub struct Kubernetes {
    /// This node's id (from the pod UID).
    pub node_id: u64,
    /// This pod's UID.
    uid: String,
    pods: channel::Receiver<Snapshot<Pod>>,
    slices: channel::Receiver<Snapshot<EndpointSlice>>,
    /// Asks both watches to list again.
    relist: Relist,
    remove_after: Duration,
    /// `SERVICE.NAMESPACE.svc`: StatefulSet pods' DNS names end with it.
    dns_suffix: String,
}

impl Kubernetes {
    /// Connects to the API server (in-cluster service account, or
    /// KUBECONFIG) and starts following pods and EndpointSlices.
    pub async fn start(
        args: &DiscoveryArgs,
        stop: channel::Receiver<bool>,
    ) -> anyhow::Result<Kubernetes> {
        let missing = |what: &str| format!("RAFTORAL_DISCOVERY=kubernetes needs {what}");
        let uid = args
            .pod_uid
            .clone()
            .with_context(|| missing("POD_UID (downward API metadata.uid)"))?;
        let service = args
            .service_name
            .clone()
            .with_context(|| missing("RAFTORAL_SERVICE_NAME (the headless Service)"))?;
        let selector = args.pod_selector.clone().with_context(|| {
            missing(
                "RAFTORAL_POD_SELECTOR (the pods' labels, e.g. app.kubernetes.io/name=ping-pong)",
            )
        })?;
        let config = kube::Config::infer().await.context(
            "cannot configure the Kubernetes client (no service account token in the pod and no KUBECONFIG)",
        )?;
        let namespace = match &args.pod_namespace {
            Some(ns) => ns.clone(),
            None => std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| config.default_namespace.clone()),
        };
        let client =
            kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
        let node_id = identity::node_id_for_uid(&uid);
        tracing::info!(
            node = node_id,
            pod = args.pod_name.as_deref().unwrap_or(""),
            uid,
            namespace,
            service,
            selector,
            "Kubernetes discovery: node id derived from the pod UID"
        );
        let relist = Relist::default();
        let pods = watch::spawn(
            Api::<Pod>::namespaced(client.clone(), &namespace),
            Target {
                resource: "pods",
                group: "",
                namespace: namespace.clone(),
                labels: Some(selector),
            },
            relist.clone(),
            stop.clone(),
        );
        let slices = watch::spawn(
            Api::<EndpointSlice>::namespaced(client, &namespace),
            Target {
                resource: "endpointslices",
                group: "discovery.k8s.io",
                namespace: namespace.clone(),
                labels: Some(format!("kubernetes.io/service-name={service}")),
            },
            relist.clone(),
            stop,
        );
        let dns_suffix = format!("{service}.{namespace}.svc");
        Ok(Kubernetes {
            node_id,
            uid,
            pods,
            slices,
            relist,
            remove_after: args.remove_after,
            dns_suffix,
        })
    }

    /// The peers as last seen, and whether both watches are live.
    fn view(&self) -> (BTreeMap<u64, Peer>, bool) {
        let pods = self.pods.borrow();
        let slices = self.slices.borrow();
        (
            view::peers(pods.items.values(), slices.items.values(), &self.dns_suffix),
            pods.live && slices.live,
        )
    }

    /// Whether this pod is being deleted, for the leave on SIGTERM.
    pub fn deletion(&self) -> PodDeletion {
        PodDeletion {
            uid: self.uid.clone(),
            pods: self.pods.clone(),
        }
    }

    /// Lists made by both watches so far (the fewer of the two).
    fn lists(&self) -> u64 {
        self.pods.borrow().lists.min(self.slices.borrow().lists)
    }

    /// Asks both watches to list again.
    fn request_relist(&self) {
        self.relist.request();
    }

    /// Waits for a change of either watch or `at_most`.
    async fn changed(&mut self, at_most: Duration) {
        tokio::select! {
            _ = self.pods.changed() => {}
            _ = self.slices.changed() => {}
            _ = tokio::time::sleep(at_most) => {}
        }
    }

    /// Decides how this node starts; see [`bootstrap`] for the rule.
    pub async fn plan(&mut self, serve: &ServeArgs) -> anyhow::Result<Start> {
        if let Some(dir) = &serve.storage_path
            && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
        {
            // The disk names the member it belongs to: a StatefulSet pod
            // recreated with a new UID resumes as the member it was.
            let file = id_file(dir);
            if let Ok(text) = std::fs::read_to_string(&file) {
                self.node_id = text.trim().parse().with_context(|| {
                    format!("{} does not hold a node id; remove the pod's storage to start it as a new member", file.display())
                })?;
            }
            tracing::info!(node = self.node_id, path = %dir.display(), "storage holds data: restarting as the member this pod was");
            return Ok(Start::Restart);
        }
        if let Some(dir) = &serve.storage_path {
            let file = id_file(dir);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&file, self.node_id.to_string())
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        let Some(expect) = serve.bootstrap_expect else {
            bail!(
                "RAFTORAL_DISCOVERY=kubernetes needs RAFTORAL_BOOTSTRAP_EXPECT: the number of pods that form a new cluster (the replicas)"
            );
        };
        // With mutual TLS on, peers answer only calls that present this
        // node's certificate: a plaintext probe would never see an existing
        // cluster, and a pod started later would wait forever.
        let tls = serve
            .tls
            .files()?
            .map(raftoral::consensus::tls::Tls::load)
            .transpose()?;
        let mut candidate: Option<(Vec<u64>, tokio::time::Instant)> = None;
        let mut said = String::new();
        loop {
            let (peers, live) = self.view();
            if live {
                let initial = bootstrap::initial_members(peers.values(), expect);
                if let Some((address, answer)) = self.existing_cluster(&peers, tls.as_deref()).await
                {
                    // This pod is a member of the cluster that answers, and
                    // the cluster is the one bootstrapped from its member
                    // list (same id): another initial member decided with a
                    // list that included this pod, whose own view of the
                    // first pods changed since (one of them was deleted).
                    // Joining would start it empty, a member that knows no
                    // voters and refuses their votes; it bootstraps from
                    // that list instead, as the others did.
                    let list: BTreeMap<u64, String> = answer
                        .members
                        .iter()
                        .map(|m| (m.node_id, m.address.clone()))
                        .collect();
                    if list.contains_key(&self.node_id)
                        && raftoral::consensus::startup::cluster_id_for(&list) == answer.cluster_id
                    {
                        tracing::info!(node = self.node_id, seed = %address, members = ?list, "this pod is an initial member of the cluster that answers: starting as one of them from its member list");
                        return Ok(Start::Bootstrap(list));
                    }
                    let members: Vec<u64> = list.keys().copied().collect();
                    // An initial member that another initial member already
                    // started with bootstraps from the same list (the same
                    // first state and cluster id) instead of joining.
                    if let Some(list) = initial.as_ref().filter(|l| {
                        let mut ids: Vec<u64> = l.iter().map(|p| p.id).collect();
                        ids.sort_unstable();
                        let mut members = members.clone();
                        members.sort_unstable();
                        ids.contains(&self.node_id) && ids == members
                    }) {
                        tracing::info!(node = self.node_id, seed = %address, "the cluster of the initial members answers: starting as one of them");
                        return Ok(Start::Bootstrap(
                            list.iter()
                                .map(|p| (p.id, p.address.clone().unwrap_or_default()))
                                .collect(),
                        ));
                    }
                    tracing::info!(node = self.node_id, seed = %address, ?members, "a cluster answers: joining it");
                    return Ok(Start::Join(address));
                }
                let say = match initial {
                    None => format!(
                        "waiting for {expect} pods with addresses ({} visible)",
                        peers.len()
                    ),
                    Some(members) => {
                        let ids: Vec<u64> = members.iter().map(|p| p.id).collect();
                        let now = tokio::time::Instant::now();
                        let since = match &candidate {
                            Some((c, since)) if *c == ids => *since,
                            _ => {
                                candidate = Some((ids.clone(), now));
                                now
                            }
                        };
                        let mine = ids.contains(&self.node_id);
                        if mine && now.duration_since(since) >= bootstrap::SETTLE {
                            let list: BTreeMap<u64, String> = members
                                .iter()
                                .map(|p| (p.id, p.address.clone().unwrap_or_default()))
                                .collect();
                            let names: Vec<&str> =
                                members.iter().map(|p| p.name.as_str()).collect();
                            tracing::info!(node = self.node_id, members = ?list, pods = ?names, "bootstrap rule: this pod is among the first {expect} created and no cluster answers; forming the cluster with them");
                            return Ok(Start::Bootstrap(list));
                        }
                        if mine {
                            format!("initial members {ids:?} include this pod; settling")
                        } else {
                            format!(
                                "initial members {ids:?} do not include this pod; waiting for their cluster to answer, then joining"
                            )
                        }
                    }
                };
                if say != said {
                    tracing::info!(node = self.node_id, "bootstrap: {say}");
                    said = say;
                }
            } else {
                candidate = None;
            }
            self.changed(Duration::from_millis(250)).await;
        }
    }

    /// A visible peer that is a member of a cluster: its address and the
    /// cluster's member ids, if any.
    async fn existing_cluster(
        &self,
        peers: &BTreeMap<u64, Peer>,
        tls: Option<&raftoral::consensus::tls::Tls>,
    ) -> Option<(String, ClusterStatusResponse)> {
        for peer in peers.values().filter(|p| p.id != self.node_id) {
            let Some(address) = &peer.address else {
                continue;
            };
            if let Some(answer) = probe(address, tls).await {
                return Some((address.clone(), answer));
            }
        }
        None
    }
}

/// Tells a pod being deleted (its `deletionTimestamp` set, or its object
/// gone) from a container restarted in a pod that stays: only the first
/// leaves the cluster on SIGTERM. A restarted container keeps its
/// `emptyDir` and resumes as its member; had it left, it would come back
/// removed, with an id that can never rejoin.
#[derive(Clone)]
pub struct PodDeletion {
    uid: String,
    pods: channel::Receiver<Snapshot<Pod>>,
}

impl PodDeletion {
    /// True once the view shows this pod deleted or being deleted. The
    /// kubelet sends SIGTERM after the API server set the deletion time,
    /// so the watch may lag it a little: this waits up to `within`.
    pub async fn deleting(&mut self, within: Duration) -> bool {
        let uid = self.uid.clone();
        let seen = |s: &Snapshot<Pod>| {
            s.live
                && s.items
                    .values()
                    .find(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        };
        tokio::time::timeout(within, self.pods.wait_for(seen))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Where a node's id is kept beside its storage (`PATH.node-id`).
fn id_file(storage: &std::path::Path) -> std::path::PathBuf {
    storage.with_extension("node-id")
}

/// The member ids of the cluster the node at `address` is in; `None` when
/// it is unreachable or not (yet) a member of any. Over mutual TLS when
/// `tls` is given, like every other node-to-node call.
async fn probe(
    address: &str,
    tls: Option<&raftoral::consensus::tls::Tls>,
) -> Option<ClusterStatusResponse> {
    // One deadline over connect, handshake and call: a peer that bound its
    // port but does not serve yet (still deciding, like this node) accepts
    // the TCP connection and never answers a TLS handshake.
    let endpoint = raftoral::consensus::tls::cluster_endpoint(tls, address).ok()?;
    let status = tokio::time::timeout(Duration::from_secs(1), async move {
        let channel = endpoint
            .connect_timeout(Duration::from_millis(300))
            .connect()
            .await
            .ok()?;
        ClusterServiceClient::new(channel)
            .cluster_status(ClusterStatusRequest {})
            .await
            .ok()
    })
    .await
    .ok()??
    .into_inner();
    (!status.members.is_empty()).then_some(status)
}

/// The settings `serve` continues with once discovery decided `start`.
pub fn apply(mut serve: ServeArgs, node_id: u64, start: &Start) -> ServeArgs {
    serve.node_id = node_id;
    match start {
        Start::Restart => {
            serve.peers.clear();
            serve.join = None;
        }
        Start::Bootstrap(list) => {
            serve.peers = list.iter().map(|(id, a)| format!("{id}={a}")).collect();
            serve.join = None;
        }
        Start::Join(seed) => {
            serve.peers.clear();
            serve.join = Some(seed.clone());
        }
    }
    serve
}
