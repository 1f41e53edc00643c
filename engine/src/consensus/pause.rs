//! Pause points of background work: where the deterministic simulation
//! may run the Raft loop before a flush, a compaction's files or a
//! snapshot's restore goes on, as the loop does in a process (between two
//! file operations that another thread's could race with). In a process a
//! pause point does nothing; in tests a thread the simulation runs hands
//! it the baton there (`simulation/lanes.rs`).

/// A pause point named `at` (the simulation's trace shows the name).
#[inline]
pub(crate) fn pause_point(_at: &'static str) {
    #[cfg(test)]
    baton::pause(_at);
}

/// The hand-over between the simulator and a thread it runs (tests only).
#[cfg(test)]
pub(crate) mod baton {
    use std::cell::RefCell;
    use std::sync::mpsc::{Receiver, Sender};

    /// What the simulator tells a thread.
    pub(crate) enum Go {
        Run,
        /// The node's process dies: the work in progress stops where it is.
        Abort,
    }

    /// What a thread answers after a slice of its work.
    pub(crate) enum Report {
        /// Nothing was queued.
        Idle,
        /// The work reached a pause point.
        Paused(&'static str),
        Finished,
        Panicked(String),
    }

    /// The unwind payload of aborted work (not a panic of the code).
    pub(crate) struct Aborted;

    struct Baton {
        go: Receiver<Go>,
        report: Sender<Report>,
    }

    thread_local! {
        static BATON: RefCell<Option<Baton>> = const { RefCell::new(None) };
    }

    /// Makes the calling thread one the simulator runs.
    pub(crate) fn install(go: Receiver<Go>, report: Sender<Report>) {
        BATON.with(|b| *b.borrow_mut() = Some(Baton { go, report }));
    }

    /// Waits for the simulator's next word (the thread's own loop).
    pub(crate) fn next() -> Option<Go> {
        BATON.with(|b| b.borrow().as_ref().and_then(|b| b.go.recv().ok()))
    }

    /// At a pause point: on a simulated thread, reports the pause and
    /// waits for the next slice (or unwinds when the process dies);
    /// elsewhere nothing.
    pub(super) fn pause(at: &'static str) {
        let abort = BATON.with(|baton| {
            let baton = baton.borrow();
            let Some(baton) = baton.as_ref() else {
                return false;
            };
            if baton.report.send(Report::Paused(at)).is_err() {
                return true;
            }
            !matches!(baton.go.recv(), Ok(Go::Run))
        });
        if abort {
            std::panic::resume_unwind(Box::new(Aborted));
        }
    }
}
