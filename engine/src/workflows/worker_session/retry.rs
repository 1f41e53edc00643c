//! Proposals a session must not lose: an app reports a result once and
//! forgets the run, and a cancel for an app that predates requests has no
//! one else to make it. They are proposed again through elections and lost
//! forwards, with a pause between tries (a real backoff: no leader is
//! there to answer sooner), until committed, refused for good, or the node
//! shuts down.

use std::future::Future;
use std::time::Duration;

use crate::error::EngineError;
use crate::node::Node;

/// Pause between attempts to commit a workflow result, a cancel or a
/// registration.
pub(super) const RESULT_RETRY: Duration = Duration::from_millis(100);

/// Calls `attempt` until its outcome is not a retryable error, calling
/// `on_retry` with each retryable one before the pause. `None` when the
/// node shut down meanwhile.
pub(super) async fn until_settled<T, F, Fut>(
    node: &Node,
    mut attempt: F,
    mut on_retry: impl FnMut(&EngineError),
) -> Option<Result<T, EngineError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut shutdown = node.shutdown_signal();
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() => {
                on_retry(&e);
                tokio::select! {
                    _ = tokio::time::sleep(RESULT_RETRY) => {}
                    _ = crate::shutdown::stopped(&mut shutdown) => return None,
                }
            }
            settled => return Some(settled),
        }
    }
}
