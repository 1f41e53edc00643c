//! The deterministic helpers of a run: random numbers and UUIDs drawn from
//! the run's seeded generator, and whether the code is replaying (for a
//! logger that prints each line once).

use super::{RunHandle, WorkerCore, run_state};
use crate::error::ClientError;

impl WorkerCore {
    /// A float in `[0, 1)` from the run's generator: the same sequence on
    /// every replica and in every replay, whatever the language.
    pub fn random(&self, run: &RunHandle) -> Result<f64, ClientError> {
        let mut state = self.lock();
        Ok(run_state(&mut state, run)?.random.next_f64())
    }

    /// A version 4 UUID from the run's generator (two draws).
    pub fn uuid(&self, run: &RunHandle) -> Result<String, ClientError> {
        let mut state = self.lock();
        Ok(run_state(&mut state, run)?.random.uuid())
    }

    /// True while the code of `run` repeats what already happened: on a
    /// replica (the owner's code is the one that acts), or while the
    /// history has entries at or past the code's next step position.
    /// A run that is gone counts as replaying (its lines would repeat).
    pub fn is_replaying(&self, run: &RunHandle) -> bool {
        let mut state = self.lock();
        match run_state(&mut state, run) {
            Ok(r) => !r.is_owner || r.history.reaches(r.cursor),
            Err(_) => true,
        }
    }

    /// The position the code's next step takes (0-based): the step a log
    /// line is written before.
    pub fn next_position(&self, run: &RunHandle) -> u64 {
        let mut state = self.lock();
        run_state(&mut state, run).map_or(0, |r| r.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{connected, event, execute};
    use super::super::{Slot, WorkerCore};

    #[tokio::test]
    async fn a_run_replays_until_its_code_passes_the_history_and_only_the_owner_is_live() {
        let (core, _rx) = connected();
        let run = core
            .on_execute(execute("w", true, &[("a", "1"), ("b", "2")]))
            .expect("a new run");
        assert!(core.is_replaying(&run), "entries at position 0 and on");
        for name in ["a", "b"] {
            assert!(matches!(
                core.checkpoint_slot(&run, name).await,
                Ok(Slot::Committed(_))
            ));
            assert!(core.next_position(&run) <= 2);
        }
        assert!(!core.is_replaying(&run), "the code passed the history");
        assert_eq!(core.next_position(&run), 2);
        // A commit of another owner at the next position: replaying again
        // until the code takes it.
        core.on_checkpoint_event(event("w", 2, "c", "3"));
        assert!(core.is_replaying(&run));

        let replica = core
            .on_execute(execute("r", false, &[]))
            .expect("a new run");
        assert!(core.is_replaying(&replica), "a replica never logs");
    }

    #[test]
    fn draws_follow_the_seed_not_the_process() {
        let draws = |core: &WorkerCore, id: &str, seed: u64| {
            let mut req = execute(id, true, &[]);
            req.random_seed = seed;
            let run = core.on_execute(req).expect("a new run");
            (core.random(&run).unwrap(), core.uuid(&run).unwrap())
        };
        let (a, b) = (WorkerCore::new(), WorkerCore::new());
        assert_eq!(
            draws(&a, "x", 7),
            draws(&b, "x", 7),
            "another process, same seed"
        );
        assert_ne!(draws(&a, "y", 8), draws(&b, "y", 9));
    }
}
