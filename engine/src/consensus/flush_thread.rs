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

/// One long-lived thread that runs the jobs given to it in order. Dropping
/// the handle waits for the jobs given so far: a node stopped in a process
/// that starts it again on the same storage (tests, embedded apps) must
/// not find a flush or a compaction's files still being written.
pub(crate) struct FlushThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FlushThread {
    /// Starts the thread.
    pub(crate) fn start() -> FlushThread {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("raftoral-flush".into())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    job();
                }
            })
            .expect("the OS starts a thread");
        FlushThread {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `job` on the thread after the jobs before it.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            // The thread only ends when this handle is gone.
            let _ = jobs.send(Box::new(job));
        }
    }
}

impl Drop for FlushThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("a job of the flush thread panicked");
        }
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

    #[test]
    fn dropping_the_handle_waits_for_the_jobs_given() {
        let thread = FlushThread::start();
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        thread.run(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        started.recv().unwrap();
        let (dropped_tx, dropped) = mpsc::channel();
        let dropper = std::thread::spawn(move || {
            drop(thread);
            dropped_tx.send(()).unwrap();
        });
        // A negative can only be watched for a while: the drop must still
        // be waiting for the held job 200 ms on.
        assert!(
            dropped
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the drop did not wait for the job"
        );
        release.send(()).unwrap();
        dropped.recv().unwrap();
        dropper.join().unwrap();
    }
}
