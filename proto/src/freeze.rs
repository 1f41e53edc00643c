//! The app stream's freeze rule, kept by both of its ends: noticing that
//! this process was frozen (SIGSTOP, a suspended VM, a
//! debugger) or starved for long enough that what a stream holds may be
//! stale. Used by the SDK's stream and by the sidecar's app sessions (a
//! paused sidecar must not forward events that are old news).
//!
//! While an app is frozen the sidecar counts it as gone after its app
//! timeout and moves its workflows; the messages it had sent before (say,
//! "run this workflow, you own it") still wait in the socket. Acting on them
//! after waking would compute steps another owner has committed meanwhile.
//! So a stream that sees the process was stopped for longer than the limit
//! drops what it holds and reconnects: the sidecar then sends the current
//! state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How often the watch ticks.
const TICK: Duration = Duration::from_millis(100);

/// A task that ticks on its own and the time of its last tick. A gap
/// between ticks, or a last tick too long ago, means the process did not
/// run.
///
/// ```no_run
/// # async fn demo() {
/// let mut watch = raftoral_proto::freeze::FreezeWatch::start(std::time::Duration::from_secs(1));
/// if let Some(stopped) = watch.frozen() {
///     println!("this process did not run for {stopped:?}");
/// }
/// # }
/// ```
pub struct FreezeWatch {
    base: Instant,
    /// Milliseconds from `base` to the last tick.
    last_tick: Arc<AtomicU64>,
    /// Freezes the task has seen (a gap between two of its ticks).
    freezes: Arc<AtomicU64>,
    /// Freezes already reported.
    reported: u64,
    /// The limit in milliseconds, shared with the task (it can change).
    limit_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezeWatch {
    /// Starts watching; a stop longer than `limit` counts as a freeze.
    pub fn start(limit: Duration) -> Self {
        let base = Instant::now();
        let last_tick = Arc::new(AtomicU64::new(0));
        let freezes = Arc::new(AtomicU64::new(0));
        let limit_ms = Arc::new(AtomicU64::new(limit.as_millis() as u64));
        let task = {
            let (last_tick, freezes, limit_ms) =
                (last_tick.clone(), freezes.clone(), limit_ms.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut previous = Instant::now();
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let at = now.duration_since(base).as_millis() as u64;
                    let limit = Duration::from_millis(limit_ms.load(Ordering::Acquire));
                    if now.duration_since(previous) > limit {
                        freezes.fetch_add(1, Ordering::AcqRel);
                    }
                    last_tick.store(at, Ordering::Release);
                    previous = now;
                }
            })
        };
        Self {
            base,
            last_tick,
            freezes,
            reported: 0,
            limit_ms,
            task,
        }
    }

    /// Changes the limit (the sidecar asked for more frequent heartbeats).
    pub fn set_limit(&mut self, limit: Duration) {
        self.limit_ms
            .store(limit.as_millis() as u64, Ordering::Release);
    }

    /// How long the process was stopped, if it was since the last call: the
    /// ticking task saw a gap, or has not ticked for longer than the limit
    /// (the process just woke and this runs before it).
    pub fn frozen(&mut self) -> Option<Duration> {
        let now = Instant::now().duration_since(self.base).as_millis() as u64;
        let last = self.last_tick.load(Ordering::Acquire);
        let since_tick = Duration::from_millis(now.saturating_sub(last));
        let limit = Duration::from_millis(self.limit_ms.load(Ordering::Acquire));
        if since_tick > limit {
            // The task has not run since: when it does, it sees this same
            // gap and counts it; that count is reported here already.
            self.reported += 1;
            return Some(since_tick);
        }
        let freezes = self.freezes.load(Ordering::Acquire);
        if freezes > self.reported {
            self.reported = freezes;
            return Some(limit);
        }
        None
    }
}

impl Drop for FreezeWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A current-thread runtime whose only thread is blocked is exactly a
    // stopped process for the watching task.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stop_longer_than_the_limit_is_seen_once() {
        let mut watch = FreezeWatch::start(Duration::from_millis(500));
        let mut tick = tokio::time::interval(TICK);
        // Delay, not the default burst: after the stop, each tick waits a
        // period, so the watching task runs between them (a burst of missed
        // ticks returned at once and, under load, left it no turn).
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..4 {
            tick.tick().await;
        }
        assert_eq!(watch.frozen(), None, "regular ticks are no freeze");
        std::thread::sleep(Duration::from_millis(1_200));
        let stopped = watch.frozen().expect("a 1.2 s stop is a freeze");
        assert!(stopped >= Duration::from_millis(500), "{stopped:?}");
        for _ in 0..4 {
            tick.tick().await;
        }
        assert_eq!(watch.frozen(), None, "reported once");
    }
}
