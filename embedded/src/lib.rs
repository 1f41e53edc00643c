//! Embedded mode: the engine and the SDK in one process. The SDK core talks
//! to the node over an in-process channel instead of gRPC, so checkpoint
//! semantics exist once; nodes still talk to each other over gRPC.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raftoral::NodeConfig;
//! use raftoral_embedded::EmbeddedNode;
//! use raftoral_client::{WorkflowError, checkpoint};
//!
//! let node = EmbeddedNode::start(NodeConfig::default(), None).await?;
//! let client = node.client();
//! client.register_workflow("ping_pong", 1).await?;
//! let worker = client.clone();
//! tokio::spawn(async move {
//!     worker.handle_workflows(|req| async move {
//!         let input: String = req.input()?;
//!         let ctx = req.context;
//!         let out: String = checkpoint!(ctx, "result", if input == "ping" { "pong".into() } else { "ping".into() });
//!         Ok::<_, WorkflowError>(serde_json::to_vec(&out)?)
//!     }).await
//! });
//! let answer: String = client.start_workflow("ping_pong", 1, "ping").await?.result().await?;
//! assert_eq!(answer, "pong");
//! node.shutdown().await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use raftoral_client::{RaftoralClient, ResponseStream, SidecarLink, StreamOptions};
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, CompleteAwakeableRequest,
    CompleteAwakeableResponse, GetStatusRequest, GetStatusResponse, GetWorkflowHistoryRequest,
    GetWorkflowHistoryResponse, GetWorkflowRequest, GetWorkflowResponse, ListWorkflowsRequest,
    ListWorkflowsResponse, SignalWithStartRequest, SignalWithStartResponse, SignalWorkflowRequest,
    SignalWorkflowResponse, StartWorkflowRequest, StartWorkflowResponse, WaitWorkflowRequest,
    WaitWorkflowResponse, WorkflowStreamRequest,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use raftoral::{ClientApi, EngineError, Node, NodeConfig, serve_app_stream};

/// The SDK's link to a node in the same process.
pub struct EmbeddedLink {
    node: Node,
    api: ClientApi,
}

impl EmbeddedLink {
    /// A link to `node`.
    pub fn new(node: Node) -> Self {
        Self {
            api: ClientApi::new(node.clone()),
            node,
        }
    }

    /// A node stopped by a storage failure does not come back by itself, so
    /// its calls fail with `INTERNAL` and the reason, not the `UNAVAILABLE`
    /// the SDK would wait out (a sidecar exits and is restarted instead).
    fn check_alive(&self) -> Result<(), Status> {
        match self.node.failure() {
            Some(reason) => Err(Status::internal(
                EngineError::StorageFailed(reason).to_string(),
            )),
            None => Ok(()),
        }
    }

    fn answer<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        result.or_else(|status| {
            self.check_alive()?;
            Err(status)
        })
    }
}

#[tonic::async_trait]
impl SidecarLink for EmbeddedLink {
    async fn open_stream(
        &self,
        requests: mpsc::Receiver<WorkflowStreamRequest>,
    ) -> Result<ResponseStream, Status> {
        self.check_alive()?;
        let inbound = ReceiverStream::new(requests).map(Ok::<_, Infallible>);
        Ok(serve_app_stream(
            self.node.clone(),
            inbound,
            |never| match never {},
        ))
    }

    async fn start_workflow(
        &self,
        request: StartWorkflowRequest,
    ) -> Result<StartWorkflowResponse, Status> {
        self.check_alive()?;
        let result = self.api.start_workflow(request).await;
        self.answer(result)
    }

    async fn get_workflow(
        &self,
        request: GetWorkflowRequest,
    ) -> Result<GetWorkflowResponse, Status> {
        self.check_alive()?;
        let result = self.api.get_workflow(request).await;
        self.answer(result)
    }

    async fn wait_workflow(
        &self,
        request: WaitWorkflowRequest,
    ) -> Result<WaitWorkflowResponse, Status> {
        self.check_alive()?;
        let result = self.api.wait_workflow(request).await;
        self.answer(result)
    }

    async fn cancel_workflow(
        &self,
        request: CancelWorkflowRequest,
    ) -> Result<CancelWorkflowResponse, Status> {
        self.check_alive()?;
        let result = self.api.cancel_workflow(request).await;
        self.answer(result)
    }

    async fn signal_workflow(
        &self,
        request: SignalWorkflowRequest,
    ) -> Result<SignalWorkflowResponse, Status> {
        self.check_alive()?;
        let result = self.api.signal_workflow(request).await;
        self.answer(result)
    }

    async fn signal_with_start(
        &self,
        request: SignalWithStartRequest,
    ) -> Result<SignalWithStartResponse, Status> {
        self.check_alive()?;
        let result = self.api.signal_with_start(request).await;
        self.answer(result)
    }

    async fn complete_awakeable(
        &self,
        request: CompleteAwakeableRequest,
    ) -> Result<CompleteAwakeableResponse, Status> {
        self.check_alive()?;
        let result = self.api.complete_awakeable(request).await;
        self.answer(result)
    }

    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, Status> {
        self.check_alive()?;
        let result = self.api.get_status(request).await;
        self.answer(result)
    }

    async fn list_workflows(
        &self,
        request: ListWorkflowsRequest,
    ) -> Result<ListWorkflowsResponse, Status> {
        self.check_alive()?;
        let result = self.api.list_workflows(request).await;
        self.answer(result)
    }

    async fn get_workflow_history(
        &self,
        request: GetWorkflowHistoryRequest,
    ) -> Result<GetWorkflowHistoryResponse, Status> {
        self.check_alive()?;
        let result = self.api.get_workflow_history(request).await;
        self.answer(result)
    }
}

/// A Raftoral node running inside the application.
pub struct EmbeddedNode {
    node: Node,
    client: RaftoralClient,
    cluster_addr: Option<SocketAddr>,
    server: Option<JoinHandle<()>>,
}

impl EmbeddedNode {
    /// Starts a node with `config` (the same settings as `raftoral serve`).
    /// With `listen`, the node serves node-to-node traffic there (needed for
    /// a cluster; port 0 picks a free port, and an empty `config.advertise`
    /// becomes the bound address). With `config.tls` it serves and dials
    /// mutual TLS (see [`raftoral::consensus::tls`]).
    pub async fn start(
        config: NodeConfig,
        listen: Option<SocketAddr>,
    ) -> Result<EmbeddedNode, EngineError> {
        let listener = match listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| EngineError::Config(format!("cannot listen on {addr}: {e}")))?,
            ),
            None => None,
        };
        Self::start_on(config, listener).await
    }

    /// [`start`](Self::start) without a listener, on a process-wide runtime
    /// of the engine's own (two worker threads named `raftoral-node`),
    /// whichever runtime awaits it. The Raft loop fsyncs on its runtime's
    /// threads; a caller whose own runtime must answer at once (the Python
    /// and Node bindings drive their SDK core on one worker thread, so that
    /// a commit crosses no more threads than it must) keeps those fsyncs
    /// off it this way. [`shutdown`](Self::shutdown) works from any
    /// runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), raftoral::EngineError> {
    /// use raftoral::NodeConfig;
    /// use raftoral_embedded::EmbeddedNode;
    ///
    /// let node = EmbeddedNode::start_on_engine_runtime(NodeConfig::default()).await?;
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start_on_engine_runtime(config: NodeConfig) -> Result<EmbeddedNode, EngineError> {
        engine_runtime()?
            .spawn(Self::start(config, None))
            .await
            .map_err(|e| EngineError::Config(format!("the node's start did not finish: {e}")))?
    }

    /// Like [`start`](Self::start) with a listener bound by the caller: bind
    /// every node's listener first (port 0), then give each node its peers'
    /// real addresses, with no window for another process to take a port.
    pub async fn start_on(
        mut config: NodeConfig,
        listener: Option<TcpListener>,
    ) -> Result<EmbeddedNode, EngineError> {
        let cluster_addr =
            match &listener {
                Some(l) => Some(l.local_addr().map_err(|e| {
                    EngineError::Config(format!("cannot read the bound address: {e}"))
                })?),
                None => None,
            };
        if config.advertise.is_empty()
            && let Some(addr) = cluster_addr
        {
            config.advertise = addr.to_string();
        }
        let node = Node::start(config).await?;
        let server = listener.map(|listener| {
            let (service, mut stop) = (node.cluster_service(), node.shutdown_signal());
            let tls = node.tls().cloned();
            tokio::spawn(async move {
                let router = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(service);
                let stopped = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                // With mutual TLS the handshake (and its refusals) happens in
                // the acceptor; the server sees only authenticated peers.
                let served = match tls {
                    Some(tls) => {
                        router
                            .serve_with_incoming_shutdown(
                                raftoral::consensus::tls::incoming(listener, tls, "node-to-node"),
                                stopped,
                            )
                            .await
                    }
                    None => {
                        router
                            .serve_with_incoming_shutdown(
                                raftoral::consensus::transport::nodelay_incoming(listener),
                                stopped,
                            )
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "node-to-node server failed");
                }
            })
        });
        let client = RaftoralClient::with_link(
            format!("embedded node {}", node.id()),
            Arc::new(EmbeddedLink::new(node.clone())),
            StreamOptions::default(),
        );
        Ok(EmbeddedNode {
            node,
            client,
            cluster_addr,
            server,
        })
    }

    /// The engine node (cluster status, membership, direct calls).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// An SDK client connected in-process: register and run workflows,
    /// start them and wait for results. Clones share the connection.
    pub fn client(&self) -> RaftoralClient {
        self.client.clone()
    }

    /// The bound node-to-node address, when listening.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// Waits until the node stops and returns the storage failure that
    /// stopped it, if one did (`None` after a plain shutdown). The node then
    /// serves nothing: its health probe fails and its calls fail with the
    /// reason. Exit, or start a new node on the same storage path: opening
    /// re-reads the log from the disk, trusting only what an fsync made
    /// durable.
    pub async fn stopped(&self) -> Option<String> {
        self.node.stopped().await
    }

    /// Stops the worker, the node and its server.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
        self.node.shutdown().await;
        if let Some(server) = self.server {
            let _ = server.await;
        }
    }
}

/// The runtime of [`EmbeddedNode::start_on_engine_runtime`], built on
/// first use and kept for the life of the process (a failure to build it,
/// threads the system would not give, is kept too).
fn engine_runtime() -> Result<&'static tokio::runtime::Runtime, EngineError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("raftoral-node")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Config(format!("cannot start the engine's threads: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_storage_failure_stops_the_node_and_the_app_learns_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            storage_path: Some(dir.path().to_path_buf()),
            ..NodeConfig::default()
        };
        let node = EmbeddedNode::start(config, None).await.unwrap();
        let client = node.client();
        client
            .start_workflow("ping_pong", 1, "before")
            .await
            .expect("a healthy node starts workflows");
        node.node().store().fail_next_sync();
        let Err(err) = client.start_workflow("ping_pong", 1, "after").await else {
            panic!("the fsync of this start fails");
        };
        assert!(err.to_string().contains("storage failure"), "{err}");
        assert!(err.to_string().contains("injected fsync failure"), "{err}");
        let reason = tokio::time::timeout(std::time::Duration::from_secs(10), node.stopped())
            .await
            .expect("the node stops")
            .expect("with the storage failure as the reason");
        assert!(reason.contains("fsync"), "{reason}");
        match raftoral::api::probes::health(node.node()) {
            Err(raftoral::api::probes::ProbeFailure::StorageFailed(_)) => {}
            other => panic!("health must report the storage failure: {other:?}"),
        }
        // Every later call fails at once with the reason.
        let err = node
            .node()
            .start_workflow(None, "ping_pong", 1, "\"again\"".into())
            .await
            .expect_err("the node is stopped");
        assert!(matches!(err, EngineError::StorageFailed(_)), "{err}");
        let err = client.get_workflow("anything").await.expect_err("stopped");
        assert!(err.to_string().contains("storage failure"), "{err}");
    }

    #[tokio::test]
    async fn a_graceful_shutdown_leaves_the_commit_index_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            storage_path: Some(dir.path().to_path_buf()),
            ..NodeConfig::default()
        };
        let node = EmbeddedNode::start(config.clone(), None).await.unwrap();
        for i in 0..5 {
            node.node()
                .start_workflow(None, "ping_pong", 1, format!("{i}").into())
                .await
                .unwrap();
        }
        let applied = node.node().raft_status().applied_index;
        let store = node.node().store().clone();
        node.shutdown().await;
        // Read the disk while the store is still open: without the final
        // sync its last commit index would sit in a write buffer.
        let (reopened, _) = raftoral::consensus::storage::RaftStore::open(
            dir.path(),
            config.node_id,
            raft::prelude::ConfState::default(),
            &config.storage,
        )
        .unwrap();
        let commit = raft::Storage::initial_state(&reopened)
            .unwrap()
            .hard_state
            .commit;
        assert_eq!(
            commit, applied,
            "the commit index was not synced at shutdown"
        );
        drop(store);
    }

    /// The bindings start their local node from a runtime with one worker
    /// thread; the node's Raft loop (and its fsyncs) must live elsewhere.
    /// A runtime that is gone runs nothing: the node still answers after
    /// the runtime that started it was dropped.
    #[test]
    fn a_node_on_the_engine_runtime_outlives_the_runtime_that_started_it() {
        let current_thread = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let node = current_thread()
            .block_on(EmbeddedNode::start_on_engine_runtime(NodeConfig::default()))
            .unwrap();
        current_thread().block_on(async {
            let started = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                node.node()
                    .start_workflow(None, "ping_pong", 1, "\"ping\"".into()),
            )
            .await
            .expect("the Raft loop runs on the engine's runtime")
            .unwrap();
            let found = node
                .node()
                .find_workflow(&started.workflow.id)
                .unwrap()
                .expect("the started workflow is known");
            assert_eq!(found.name, "ping_pong");
            node.shutdown().await;
        });
    }
}
