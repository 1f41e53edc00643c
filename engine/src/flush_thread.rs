//! The thread that writes the state machine's flushes to its store (and
//! encodes the snapshots wanted after them), at a lower CPU priority than
//! the rest of the node. A flush is background work: on a busy node the
//! Raft loop, the log's fsyncs and the apps' streams come first, and the
//! flush takes what CPU is left (the growth bench measured workflows
//! overlapping a flush at 2.4x the p99 of the others on two cores before).

use std::sync::mpsc;

/// How much nicer than the node the flush thread runs (Linux nice units).
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// One long-lived thread that runs the jobs given to it in order; it ends
/// when this handle is dropped.
pub(crate) struct FlushThread {
    jobs: mpsc::Sender<Job>,
}

impl FlushThread {
    /// Starts the thread.
    pub(crate) fn start() -> FlushThread {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("raftoral-flush".into())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    job();
                }
            })
            .expect("the OS starts a thread");
        FlushThread { jobs }
    }

    /// Runs `job` on the thread after the jobs before it.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        // The thread only ends when this handle is gone.
        let _ = self.jobs.send(Box::new(job));
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a thread id names one thread for setpriority.
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
        tracing::debug!(error = %e, "the flush thread keeps the node's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_a_thread_of_lower_priority() {
        let thread = FlushThread::start();
        let (tx, rx) = mpsc::channel();
        for n in 0..3 {
            let tx = tx.clone();
            thread.run(move || {
                let me = rustix::thread::gettid();
                let nice = rustix::process::getpriority_process(Some(me)).unwrap();
                tx.send((n, nice)).unwrap();
            });
        }
        let base = rustix::process::getpriority_process(None).unwrap();
        let seen: Vec<(i32, i32)> = (0..3).map(|_| rx.recv().unwrap()).collect();
        let expected_nice = (base + NICE).min(19);
        assert_eq!(
            seen,
            [(0, expected_nice), (1, expected_nice), (2, expected_nice)]
        );
    }
}
