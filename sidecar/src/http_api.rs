//! `/health`, `/ready` and `/metrics` over plain HTTP. Without TLS they are
//! served on the node-to-node port next to its gRPC services (as etcd
//! does): reachable from the pod IP for Kubernetes probes and Prometheus,
//! and no extra port to configure. With mutual TLS on that port the kubelet
//! and Prometheus (which present no client certificate) use the plain
//! `--probe-listen` port instead ([`probe_router`]).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use raftoral::Node;
use raftoral::api::probes::{health, readiness};

use crate::discovery::JoinGate;

/// What the probes read: the node, and the join gate of a pod that joined
/// a cluster through Kubernetes discovery.
#[derive(Clone)]
struct Probes {
    node: Node,
    gate: Option<JoinGate>,
}

/// The HTTP routes, for merging into the node-to-node server.
pub fn router(node: Node, gate: Option<JoinGate>) -> Router {
    Router::new()
        .route("/health", get(get_health))
        .route("/ready", get(get_ready))
        .route("/metrics", get(get_metrics))
        .with_state(Probes { node, gate })
}

/// The HTTP routes on a port of their own (`--probe-listen`).
pub fn probe_router(node: Node, gate: Option<JoinGate>) -> Router {
    router(node, gate).fallback(fallback)
}

async fn get_health(State(probes): State<Probes>) -> impl IntoResponse {
    probe(health(&probes.node).map_err(|e| e.to_string()))
}

async fn get_ready(State(probes): State<Probes>) -> impl IntoResponse {
    let ready = readiness(&probes.node).map_err(|e| e.to_string());
    probe(ready.and_then(|()| probes.gate.as_ref().map_or(Ok(()), JoinGate::check)))
}

async fn get_metrics(State(Probes { node, .. }): State<Probes>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        raftoral::api::metrics::render(&node),
    )
}

/// Anything else: gRPC callers get UNIMPLEMENTED as gRPC expects, HTTP
/// callers a 404 naming the endpoints that exist.
pub async fn fallback(request: axum::extract::Request) -> axum::response::Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let message = format!("no gRPC method {} on this port", request.uri().path());
        return tonic::Status::unimplemented(message)
            .into_http::<axum::body::Body>()
            .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        format!(
            "no {} here; this port serves GET /health, /ready and /metrics\n",
            request.uri().path()
        ),
    )
        .into_response()
}

/// 200 "ok", or 503 with the reason (probes log the body).
fn probe(result: Result<(), String>) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}
