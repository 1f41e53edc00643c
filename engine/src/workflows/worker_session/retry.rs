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

/// The first pause between attempts to commit a workflow result, a cancel
/// or a registration: an election is usually over by then.
const FIRST_PAUSE: Duration = Duration::from_millis(20);

/// The longest pause: a cluster without a quorum is asked again at least
/// this often.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The pauses between attempts: doubling from [`FIRST_PAUSE`] up to
/// [`MAX_PAUSE`], so a short election costs little and a long outage is not
/// hammered.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { next: FIRST_PAUSE }
    }

    /// The next pause (each longer than the last, up to the cap).
    pub(super) fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_PAUSE);
        pause
    }
}

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
    let mut backoff = Backoff::new();
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() => {
                on_retry(&e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.pause()) => {}
                    _ = crate::shutdown::stopped(&mut shutdown) => return None,
                }
            }
            settled => return Some(settled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut b = Backoff::new();
        let pauses: Vec<u64> = (0..8).map(|_| b.pause().as_millis() as u64).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
