//! Retention: which finished workflows are old enough to drop, and the
//! `PurgeFinished` command that drops them (from memory and the store).
//! Times are log times, never a node's clock.

use raftoral_proto::cluster::v1::PurgeFinished;

use super::{Applied, StateMachine};

impl StateMachine {
    /// Last-change time of the oldest finished workflow still kept.
    pub fn oldest_finished_ms(&self) -> Option<u64> {
        let memory = self.finished_at.first().map(|(at, _)| *at);
        let archived = match self.archive.oldest_from(self.purged_before_ms) {
            Ok(at) => at,
            Err(e) => {
                self.archive_failed(e);
                None
            }
        };
        memory.into_iter().chain(archived).min()
    }

    /// The cut-off for the next retention purge: `wanted`, or earlier so
    /// that the purge removes about `max` workflows at most (more only
    /// when more than `max` finished in the same millisecond). Applying a
    /// purge walks what it removes on every node's Raft loop, so a backlog
    /// (retention just enabled over millions of finished workflows) goes in
    /// bounded chunks, one log entry each, instead of one stall longer than
    /// an election timeout.
    pub fn purge_cutoff(&self, wanted: u64, max: usize) -> u64 {
        let mut times: Vec<u64> = self
            .finished_at
            .iter()
            .take(max + 1)
            .map(|(at, _)| *at)
            .collect();
        match self
            .archive
            .oldest_times_from(self.purged_before_ms, max + 1)
        {
            Ok(archived) => times.extend(archived),
            Err(e) => self.archive_failed(e),
        }
        times.sort_unstable();
        let (Some(&oldest), Some(&newest)) = (times.first(), times.last()) else {
            return wanted;
        };
        let Some(&bound) = times.get(max) else {
            // All of them fit: no further than the newest seen, or
            // workflows finishing before the purge applies (with times
            // behind a leader clock far ahead) would join it unbounded.
            return wanted.min(newest + 1);
        };
        // Everything older than `bound` is at most `max` workflows; when
        // they all share the oldest time, take that millisecond whole.
        let bound = if bound == oldest { oldest + 1 } else { bound };
        wanted.min(bound)
    }

    /// Finished workflows older than this were removed by the retention
    /// period; 0 when none ever was.
    pub fn purged_before_ms(&self) -> u64 {
        self.purged_before_ms
    }

    /// Removes the finished workflows older than the command's cut-off,
    /// clamped to the log's time `now`: a purge never reaches past what
    /// the log has seen (a leader's clock ahead of the log), so every
    /// workflow that finishes after it records a time at or past its
    /// cut-off, and the same filter holds in memory and in the store.
    pub(super) fn purge_finished(&mut self, c: &PurgeFinished, now: u64) -> Applied {
        let cutoff = c.finished_before_ms.min(now);
        if cutoff < c.finished_before_ms {
            tracing::warn!(
                asked = c.finished_before_ms,
                log_time = now,
                "retention purge ahead of the log's time clamped to it"
            );
        }
        // Archived ones first, those not also in memory (a flush in
        // flight): memory's are counted below.
        let archived = self
            .archive
            .finished_between(self.purged_before_ms, cutoff)
            .unwrap_or_else(|e| {
                self.archive_failed(e);
                Vec::new()
            });
        let mut count = 0;
        for (id, status) in archived {
            if !self.workflows.contains_key(&id) {
                if let Some(n) = self.finished.get_mut(&status) {
                    *n = n.saturating_sub(1);
                }
                count += 1;
            }
        }
        #[cfg(test)]
        let archived_times = self
            .archive
            .oldest_times_from(self.purged_before_ms, usize::MAX)
            .unwrap_or_default();
        let keep = self.finished_at.split_off(&(cutoff, String::new()));
        let purged = std::mem::replace(&mut self.finished_at, keep);
        #[cfg(test)]
        {
            let times: std::collections::BTreeSet<u64> = purged
                .iter()
                .map(|(at, _)| *at)
                .chain(archived_times.into_iter().filter(|at| *at < cutoff))
                .collect();
            self.purges.push((count + purged.len() as u64, times.len()));
        }
        for (_, id) in &purged {
            if let Some(wf) = self.workflows.remove(id)
                && let Some(n) = self.finished.get_mut(&(wf.status as i32))
            {
                *n = n.saturating_sub(1);
            }
        }
        self.purged_before_ms = self.purged_before_ms.max(cutoff);
        Applied::Purged(count + purged.len() as u64)
    }
}
