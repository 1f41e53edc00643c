//! `raftoral serve`: binds the listeners, runs the node and the gRPC servers,
//! and shuts down gracefully on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use futures::FutureExt as _;
use raftoral::Node;
use raftoral_proto::sidecar::v1::{
    app_service_server::AppServiceServer, workflow_service_server::WorkflowServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::app_api::AppApi;
use crate::config::ServeArgs;
use crate::workflow_api::WorkflowApi;

/// Test hook: a file listing peer ids whose traffic this node drops.
const FAULT_FILE_ENV: &str = "RAFTORAL_FAULT_FILE";

/// Room for the protobuf envelope around the largest allowed value.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// Runs the sidecar until a termination signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let sidecar_listener = TcpListener::bind(args.sidecar_listen)
        .await
        .with_context(|| format!("cannot listen on --sidecar-listen {}", args.sidecar_listen))?;
    let raft_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let sidecar_addr = sidecar_listener.local_addr()?;
    let raft_addr = raft_listener.local_addr()?;

    let advertise = args.advertise_for(raft_addr);
    // Kubernetes discovery decides the node id and how it starts before the
    // node exists; it stops with the process (`_stop_discovery` dropped).
    let (_stop_discovery, stop_rx) = tokio::sync::watch::channel(false);
    let mut discovery = None;
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

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AppServiceServer<AppApi>>()
        .await;
    health_reporter
        .set_serving::<WorkflowServiceServer<WorkflowApi>>()
        .await;

    let max_frame = args.max_value_bytes + FRAME_OVERHEAD;
    let app_api = AppServiceServer::new(AppApi::new(node.clone()))
        .max_decoding_message_size(max_frame)
        .max_encoding_message_size(usize::MAX);
    let workflow_api = WorkflowServiceServer::new(WorkflowApi::new(node.clone()))
        .max_decoding_message_size(max_frame)
        .max_encoding_message_size(usize::MAX);

    let mut stop = node.shutdown_signal();
    let signal_node = node.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received; shutting down");
        hand_over_leadership(&signal_node).await;
        // Ends app sessions and waits, so the servers can drain.
        signal_node.shutdown().await;
    });

    let sidecar_server = Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service.clone())
        .add_service(app_api)
        .add_service(workflow_api)
        .serve_with_incoming_shutdown(raftoral::transport::nodelay_incoming(sidecar_listener), {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        });
    // gRPC (node-to-node, grpc.health.v1) and plain HTTP (/health, /ready,
    // /metrics) share the node-to-node port; HTTP/1.1 is accepted for probes.
    let mut grpc_routes = tonic::service::Routes::builder();
    grpc_routes
        .add_service(health_service)
        .add_service(node.cluster_service());
    let routes = grpc_routes
        .routes()
        .into_axum_router()
        .merge(crate::http_api::router(node.clone()))
        .fallback(crate::http_api::fallback);
    let raft_server = Server::builder()
        .tcp_nodelay(true)
        .accept_http1(true)
        .add_routes(routes.into())
        .serve_with_incoming_shutdown(
            raftoral::transport::nodelay_incoming(raft_listener),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        );

    if let Some(path) = &args.addr_file {
        write_addr_file(path, sidecar_addr, raft_addr)?;
    }
    tracing::info!(node = node.id(), sidecar = %sidecar_addr, raft = %raft_addr, %advertise, "raftoral sidecar serving");
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
        tokio::spawn(crate::discovery::reconcile(k8s, node.clone()));
    }

    // Either server ending on its own stops the node: half a sidecar (no
    // app API, or no node-to-node port) must not keep running as if well.
    let essential = |name: &'static str, node: Node| {
        move |result: Result<(), tonic::transport::Error>| {
            if let Err(e) = &result {
                node.stop_with_failure(format!("the {name} server failed: {e}"));
            } else if !node.is_shutting_down() {
                node.stop_with_failure(format!("the {name} server stopped"));
            }
            result
        }
    };
    let (a, b) = tokio::join!(
        sidecar_server.map(essential("app API", node.clone())),
        raft_server.map(essential("node-to-node", node.clone()))
    );
    a.context("app API server failed")?;
    b.context("node-to-node server failed")?;
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

/// Writes `{"sidecar": ..., "raft": ...}` atomically (temp file + rename), so
/// a reader never sees half a file.
fn write_addr_file(path: &Path, sidecar: SocketAddr, raft: SocketAddr) -> anyhow::Result<()> {
    let body = serde_json::json!({ "sidecar": sidecar.to_string(), "raft": raft.to_string() });
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
