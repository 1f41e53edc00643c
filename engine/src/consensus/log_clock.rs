//! The stamps a node puts on its proposals: its wall clock, bounded by the
//! time that really passed.
//!
//! The log's time is the highest stamp applied (`StateMachine::
//! advance_log_time`), and durable timers fire when it reaches their
//! deadline. A stamp taken from the wall clock alone would let one node
//! whose clock jumps an hour ahead move the log's time an hour ahead for
//! everyone, and fire every timer due within that hour at once. So a node
//! stamps `min(wall clock, bound)`, where the bound is a base time plus
//! what its monotonic clock measured since then:
//!
//! - The base is taken once, when the process starts: the wall clock then
//!   (or the log's time restored from disk, when that is later). A monotonic
//!   clock does not span a restart, so a restart trusts the wall clock once;
//!   a whole cluster that was down ten seconds must not fire ten seconds
//!   late.
//! - Applying an entry whose log time is past the bound moves the base up to
//!   it (another node's clock was ahead of ours, within its own bound): the
//!   log's time never runs backwards, and neither does a stamp.
//! - No slack is added anywhere: re-anchoring happens only on a larger log
//!   time, never per commit, so the bound cannot creep ahead commit by
//!   commit.
//!
//! - A wall clock behind the log's time this node has seen is certainly
//!   wrong (the log's time never runs ahead of true time by more than a
//!   clock was ahead at its start): the node then stamps the bound alone,
//!   so a leader whose clock jumped back still moves the log's time on and
//!   fires timers on time.
//!
//! A clock jumped ahead after the start therefore changes nothing, and one
//! jumped behind the cluster's time is not used. docs/ARCHITECTURE.md
//! ("Time and durable timers") states the rule.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::environment::Clock;

/// A node's stamps (see the module docs).
pub(crate) struct LogClock {
    clock: Arc<dyn Clock>,
    /// (base, when): the bound is `base + (now - when)`; and the highest
    /// log time applied here.
    anchor: Mutex<Anchor>,
}

struct Anchor {
    base: u64,
    when: Instant,
    seen: u64,
}

impl LogClock {
    /// A clock for a process that starts now, with `log_time_ms` the log's
    /// time it restored (0 for a new node).
    pub(crate) fn new(clock: Arc<dyn Clock>, log_time_ms: u64) -> Self {
        let base = clock.now_ms().max(log_time_ms);
        let when = clock.now();
        LogClock {
            clock,
            anchor: Mutex::new(Anchor {
                base,
                when,
                seen: log_time_ms,
            }),
        }
    }

    /// The stamp of a proposal made now: never ahead of the wall clock nor
    /// of the time elapsed on the monotonic clock since the base; the bound
    /// alone when the wall clock is behind the log's time seen here.
    pub(crate) fn stamp(&self) -> u64 {
        let wall = self.clock.now_ms();
        let now = self.clock.now();
        let anchor = self.anchor.lock().expect("log clock lock");
        let bound = anchor.bound_at(now);
        if wall < anchor.seen {
            bound
        } else {
            wall.min(bound)
        }
    }

    /// An entry applied here put the log's time at `log_time_ms`.
    pub(crate) fn observe(&self, log_time_ms: u64) {
        let now = self.clock.now();
        let mut anchor = self.anchor.lock().expect("log clock lock");
        anchor.seen = anchor.seen.max(log_time_ms);
        if log_time_ms > anchor.bound_at(now) {
            anchor.base = log_time_ms;
            anchor.when = now;
        }
    }
}

impl Anchor {
    fn bound_at(&self, now: Instant) -> u64 {
        self.base
            .saturating_add(now.saturating_duration_since(self.when).as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    /// A clock whose wall time and monotonic time the test moves.
    struct TestClock {
        start: Instant,
        wall_ms: AtomicI64,
        elapsed_ms: AtomicI64,
    }

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.wall_ms.load(Ordering::SeqCst) as u64
        }
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst) as u64)
        }
    }

    fn clock(wall_ms: i64) -> Arc<TestClock> {
        Arc::new(TestClock {
            start: Instant::now(),
            wall_ms: AtomicI64::new(wall_ms),
            elapsed_ms: AtomicI64::new(0),
        })
    }

    fn pass(c: &TestClock, ms: i64) {
        c.wall_ms.fetch_add(ms, Ordering::SeqCst);
        c.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }

    #[test]
    fn a_correct_clock_stamps_its_wall_time() {
        let c = clock(1_000_000);
        let stamps = LogClock::new(c.clone(), 0);
        pass(&c, 250);
        assert_eq!(stamps.stamp(), 1_000_250);
    }

    #[test]
    fn a_clock_jumped_an_hour_ahead_stamps_only_the_time_that_passed() {
        let c = clock(1_000_000);
        let stamps = LogClock::new(c.clone(), 0);
        pass(&c, 100);
        c.wall_ms.fetch_add(3_600_000, Ordering::SeqCst);
        assert_eq!(stamps.stamp(), 1_000_100);
        pass(&c, 400);
        assert_eq!(stamps.stamp(), 1_000_500);
    }

    #[test]
    fn a_clock_behind_stamps_its_own_time_and_the_log_lifts_the_bound() {
        let c = clock(1_000_000);
        let stamps = LogClock::new(c.clone(), 0);
        c.wall_ms.fetch_sub(60_000, Ordering::SeqCst);
        assert_eq!(stamps.stamp(), 940_000, "behind: its own (late) time");
        c.wall_ms.fetch_add(120_000, Ordering::SeqCst);
        assert_eq!(stamps.stamp(), 1_000_000, "ahead again: the bound");
        // Another node's entry says the log is at 1_030_000.
        stamps.observe(1_030_000);
        assert_eq!(stamps.stamp(), 1_030_000);
        stamps.observe(1_010_000);
        assert_eq!(stamps.stamp(), 1_030_000, "an older log time moves nothing");
    }

    #[test]
    fn a_clock_jumped_behind_the_log_time_seen_stamps_the_bound() {
        let c = clock(1_000_000);
        let stamps = LogClock::new(c.clone(), 0);
        pass(&c, 100);
        stamps.observe(1_000_100);
        c.wall_ms.fetch_sub(60_000, Ordering::SeqCst);
        assert_eq!(stamps.stamp(), 1_000_100, "not the wall clock's 940_100");
        pass(&c, 400);
        assert_eq!(
            stamps.stamp(),
            1_000_500,
            "time goes on at the monotonic rate"
        );
    }

    #[test]
    fn many_commits_do_not_let_the_bound_creep_ahead() {
        let c = clock(1_000_000);
        let stamps = LogClock::new(c.clone(), 0);
        c.wall_ms.fetch_add(3_600_000, Ordering::SeqCst);
        for _ in 0..1000 {
            let s = stamps.stamp();
            pass(&c, 1);
            stamps.observe(s);
        }
        assert_eq!(stamps.stamp(), 1_001_000);
    }

    #[test]
    fn a_restart_trusts_the_wall_clock_once_or_the_restored_log_time() {
        let c = clock(2_000_000);
        assert_eq!(LogClock::new(c.clone(), 1_500_000).stamp(), 2_000_000);
        // A wall clock behind the restored log time: time goes on from the
        // log's, at the monotonic rate.
        let behind = LogClock::new(c.clone(), 2_500_000);
        pass(&c, 10);
        assert_eq!(behind.stamp(), 2_500_010);
    }
}
