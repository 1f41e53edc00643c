//! Durable timers of a run: a sleep takes a position like a step; the
//! owner commits its start (`TIMER_STARTED`, with the duration), and the
//! position resolves when the Raft leader commits `TIMER_FIRED` for it, on
//! the owner as on every replica, live and in replay alike. Nothing here
//! reads a clock: a sleep that fired before a restart replays at once.

use std::time::Duration;

use raftoral_proto::sidecar::v1::{CheckpointProposal, HistoryEntryKind};

use super::steps::Settled;
use super::{RunHandle, WorkerCore, cancelled, not_running, run_state};
use crate::error::ClientError;

/// The longest a durable timer may run: 366 days (the sidecar's limit).
pub const MAX_TIMER: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// A timer position the workflow code took (with
/// [`WorkerCore::request_timer`]); wait for it with [`WorkerCore::timer`].
/// Taken synchronously, when the code calls sleep, so sleeps and steps
/// started side by side get positions in call order.
#[derive(Debug, Clone)]
pub struct TimerRequest {
    seq: u64,
    name: String,
    duration: Duration,
}

impl TimerRequest {
    /// 0-based position.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl WorkerCore {
    /// Sleeps for `duration`, durably: returns once the timer named `name`
    /// at the run's next position has fired. Longer than [`MAX_TIMER`] is
    /// a usage error (before any position is taken). A position whose
    /// history holds a step is non-determinism; a changed duration is not
    /// (the committed deadline stands).
    pub async fn sleep(
        &self,
        run: &RunHandle,
        name: &str,
        duration: Duration,
    ) -> Result<(), ClientError> {
        let req = self.request_timer(run, name, duration)?;
        self.timer(run, &req).await
    }

    /// Takes the next position for a timer named `name` of `duration`:
    /// the synchronous half of [`sleep`](Self::sleep).
    pub fn request_timer(
        &self,
        run: &RunHandle,
        name: &str,
        duration: Duration,
    ) -> Result<TimerRequest, ClientError> {
        if duration > MAX_TIMER {
            return Err(ClientError::Usage(format!(
                "sleep '{name}' of workflow '{}' is {duration:?}; a durable timer runs at most 366 days: sleep in several steps for longer",
                run.workflow_id
            )));
        }
        let req = self.take_position(run, name, crate::history::Op::Timer)?;
        Ok(TimerRequest {
            seq: req.seq(),
            name: name.to_owned(),
            duration,
        })
    }

    /// Waits for the timer of `req` to fire: proposes its start when this
    /// replica owns the run and the history has none, then waits for the
    /// committed firing, handed out in commit order like a step's value.
    pub async fn timer(&self, run: &RunHandle, req: &TimerRequest) -> Result<(), ClientError> {
        // A replayed timer resolves at once; yield once as a live one
        // does, so branches side by side go on in the same order.
        tokio::task::yield_now().await;
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq: req.seq,
            checkpoint_name: req.name.clone(),
            kind: HistoryEntryKind::TimerStarted as i32,
            attempt: 1,
            timer_duration_ms: req.duration.as_millis() as u64,
            ..CheckpointProposal::default()
        };
        match self.propose(run, proposal).await? {
            Settled::Resolved(_) => Ok(()),
            Settled::AttemptCommitted => Err(ClientError::Usage(format!(
                "timer '{}' of workflow '{}' did not resolve",
                req.name, run.workflow_id
            ))),
        }
    }
}

impl WorkerCore {
    /// Races the operations at positions `seqs` (timers and steps the code
    /// started and awaits together): returns the index of the one resolved
    /// first in commit order, the same on every replica and in every
    /// replay, once its resolution is handed out or is the next to be. The
    /// others are abandoned: their resolutions are skipped, a losing step
    /// runs on to its commit, a losing timer is cancelled by the owner
    /// (`TIMER_CANCELLED`), and so is a losing event wait
    /// (`EVENT_WAIT_CANCELLED`: an event it took goes back to the
    /// workflow).
    ///
    /// It returns only once every losing timer's or wait's resolution (its
    /// cancellation, or a firing, timeout or event that came first) is behind the release
    /// cursor, live as in a replay: branches running beside the race then
    /// see the same resolutions handed out before the code after the race
    /// goes on. The winner's own wait must be running meanwhile (the SDKs
    /// start every raced operation as a task of its own).
    pub async fn first(&self, run: &RunHandle, seqs: &[u64]) -> Result<usize, ClientError> {
        if seqs.is_empty() {
            return Err(ClientError::Usage(
                "first() needs at least one operation".into(),
            ));
        }
        let winner = self
            .wait_run(run, |r| {
                let i = r.history.first_of(seqs)?;
                for (j, seq) in seqs.iter().enumerate() {
                    if j != i {
                        r.history.abandon(*seq);
                    }
                }
                r.changed();
                Some(i)
            })
            .await?;
        for (j, seq) in seqs.iter().enumerate() {
            if j == winner {
                continue;
            }
            self.cancel_timer(run, *seq).await?;
            let is_timer = self
                .lock()
                .runs
                .get(&run.workflow_id)
                .is_some_and(|r| r.timer_positions.contains_key(seq));
            let is_wait = self.lose_wait(run, *seq)?;
            if is_timer || is_wait {
                self.wait_run(run, |r| r.history.passed(*seq).then_some(()))
                    .await?;
            }
        }
        Ok(winner)
    }

    /// Waits until `ready` gives a value, looking again at every change of
    /// the run; a shutdown, a cancel or the run's end stop the wait.
    pub(super) async fn wait_run<T>(
        &self,
        run: &RunHandle,
        mut ready: impl FnMut(&mut super::RunState) -> Option<T>,
    ) -> Result<T, ClientError> {
        let mut changes = run.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let mut state = self.lock();
                let shutting_down = state.shutting_down;
                let r = run_state(&mut state, run)?;
                if shutting_down {
                    return Err(ClientError::Shutdown);
                }
                if let Some(reason) = &r.cancelled {
                    return Err(cancelled(run, reason));
                }
                if let Some(message) = &r.ended {
                    return Err(not_running(run, message));
                }
                if let Some(value) = ready(r) {
                    return Ok(value);
                }
            }
            if changes.changed().await.is_err() {
                return Err(ClientError::Shutdown);
            }
        }
    }

    /// The owner cancels the losing timer at `seq` (nothing for a step, a
    /// timer resolved already, or a replica: a new owner replays the same
    /// `first` and cancels it then).
    async fn cancel_timer(&self, run: &RunHandle, seq: u64) -> Result<(), ClientError> {
        let name = {
            let mut state = self.lock();
            let r = run_state(&mut state, run)?;
            let Some(name) = r.timer_positions.get(&seq).cloned() else {
                return Ok(());
            };
            if r.history.resolution(seq).is_some() || !r.is_owner {
                return Ok(());
            }
            // A start not sent yet is never sent; one in flight may still
            // commit, and the cancel then resolves the position after it.
            if r.pending.get(&seq).is_some_and(|p| !p.sent) {
                r.pending.remove(&seq);
            }
            name
        };
        let proposal = CheckpointProposal {
            workflow_id: run.workflow_id.clone(),
            seq,
            checkpoint_name: name,
            kind: HistoryEntryKind::TimerCancelled as i32,
            attempt: 1,
            ..CheckpointProposal::default()
        };
        // Fired meanwhile or cancelled: either way resolved, and abandoned.
        self.propose(run, proposal).await.map(|_| ())
    }
}
