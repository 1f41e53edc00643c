//! `raftoral serve`: binds the listeners, runs the node and the gRPC servers,
//! and shuts down gracefully on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, TryFutureExt as _};
use raftoral::Node;
use raftoral::consensus::tls::Tls;
use raftoral_proto::sidecar::v1::{
    app_service_server::AppServiceServer, workflow_service_server::WorkflowServiceServer,
};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::app_api::AppApi;
use crate::app_auth::TokenCheck;
use crate::config::ServeArgs;
use crate::workflow_api::WorkflowApi;

/// Test hook: a file listing peer ids whose traffic this node drops.
const FAULT_FILE_ENV: &str = "RAFTORAL_FAULT_FILE";

/// Room for the protobuf envelope around the largest allowed value.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// A server run to completion; its error as text.
type Serving = BoxFuture<'static, Result<(), String>>;

/// Runs the sidecar until a termination signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.check_listeners()?;
    let app_tls = match args.app_tls() {
        Some(files) => Some(Tls::load(files).context("cannot use the app API's TLS files")?),
        None => None,
    };
    let sidecar_listener = TcpListener::bind(args.sidecar_listen)
        .await
        .with_context(|| format!("cannot listen on --sidecar-listen {}", args.sidecar_listen))?;
    let raft_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let probe_listener = match args.probe_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --probe-listen {addr}"))?,
        ),
        None => None,
    };
    let sidecar_addr = sidecar_listener.local_addr()?;
    let raft_addr = raft_listener.local_addr()?;
    let probe_addr = probe_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let advertise = args.advertise_for(raft_addr);
    // Kubernetes discovery decides the node id and how it starts before the
    // node exists; it stops with the process (`_stop_discovery` dropped).
    let (_stop_discovery, stop_rx) = tokio::sync::watch::channel(false);
    let mut discovery = None;
    // A pod that joins a running cluster reports ready only once the
    // membership can lose one more pod (discovery/gate.rs).
    let mut join_gate = None;
    let args = if args.discovery.discovery == crate::discovery::Mode::Kubernetes {
        let mut k8s = crate::discovery::Kubernetes::start(&args.discovery, stop_rx).await?;
        let start = tokio::select! {
            start = k8s.plan(&args) => start?,
            _ = wait_for_signal() => {
                tracing::info!("termination signal received before the node started");
                return Ok(());
            }
        };
        let args = crate::discovery::apply(args, k8s.node_id, &start);
        if matches!(start, crate::discovery::Start::Join(_)) {
            join_gate = Some(crate::discovery::JoinGate::closed());
        }
        discovery = Some(k8s);
        args
    } else {
        args
    };
    let config = args.node_config(advertise.clone())?;
    let node = Node::start(config)
        .await
        .context("cannot start the Raft node")?;
    if args.storage_path.is_none() {
        tracing::warn!(
            node = node.id(),
            "no storage path: workflow state lives in memory and is lost when this process stops"
        );
    }
    if node.tls().is_none() && !raft_addr.ip().is_loopback() {
        tracing::warn!(
            listen = %raft_addr,
            "node-to-node port open beyond loopback without TLS: anyone who reaches it can send Raft traffic and change the membership; set RAFTORAL_TLS_CERT, RAFTORAL_TLS_KEY and RAFTORAL_TLS_CA"
        );
    }
    if app_tls.is_none() && !sidecar_addr.ip().is_loopback() {
        tracing::warn!(
            listen = %sidecar_addr,
            "app API open beyond loopback without TLS (--app-insecure): anyone who reaches it can start and cancel workflows"
        );
    }
    if !args.app_authenticated() && !sidecar_addr.ip().is_loopback() {
        tracing::warn!(
            listen = %sidecar_addr,
            "app API open beyond loopback without authentication (--app-unauthenticated): anyone who reaches it can register as a worker, start and cancel workflows; set RAFTORAL_APP_TOKEN or RAFTORAL_APP_TLS_CA"
        );
    }
    if let Some(tls) = &app_tls {
        tls.watch(
            Duration::from_millis(args.tls_reload_ms),
            node.shutdown_signal(),
        );
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AppServiceServer<AppApi>>()
        .await;
    health_reporter
        .set_serving::<WorkflowServiceServer<WorkflowApi>>()
        .await;

    let max_frame = args.max_value_bytes + FRAME_OVERHEAD;
    // The token is checked before a call reaches the services: a refused
    // StartWorkflow starts nothing, a refused stream opens no session.
    let token = TokenCheck::new(args.app_token.as_ref());
    let app_api = InterceptedService::new(
        AppServiceServer::new(AppApi::new(node.clone()))
            .max_decoding_message_size(max_frame)
            .max_encoding_message_size(usize::MAX),
        token.clone(),
    );
    let workflow_api = InterceptedService::new(
        WorkflowServiceServer::new(WorkflowApi::new(node.clone()))
            .max_decoding_message_size(max_frame)
            .max_encoding_message_size(usize::MAX),
        token,
    );

    let stop = node.shutdown_signal();
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let signal_node = node.clone();
    let leave = args.leave_on_stop.then_some(args.leave_timeout);
    let mut deletion = discovery
        .as_ref()
        .map(crate::discovery::Kubernetes::deletion);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received; shutting down");
        hand_over_leadership(&signal_node).await;
        if let Some(timeout) = leave {
            // With Kubernetes discovery only a pod that is deleted leaves;
            // a container restarted in its pod comes back as its member.
            let going = match deletion.as_mut() {
                Some(deletion) => deletion.deleting(LEAVE_WAIT_FOR_DELETION).await,
                None => true,
            };
            if going {
                leave_cluster(&signal_node, timeout).await;
            } else {
                tracing::info!(
                    "this pod is not being deleted (a container restart): staying a member"
                );
            }
        }
        // Ends app sessions and waits, so the servers can drain.
        signal_node.shutdown().await;
    });

    let sidecar_router = Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service.clone())
        .add_service(app_api)
        .add_service(workflow_api);
    let sidecar_server: Serving = match app_tls {
        Some(tls) => sidecar_router
            .serve_with_incoming_shutdown(
                raftoral::consensus::tls::incoming(sidecar_listener, tls, "app API"),
                stopped(),
            )
            .map_err(|e| e.to_string())
            .boxed(),
        None => sidecar_router
            .serve_with_incoming_shutdown(
                raftoral::consensus::transport::nodelay_incoming(sidecar_listener),
                stopped(),
            )
            .map_err(|e| e.to_string())
            .boxed(),
    };
    let mut grpc_routes = tonic::service::Routes::builder();
    grpc_routes
        .add_service(health_service)
        .add_service(node.cluster_service());
    let raft_server: Serving = match node.tls().cloned() {
        // Mutual TLS: gRPC only, and only after the handshake; the probes
        // are on their own plain port (checked above).
        Some(tls) => Server::builder()
            .tcp_nodelay(true)
            .add_routes(grpc_routes.routes())
            .serve_with_incoming_shutdown(
                raftoral::consensus::tls::incoming(raft_listener, tls, "node-to-node"),
                stopped(),
            )
            .map_err(|e| e.to_string())
            .boxed(),
        // Plaintext: gRPC (node-to-node, grpc.health.v1) and plain HTTP
        // (/health, /ready, /metrics) share the port; HTTP/1.1 is accepted
        // for probes.
        None => {
            let routes = grpc_routes
                .routes()
                .into_axum_router()
                .merge(crate::http_api::router(node.clone(), join_gate.clone()))
                .fallback(crate::http_api::fallback);
            Server::builder()
                .tcp_nodelay(true)
                .accept_http1(true)
                .add_routes(routes.into())
                .serve_with_incoming_shutdown(
                    raftoral::consensus::transport::nodelay_incoming(raft_listener),
                    stopped(),
                )
                .map_err(|e| e.to_string())
                .boxed()
        }
    };
    let probe_server: Serving = match probe_listener {
        Some(listener) => axum::serve(
            listener,
            crate::http_api::probe_router(node.clone(), join_gate.clone()),
        )
        .with_graceful_shutdown(stopped())
        .into_future()
        .map_err(|e| e.to_string())
        .boxed(),
        None => futures::future::ok(()).boxed(),
    };

    if let Some(path) = &args.addr_file {
        write_addr_file(path, sidecar_addr, raft_addr, probe_addr)?;
    }
    tracing::info!(node = node.id(), sidecar = %sidecar_addr, raft = %raft_addr, probe = ?probe_addr, %advertise, tls = node.tls().is_some(), "raftoral sidecar serving");
    if let Ok(path) = std::env::var(FAULT_FILE_ENV) {
        crate::faults::watch_fault_file(node.clone(), path.into());
    }
    if let Some(seed) = &args.join {
        let (node, seed, advertise) = (node.clone(), seed.clone(), advertise.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::join::join_cluster(&node, &seed, &advertise).await {
                // Exits non-zero (below): a node that never joined is no
                // member and must not look like a clean stop.
                node.stop_with_failure(format!("could not join the cluster: {e:#}"));
                node.shutdown().await;
            }
        });
    }

    if let Some(k8s) = discovery {
        tokio::spawn(crate::discovery::reconcile(k8s, node.clone(), join_gate));
    }

    // Any server ending on its own stops the node: half a sidecar (no app
    // API, no node-to-node port, no probes) must not keep running as if
    // well.
    let essential = |name: &'static str, node: Node| {
        move |result: Result<(), String>| {
            if let Err(e) = &result {
                node.stop_with_failure(format!("the {name} server failed: {e}"));
            } else if !node.is_shutting_down() {
                node.stop_with_failure(format!("the {name} server stopped"));
            }
            result
        }
    };
    let probes_on_own_port = args.probe_listen.is_some();
    let probe_node = node.clone();
    let (a, b, c) = tokio::join!(
        sidecar_server.map(essential("app API", node.clone())),
        raft_server.map(essential("node-to-node", node.clone())),
        async move {
            let result = probe_server.await;
            if probes_on_own_port {
                essential("probe", probe_node)(result)
            } else {
                result
            }
        }
    );
    a.map_err(anyhow::Error::msg)
        .context("app API server failed")?;
    b.map_err(anyhow::Error::msg)
        .context("node-to-node server failed")?;
    c.map_err(anyhow::Error::msg)
        .context("probe server failed")?;
    node.shutdown().await;
    if let Some(failure) = node.failure() {
        bail!("{failure}");
    }
    tracing::info!("raftoral sidecar stopped");
    Ok(())
}

/// A leader that stops on purpose hands leadership to its most caught-up
/// follower first: the cluster then goes on at once instead of waiting out an
/// election timeout (a rolling restart costs no election). Best effort: on
/// failure the others elect a leader as after a crash.
async fn hand_over_leadership(node: &Node) {
    let status = node.raft_status();
    if !status.is_leader || status.voters.len() < 2 {
        return;
    }
    let timeout = node.config().election_timeout() * 2;
    match node.transfer_leadership(None, timeout).await {
        Ok(to) => tracing::info!(to, "leadership handed over before stopping"),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand over leadership before stopping; the others will elect a leader")
        }
    }
}

/// How long a SIGTERM waits for discovery to show this pod's deletion.
const LEAVE_WAIT_FOR_DELETION: Duration = Duration::from_secs(3);

/// A node that stops for good leaves its cluster first (`--leave-on-stop`):
/// the members left then need no dead one removed to keep a quorum, so a
/// rolling update replacing every pod at a controller's speed never
/// piles up dead voters. Bounded by `timeout`; on failure it stops anyway
/// and the leader removes it when its pod is deleted.
async fn leave_cluster(node: &Node, timeout: Duration) {
    let status = node.raft_status();
    let me = node.id();
    let members = status.voters.len() + status.learners.len();
    if members < 2 || !(status.voters.contains(&me) || status.learners.contains(&me)) {
        return;
    }
    match tokio::time::timeout(timeout, node.leave()).await {
        Ok(Ok(members)) => {
            let ids: Vec<u64> = members.iter().map(|m| m.node_id).collect();
            tracing::info!(members = ?ids, "left the cluster before stopping");
        }
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => tracing::info!(
            reason = status.message(),
            "asked to leave the cluster; the removal may have applied without this node seeing it"
        ),
        Ok(Err(status)) => tracing::warn!(
            reason = status.message(),
            "could not leave the cluster before stopping; the leader removes this member once its pod is gone"
        ),
        Err(_) => tracing::warn!(
            ?timeout,
            "leaving the cluster took too long; stopping anyway"
        ),
    }
}

/// Writes `{"sidecar": ..., "raft": ..., "probe": ...}` atomically (temp file + rename), so
/// a reader never sees half a file.
fn write_addr_file(
    path: &Path,
    sidecar: SocketAddr,
    raft: SocketAddr,
    probe: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "sidecar": sidecar.to_string(), "raft": raft.to_string() });
    if let Some(probe) = probe {
        body["probe"] = probe.to_string().into();
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())
        .with_context(|| format!("cannot write --addr-file {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write --addr-file {}", path.display()))?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
