//! A simulated Kubernetes API server for discovery tests: real Kubernetes
//! JSON (k8s-openapi types) for the pods and EndpointSlices of one
//! namespace, with list, watch from a resourceVersion, bookmarks,
//! `410 Gone` after compaction, `403 Forbidden` on denied verbs, an
//! outage that refuses connections and cuts open watches, open watches that
//! go silent with their connection held (a half-open connection), and a
//! silent server that accepts requests and never answers. The sidecar
//! reaches it with its real Kubernetes client through a kubeconfig file.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Label every simulated pod carries (the sidecar's RAFTORAL_POD_SELECTOR).
pub const POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "raftoral-test");
/// The pods' selector as the sidecar is given it.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=raftoral-test";
/// The headless Service whose EndpointSlices list the pods.
pub const SERVICE: &str = "raftoral";
/// Namespace of everything.
pub const NAMESPACE: &str = "raftoral-test";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Pod,
    Slice,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Slice => "endpointslices",
        }
    }
    fn list_kind(self) -> (&'static str, &'static str) {
        match self {
            Kind::Pod => ("v1", "PodList"),
            Kind::Slice => ("discovery.k8s.io/v1", "EndpointSliceList"),
        }
    }
}

struct Event {
    rv: u64,
    kind: Kind,
    kind_type: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(Kind, String), Value>,
    log: Vec<Event>,
    /// Watches from a version below this get 410 Gone.
    oldest: u64,
    denied: BTreeSet<(String, String)>,
    lists: BTreeMap<&'static str, u64>,
}

/// The simulated API server.
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    changes: watch::Sender<u64>,
    /// Bumped to cut every open watch.
    cuts: watch::Sender<u64>,
    /// Bumped to silence every open watch (the connection stays open).
    stalls: watch::Sender<u64>,
    /// True while requests are held unanswered.
    silent: watch::Sender<bool>,
    addr: SocketAddr,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Starts serving on a loopback port picked at run time.
    pub async fn start() -> anyhow::Result<ApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut server = ApiServer {
            state: Arc::new(Mutex::new(State {
                rv: 1,
                ..State::default()
            })),
            changes: watch::channel(1).0,
            cuts: watch::channel(0).0,
            stalls: watch::channel(0).0,
            silent: watch::channel(false).0,
            addr,
            serving: None,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) {
        let channels = Channels {
            changes: self.changes.clone(),
            cuts: self.cuts.clone(),
            stalls: self.stalls.clone(),
        };
        let (state, silent) = (self.state.clone(), self.silent.clone());
        self.serving = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task (an outage)
            // drops them all, as a dead API server would.
            let mut connections = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let (state, channels, silent) = (state.clone(), channels.clone(), silent.clone());
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (state, channels) = (state.clone(), channels.clone());
                        let mut silent = silent.subscribe();
                        async move {
                            // A silent server holds every request.
                            let _ = silent.wait_for(|s| !*s).await;
                            Ok::<_, Infallible>(handle(&state, &channels, request.map(Body::new)))
                        }
                    });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        }));
    }

    /// A kubeconfig file (in `dir`) that points a client here.
    pub fn kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://{}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: {NAMESPACE}\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Creates a pod and its EndpointSlice (one per pod, so each simulated
    /// pod can have its own port on 127.0.0.1).
    pub fn add_pod(&self, name: &str, uid: &str, port: u16) {
        let mut state = self.state.lock().expect("state");
        // The API server stamps creation times to the second.
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let created = k8s_openapi::jiff::Timestamp::from_second(second).expect("time");
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                uid: Some(uid.into()),
                creation_timestamp: Some(Time(created)),
                labels: Some([(POD_LABEL.0.to_owned(), POD_LABEL.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                pod_ip: Some("127.0.0.1".into()),
                phase: Some("Running".into()),
                ..PodStatus::default()
            }),
        };
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{SERVICE}-{name}")),
                namespace: Some(NAMESPACE.into()),
                labels: Some(
                    [("kubernetes.io/service-name".to_owned(), SERVICE.to_owned())].into(),
                ),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![Endpoint {
                addresses: vec!["127.0.0.1".into()],
                conditions: Some(EndpointConditions {
                    ready: Some(false),
                    ..EndpointConditions::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some(name.into()),
                    namespace: Some(NAMESPACE.into()),
                    uid: Some(uid.into()),
                    ..ObjectReference::default()
                }),
                ..Endpoint::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("raft".into()),
                port: Some(i32::from(port)),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        };
        let pod = serde_json::to_value(pod).expect("pod json");
        let slice = serde_json::to_value(slice).expect("slice json");
        put(&mut state, Kind::Pod, name, pod, "ADDED");
        put(
            &mut state,
            Kind::Slice,
            &format!("{SERVICE}-{name}"),
            slice,
            "ADDED",
        );
        self.changes.send_replace(state.rv);
    }

    /// Marks a pod as being deleted (`metadata.deletionTimestamp`), as the
    /// API server does before the kubelet sends SIGTERM.
    pub fn mark_deleting(&self, name: &str) {
        let mut state = self.state.lock().expect("state");
        let Some(mut pod) = state.objects.get(&(Kind::Pod, name.to_owned())).cloned() else {
            return;
        };
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let now = k8s_openapi::jiff::Timestamp::from_second(second)
            .expect("time")
            .to_string();
        pod["metadata"]["deletionTimestamp"] = json!(now);
        put(&mut state, Kind::Pod, name, pod, "MODIFIED");
        self.changes.send_replace(state.rv);
    }

    /// Deletes a pod and its EndpointSlice.
    pub fn delete_pod(&self, name: &str) {
        let mut state = self.state.lock().expect("state");
        for (kind, key) in [
            (Kind::Pod, name.to_owned()),
            (Kind::Slice, format!("{SERVICE}-{name}")),
        ] {
            if let Some(object) = state.objects.remove(&(kind, key)) {
                put(&mut state, kind, "", object, "DELETED");
            }
        }
        self.changes.send_replace(state.rv);
    }

    /// Forgets the event history: a watch from any older version gets
    /// `410 Gone` (as after etcd compaction), and open watches are cut so
    /// the clients come back with their old versions.
    pub fn compact(&self) {
        {
            let mut state = self.state.lock().expect("state");
            // Every version seen so far is gone; the next one is valid.
            state.log.clear();
            state.rv += 1;
            state.oldest = state.rv;
        }
        self.cuts.send_modify(|c| *c += 1);
    }

    /// `403 Forbidden` for `verb` (`list`, `watch`) on `resource`.
    pub fn deny(&self, verb: &str, resource: &str) {
        let mut state = self.state.lock().expect("state");
        state.denied.insert((verb.into(), resource.into()));
    }

    /// Successful lists of `resource` so far.
    pub fn lists(&self, resource: &str) -> u64 {
        let state = self.state.lock().expect("state");
        state.lists.get(resource).copied().unwrap_or(0)
    }

    /// Every open watch goes silent with its connection held open (no
    /// events, no bookmarks, no end), as through a half-open connection;
    /// new requests are answered.
    pub fn stall_watches(&self) {
        self.stalls.send_modify(|n| *n += 1);
    }

    /// `true`: the server accepts connections but answers nothing (open
    /// watches go silent too); `false`: held requests are answered.
    pub fn set_silent(&self, silent: bool) {
        if silent {
            self.stall_watches();
        }
        self.silent.send_replace(silent);
    }

    /// Sets a pod's `Ready` condition, as the kubelet does from its
    /// readiness probe.
    pub fn set_pod_ready(&self, name: &str, ready: bool) {
        let mut state = self.state.lock().expect("state");
        let Some(mut pod) = state.objects.get(&(Kind::Pod, name.to_owned())).cloned() else {
            return;
        };
        pod["status"]["conditions"] = json!([{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
        }]);
        put(&mut state, Kind::Pod, name, pod, "MODIFIED");
        self.changes.send_replace(state.rv);
    }

    /// `true`: the server goes away (connections refused, open watches cut);
    /// `false`: it serves again on the same address.
    pub fn set_down(&mut self, down: bool) {
        if down {
            self.cuts.send_modify(|c| *c += 1);
            if let Some(task) = self.serving.take() {
                task.abort();
            }
        } else if self.serving.is_none() {
            let std_listener = std::net::TcpListener::bind(self.addr).expect("rebind the API port");
            std_listener.set_nonblocking(true).expect("nonblocking");
            let listener = TcpListener::from_std(std_listener).expect("listener");
            self.serve(listener);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
        }
    }
}

fn put(state: &mut State, kind: Kind, name: &str, mut object: Value, kind_type: &'static str) {
    state.rv += 1;
    let rv = state.rv;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    if kind_type != "DELETED" {
        state
            .objects
            .insert((kind, name.to_owned()), object.clone());
    }
    state.log.push(Event {
        rv,
        kind,
        kind_type,
        object,
    });
}

/// Minimal percent-decoding of a query value.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => object["metadata"]["labels"][k.trim()] == json!(v.trim()),
        None => false,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

/// What a watch stream listens to.
#[derive(Clone)]
struct Channels {
    changes: watch::Sender<u64>,
    cuts: watch::Sender<u64>,
    stalls: watch::Sender<u64>,
}

fn handle(state: &Arc<Mutex<State>>, channels: &Channels, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect();
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let slices = format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices");
    let kind = if path == pods {
        Kind::Pod
    } else if path == slices {
        Kind::Slice
    } else {
        return status(
            404,
            "NotFound",
            &format!("the simulation does not serve {path}"),
        );
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = if watching { "watch" } else { "list" };
    let resource = kind.resource();
    let mut guard = state.lock().expect("state");
    if guard
        .denied
        .contains(&(verb.to_owned(), resource.to_owned()))
    {
        let group = if kind == Kind::Slice {
            "discovery.k8s.io"
        } else {
            ""
        };
        return status(
            403,
            "Forbidden",
            &format!(
                "{resource} is forbidden: User \"system:serviceaccount:{NAMESPACE}:raftoral\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{NAMESPACE}\""
            ),
        );
    }
    let selector = query.get("labelSelector").cloned();
    if !watching {
        *guard.lists.entry(resource).or_default() += 1;
        let items: Vec<Value> = guard
            .objects
            .iter()
            .filter(|((k, _), o)| *k == kind && matches(o, selector.as_deref()))
            .map(|(_, o)| o.clone())
            .collect();
        let (api_version, list_kind) = kind.list_kind();
        let body = json!({
            "apiVersion": api_version, "kind": list_kind,
            "metadata": {"resourceVersion": guard.rv.to_string()},
            "items": items,
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("response");
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(guard.rv);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    if from < guard.oldest {
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({})", guard.oldest),
            "reason": "Expired", "code": 410}});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(format!("{gone}\n")))
            .expect("response");
    }
    drop(guard);
    let (state, mut changes, mut cuts, mut stalls) = (
        state.clone(),
        channels.changes.subscribe(),
        channels.cuts.subscribe(),
        channels.stalls.subscribe(),
    );
    let stream = async_stream(
        move |tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
            let mut last = from;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut bookmark = tokio::time::interval(Duration::from_millis(500));
            loop {
                let lines: Vec<String> = {
                    let state = state.lock().expect("state");
                    let events: Vec<String> = state
                        .log
                        .iter()
                        .filter(|e| {
                            e.rv > last && e.kind == kind && matches(&e.object, selector.as_deref())
                        })
                        .map(|e| {
                            json!({"type": e.kind_type, "object": e.object}).to_string() + "\n"
                        })
                        .collect();
                    last = state.rv;
                    events
                };
                for line in lines {
                    if tx.send(Ok(Bytes::from(line))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    // A stall comes first: a change made after it must
                    // not slip through.
                    biased;
                    _ = stalls.changed() => {
                        // Silent from now on, the connection held until
                        // the client gives up on it.
                        tx.closed().await;
                        return;
                    }
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = cuts.changed() => {
                        let _ = tx.send(Err(std::io::Error::other("API server going away"))).await;
                        return;
                    }
                    _ = bookmark.tick(), if bookmarks => {
                        let (api_version, _) = kind.list_kind();
                        let kind_name = if kind == Kind::Pod { "Pod" } else { "EndpointSlice" };
                        let line = json!({"type": "BOOKMARK", "object": {
                            "kind": kind_name, "apiVersion": api_version,
                            "metadata": {"resourceVersion": last.to_string()}}}).to_string() + "\n";
                        if tx.send(Ok(Bytes::from(line))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        },
    );
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// A body stream fed by a task through a small channel.
fn async_stream<F, Fut>(
    producer: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The Raft id the sidecar derives from a pod UID (docs/KUBERNETES.md):
/// FNV-1a 64 of the UID, kept to 53 bits, never 0. Tests use it to name
/// nodes; the node reports its own id, so a mismatch fails the test.
pub fn node_id_for_uid(uid: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash & ((1 << 53) - 1)).max(1)
}
