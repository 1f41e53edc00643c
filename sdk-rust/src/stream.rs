//! The app stream to the sidecar: connect, register, heartbeat, dispatch,
//! reconnect with backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use raftoral_proto::sidecar::v1::{
    HeartbeatRequest, RegisterWorkflowRequest, RegistrationAck, WorkflowStreamRequest,
    workflow_stream_request::Message as AppMsg, workflow_stream_response::Message as SidecarMsg,
};
use tokio::sync::{broadcast, mpsc, watch};

use crate::core::{RunHandle, WorkerCore};
use crate::link::{ResponseStream, SidecarLink};
use raftoral_proto::freeze::FreezeWatch;

/// Timing of the app stream, and what a protected sidecar asks for.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Interval between heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence from the sidecar after which the stream is considered dead.
    pub dead_after: Duration,
    /// First reconnect delay; doubled after each failure.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Largest message accepted from the sidecar.
    pub max_message_bytes: usize,
    /// On shutdown, how long workflow functions may take to unwind (they
    /// return at their next checkpoint); functions stuck in their own code
    /// longer are dropped. Their workflows stay running in the cluster.
    pub shutdown_grace: Duration,
    /// Sent as `authorization: Bearer <token>` on every call, for a sidecar
    /// started with `RAFTORAL_APP_TOKEN`.
    pub token: Option<crate::AppToken>,
    /// TLS to a sidecar whose app API serves TLS (with an `https://` URL).
    pub tls: Option<crate::ClientTls>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            dead_after: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            max_message_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            token: None,
            tls: None,
        }
    }
}

/// Shared between the client and its stream task.
pub(crate) struct StreamShared {
    pub core: Arc<WorkerCore>,
    pub registrations: Mutex<Vec<(String, u32)>>,
    pub acks: broadcast::Sender<RegistrationAck>,
    pub connected: watch::Sender<bool>,
}

/// Runs the stream until `shutdown` turns true, reconnecting as needed.
/// New runs go to `executes`.
pub(crate) async fn run_stream(
    link: Arc<dyn SidecarLink>,
    shared: Arc<StreamShared>,
    executes: mpsc::UnboundedSender<RunHandle>,
    options: StreamOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = options.reconnect_min;
    while !*shutdown.borrow() {
        let (tx, rx) = mpsc::channel::<WorkflowStreamRequest>(4096);
        // Publish the new outbound first, then snapshot the registrations:
        // a concurrent `register_workflow` either sees `connected` and sends
        // its registration itself, or pushed it before this snapshot. Queued
        // messages flow once the stream opens.
        shared.core.on_connect(tx.clone());
        shared.connected.send_replace(true);
        // Registrations go first, so the sidecar re-sends running workflows
        // (with their histories) right after the reconnect.
        let registrations = shared.registrations.lock().expect("lock").clone();
        // Each names the runs this app still holds, so their histories come
        // back only from where they are.
        for (workflow_name, version) in registrations {
            let held_runs = shared.core.held_runs(&workflow_name, version);
            let _ = tx.try_send(WorkflowStreamRequest {
                message: Some(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
                    workflow_name,
                    version,
                    held_runs,
                    protocol_version: crate::core::PROTOCOL_VERSION,
                })),
            });
        }
        let opened = tokio::select! {
            opened = link.open_stream(rx) => opened,
            _ = shutdown.changed() => break,
        };
        match opened {
            Ok(response) => {
                tracing::info!("connected to the Raftoral sidecar");
                delay = options.reconnect_min;
                let ended =
                    read_stream(response, &tx, &shared, &executes, &options, &mut shutdown).await;
                if *shutdown.borrow() {
                    break;
                }
                tracing::warn!(reason = %ended, "sidecar stream ended; reconnecting");
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), retry_in = ?delay, "cannot open the sidecar stream; retrying");
            }
        }
        shared.core.on_disconnect();
        shared.connected.send_replace(false);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
        delay = (delay * 2).min(options.reconnect_max);
    }
    shared.core.on_disconnect();
    shared.connected.send_replace(false);
}

async fn read_stream(
    mut inbound: ResponseStream,
    tx: &mpsc::Sender<WorkflowStreamRequest>,
    shared: &StreamShared,
    executes: &mpsc::UnboundedSender<RunHandle>,
    options: &StreamOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> String {
    let mut every = options.heartbeat_interval;
    let mut heartbeat = tokio::time::interval(every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    let mut freeze = FreezeWatch::start(freeze_limit(every));
    loop {
        tokio::select! {
            message = inbound.next() => {
                let message = match message {
                    Some(Ok(m)) => m,
                    None => return "the sidecar closed the stream".into(),
                    Some(Err(status)) => return format!("{:?}: {}", status.code(), status.message()),
                };
                if let Some(stopped) = freeze.frozen() {
                    shared.core.on_stale();
                    return format!("this process was stopped for about {stopped:?}: what the stream holds may be stale, reconnecting for the current state");
                }
                last_heard = tokio::time::Instant::now();
                let Some(message) = message.message else { continue };
                match message {
                    SidecarMsg::ExecuteWorkflow(req) => {
                        if let Some(run) = shared.core.on_execute(req)
                            && executes.send(run).is_err()
                        {
                            return "the worker stopped".into();
                        }
                    }
                    SidecarMsg::CheckpointEvent(ev) => shared.core.on_checkpoint_event(ev),
                    SidecarMsg::WorkflowCancellation(c) => shared.core.on_cancellation(c),
                    SidecarMsg::OwnershipChange(c) => shared.core.on_ownership_change(c),
                    SidecarMsg::RegistrationAck(ack) => {
                        // The sidecar counts an app silent for its app
                        // timeout as gone: beat at least as often as asked.
                        let asked = Duration::from_millis(ack.heartbeat_interval_ms);
                        if !asked.is_zero() && asked < every {
                            every = asked;
                            heartbeat = tokio::time::interval(every);
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            freeze.set_limit(freeze_limit(every));
                        }
                        shared.core.on_registered(&ack.workflow_name, ack.version);
                        let _ = shared.acks.send(ack);
                    }
                    SidecarMsg::HeartbeatResponse(_) => {}
                    SidecarMsg::Error(e) => {
                        if let Some(e) = shared.core.on_stream_error(e) {
                            tracing::warn!(code = ?e.code(), workflow = %e.workflow_id, message = %e.message, "sidecar reported an error");
                        }
                    }
                }
            }
            _ = heartbeat.tick() => {
                if let Some(stopped) = freeze.frozen() {
                    shared.core.on_stale();
                    return format!("this process was stopped for about {stopped:?}: what the stream holds may be stale, reconnecting for the current state");
                }
                if last_heard.elapsed() > options.dead_after {
                    return format!("no message from the sidecar for {:?}", options.dead_after);
                }
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let _ = tx.try_send(WorkflowStreamRequest {
                    message: Some(AppMsg::Heartbeat(HeartbeatRequest { timestamp })),
                });
            }
            _ = shutdown.changed() => return "shutdown".into(),
        }
    }
}

/// A stop of the process longer than this makes the stream stale: half the
/// sidecar's app timeout (twice the heartbeat interval it asks for, a
/// quarter of that timeout), so the app resyncs before its workflows could
/// have moved (one app timeout of silence, then one more); and at least a
/// second, so scheduling hiccups of a busy machine do not count, unless
/// that would reach the app timeout itself: then three heartbeats. (With a
/// one-second app timeout, a flat one-second floor let a stop just past the
/// timeout go unnoticed, and the woken app ran execute requests for
/// workflows that had moved: hardening.rs saw it once.)
fn freeze_limit(heartbeat_every: Duration) -> Duration {
    (heartbeat_every * 2).max(Duration::from_secs(1).min(heartbeat_every * 3))
}

#[cfg(test)]
mod freeze_limit_tests {
    use super::*;

    #[test]
    fn the_limit_stays_below_the_sidecars_app_timeout() {
        for app_timeout_ms in [400, 1000, 2000, 5000, 30_000] {
            let every = Duration::from_millis(app_timeout_ms / 4);
            let limit = freeze_limit(every);
            assert!(
                limit < Duration::from_millis(app_timeout_ms),
                "{limit:?} for an app timeout of {app_timeout_ms} ms"
            );
            assert!(limit >= every * 2);
        }
        assert_eq!(
            freeze_limit(Duration::from_millis(100)),
            Duration::from_millis(300)
        );
        assert_eq!(
            freeze_limit(Duration::from_millis(400)),
            Duration::from_secs(1)
        );
    }
}
