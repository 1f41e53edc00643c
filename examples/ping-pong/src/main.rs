//! ping_pong: the smallest Raftoral app.
//!
//! It connects to its sidecar (`RAFTORAL_SIDECAR_URL`), registers the
//! `ping_pong` workflow (version 1) and serves `POST /workflow` over HTTP
//! (`PING_PONG_HTTP_LISTEN`): the body ("ping" or "pong", plain or JSON) is the
//! input, the answer is the workflow's result.
//!
//! ```text
//! curl -d ping http://127.0.0.1:8080/workflow   # → pong
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::{Router, extract::State, http::StatusCode, routing::post};
use raftoral_client::{RaftoralClient, WorkflowError, WorkflowRequest, checkpoint};

/// The workflow: one durable step that answers ping with pong (and anything
/// else with ping).
async fn ping_pong(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: String = req.input()?;
    let ctx = req.context;
    let output: String = checkpoint!(ctx, "result", {
        if input == "ping" { "pong" } else { "ping" }.to_string()
    });
    Ok(serde_json::to_vec(&output)?)
}

async fn trigger(State(client): State<RaftoralClient>, body: String) -> (StatusCode, String) {
    // Accept `ping` as well as `"ping"`.
    let input = serde_json::from_str::<String>(&body).unwrap_or_else(|_| body.trim().to_string());
    let started = match client.start_workflow("ping_pong", 1, &input).await {
        Ok(handle) => handle,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    match tokio::time::timeout(Duration::from_secs(30), started.result::<String>()).await {
        Ok(Ok(answer)) => (StatusCode::OK, format!("{answer}\n")),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "workflow {} did not finish within 30s\n",
                started.workflow_id()
            ),
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let sidecar =
        std::env::var("RAFTORAL_SIDECAR_URL").unwrap_or_else(|_| "http://127.0.0.1:9001".into());
    let listen: SocketAddr = std::env::var("PING_PONG_HTTP_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("PING_PONG_HTTP_LISTEN must be HOST:PORT")?;

    let client = RaftoralClient::connect(&sidecar).await?;
    client.register_workflow("ping_pong", 1).await?;
    let worker = {
        let client = client.clone();
        tokio::spawn(async move { client.handle_workflows(ping_pong).await })
    };

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    if let Ok(path) = std::env::var("PING_PONG_ADDR_FILE") {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, bound.to_string())?;
        std::fs::rename(&tmp, &path)?;
    }
    tracing::info!(http = %bound, sidecar = %sidecar, "ping-pong app ready: POST /workflow");
    let app = Router::new()
        .route("/workflow", post(trigger))
        .with_state(client.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    client.shutdown().await;
    worker.await??;
    tracing::info!("ping-pong app stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
