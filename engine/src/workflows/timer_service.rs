//! The leader's timer service: proposes `FireTimers` for the open timers
//! whose deadline the log's time reached.
//!
//! Only the Raft leader runs it, from the replicated timer table
//! (`state_machine/timers.rs`), so a new leader fires what is overdue at
//! its first check. Firing is a proposal like any other: applying it
//! completes the sleep on the owner and on every replica alike, and a
//! duplicate (a deposed leader's, or one proposed again after a lost
//! entry) is a no-op. "Now" is the later of this node's stamp (its wall
//! clock bounded by elapsed time, `consensus/log_clock.rs`) and the log's
//! time: the entry applies at least at that time, so a timer proposed as
//! due is due when it applies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raftoral_proto::cluster::v1::{FireTimers, command::Kind};

use crate::workflows::state_machine::{StateMachine, TimerSlot};

/// Most timers one `FireTimers` entry fires; a backlog (a leader back
/// after a long outage) goes in entries of this many, one per check.
const MAX_FIRE_BATCH: usize = 1024;

/// A timer proposed and still open this long after is proposed again (the
/// entry was lost with a leader change).
const REFIRE_AFTER: Duration = Duration::from_secs(1);

/// The leader's record of the timers it proposed to fire.
#[derive(Default)]
pub(crate) struct TimerService {
    /// (workflow id, which timer) → when it was proposed.
    proposed: HashMap<(String, TimerSlot), Instant>,
}

impl TimerService {
    /// The `FireTimers` to propose now, if any open timer is due and not
    /// already on its way. `stamp` is this node's proposal stamp now.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        stamp: u64,
        is_leader: bool,
        state: &StateMachine,
    ) -> Option<Kind> {
        if !is_leader {
            self.proposed.clear();
            return None;
        }
        self.proposed
            .retain(|_, at| now.saturating_duration_since(*at) < REFIRE_AFTER);
        let log_now = stamp.max(state.log_time_ms());
        if state.next_timer_ms().is_none_or(|at| at > log_now) {
            return None;
        }
        let mut timers = Vec::new();
        for (_, workflow_id, slot) in
            state.due_timers(log_now, MAX_FIRE_BATCH + self.proposed.len())
        {
            if timers.len() == MAX_FIRE_BATCH {
                break;
            }
            let key = (workflow_id, slot);
            if self.proposed.contains_key(&key) {
                continue;
            }
            timers.push(slot.to_ref(key.0.clone()));
            self.proposed.insert(key, now);
        }
        (!timers.is_empty()).then_some(Kind::FireTimers(FireTimers { timers }))
    }
}
