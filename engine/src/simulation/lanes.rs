//! Background work that interleaves with the Raft loop, deterministically.
//!
//! In a process the flush thread and the snapshot receivers run beside the
//! Raft loop, and their file operations interleave with the loop's (an
//! install deletes old files while a flush writes one). A job run whole
//! between two loop steps can never meet those races, so a lane runs its
//! jobs on a thread of their own that only moves when the simulator hands
//! it the baton: to the job's next pause point
//! ([`crate::consensus::pause::pause_point`]) or its end, while the
//! simulator's thread waits. One thread runs at a time, so a seed replays
//! exactly; which loop steps come between two slices is the seed's choice.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use crate::consensus::environment::Jobs;
use crate::consensus::pause::baton::{self, Aborted, Go, Report};

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// What a slice of a lane did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Slice {
    Idle,
    Paused(&'static str),
    Finished,
}

/// One background thread of a node (the flush thread, a receiver), whose
/// jobs run in order, a slice at a time.
pub(super) struct Lane {
    queue: Arc<Mutex<VecDeque<Job>>>,
    go: Sender<Go>,
    report: Receiver<Report>,
    /// A job stopped at a pause point.
    busy: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lane {
    pub(super) fn start(name: &str) -> Lane {
        let queue: Arc<Mutex<VecDeque<Job>>> = Arc::default();
        let (go, go_rx) = channel();
        let (report_tx, report) = channel();
        let jobs = queue.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                baton::install(go_rx, report_tx.clone());
                loop {
                    if !matches!(baton::next(), Some(Go::Run)) {
                        return;
                    }
                    let job = jobs.lock().expect("lane queue").pop_front();
                    let Some(job) = job else {
                        let _ = report_tx.send(Report::Idle);
                        continue;
                    };
                    match std::panic::catch_unwind(AssertUnwindSafe(job)) {
                        Ok(()) => {
                            let _ = report_tx.send(Report::Finished);
                        }
                        Err(payload) if payload.is::<Aborted>() => return,
                        Err(payload) => {
                            let message = payload
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "(no message)".into());
                            let _ = report_tx.send(Report::Panicked(message));
                            return;
                        }
                    }
                }
            })
            .expect("the OS starts a thread");
        Lane {
            queue,
            go,
            report,
            busy: false,
            thread: Some(thread),
        }
    }

    /// A handle that queues jobs on this lane (the loop's flush thread).
    pub(super) fn jobs(&self) -> Box<dyn Jobs> {
        Box::new(LaneJobs {
            queue: self.queue.clone(),
        })
    }

    /// Queues `job` after the others.
    pub(super) fn push(&self, job: Job) {
        self.queue.lock().expect("lane queue").push_back(job);
    }

    /// A job is under way or queued.
    pub(super) fn has_work(&self) -> bool {
        self.busy || !self.queue.lock().expect("lane queue").is_empty()
    }

    /// Runs the job under way (or the next one) to its next pause point or
    /// its end, and waits for it. A panic in the job is an error.
    pub(super) fn slice(&mut self) -> Result<Slice, String> {
        if self.go.send(Go::Run).is_err() {
            return Err("a lane's thread is gone".into());
        }
        let report = self
            .report
            .recv()
            .map_err(|_| "a lane's thread is gone".to_string())?;
        let slice = match report {
            Report::Idle => Slice::Idle,
            Report::Paused(at) => Slice::Paused(at),
            Report::Finished => Slice::Finished,
            Report::Panicked(message) => {
                return Err(format!("a background job panicked: {message}"));
            }
        };
        self.busy = matches!(slice, Slice::Paused(_));
        Ok(slice)
    }
}

impl Drop for Lane {
    /// The process dies: a job at a pause point stops there (what it
    /// wrote stays on disk), queued ones never run. Waits for the thread,
    /// so nothing of the old process touches the directory after.
    fn drop(&mut self) {
        let _ = self.go.send(Go::Abort);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct LaneJobs {
    queue: Arc<Mutex<VecDeque<Job>>>,
}

impl Jobs for LaneJobs {
    fn run(&self, job: Job) {
        self.queue.lock().expect("lane queue").push_back(job);
    }
}
