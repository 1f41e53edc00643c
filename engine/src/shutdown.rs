//! The node's shutdown signal, watched by every task that must end with it
//! (the Raft loop, app sessions, waiters, snapshot transfers).

use tokio::sync::watch;

/// Resolves once the shutdown signal is (or was) raised. The guard of
/// `wait_for` is dropped here, so callers' futures stay `Send`.
pub(crate) async fn stopped(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}
