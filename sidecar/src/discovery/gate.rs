//! The readiness gate of a pod that joined a running cluster.
//!
//! A Deployment's rolling update deletes an old pod as soon as a new one is
//! ready. If old pods went without leaving (killed, force-deleted, their
//! node lost) and their members are not removed yet, every new pod that
//! reports ready lets the controller take down one more voter: the dead
//! share grows until no quorum is left. So a pod that joined reports ready
//! only once it is a voter and, when some voters already have no running
//! pod, one more voter going would still leave a quorum. Once open, the
//! gate stays open: it guards the join, not the pod's whole life (every
//! pod turning unready when one member dies would empty the Service).

use std::sync::{Arc, Mutex};

/// Shared between the reconciler (which updates it) and `/ready`.
#[derive(Clone)]
pub struct JoinGate(Arc<Mutex<Option<String>>>);

impl JoinGate {
    /// A closed gate, for a pod that joins.
    pub fn closed() -> JoinGate {
        JoinGate(Arc::new(Mutex::new(Some(
            "joined the cluster; ready once the leader promoted this node to voter".into(),
        ))))
    }

    /// Ok once open; else why not.
    pub fn check(&self) -> Result<(), String> {
        match &*self.0.lock().expect("gate lock") {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    /// Applies a verdict of [`verdict`]; an open gate stays open.
    pub fn update(&self, verdict: Result<(), String>) {
        let mut gate = self.0.lock().expect("gate lock");
        if gate.is_none() {
            return;
        }
        match verdict {
            Ok(()) => {
                tracing::info!("join gate open: this pod reports ready");
                *gate = None;
            }
            Err(reason) => *gate = Some(reason),
        }
    }
}

/// The gate's rule for node `me` given the voters and which of them have a
/// running pod (`live`; `me` counts as live).
pub fn verdict(me: u64, voters: &[u64], live: impl Fn(u64) -> bool) -> Result<(), String> {
    if !voters.contains(&me) {
        return Err(
            "joined the cluster as a learner; ready once the leader promoted this node to voter"
                .into(),
        );
    }
    let dead: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|v| *v != me && !live(*v))
        .collect();
    let quorum = voters.len() / 2 + 1;
    if !dead.is_empty() && voters.len() - dead.len() - 1 < quorum {
        return Err(format!(
            "voters {dead:?} have no running pod: ready once they are removed, so that one more pod going leaves a quorum ({quorum} of {} voters)",
            voters.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_waits_and_a_voter_waits_while_one_more_loss_would_break_quorum() {
        let all = |_| true;
        assert!(verdict(4, &[1, 2, 3], all).is_err(), "not a voter yet");
        assert!(verdict(4, &[1, 2, 3, 4], all).is_ok(), "nobody dead");
        // 3 + 1 surge, one old pod gone without leaving: a quorum of 4 is 3,
        // one more loss leaves 2.
        let err = verdict(4, &[1, 2, 3, 4], |v| v != 1).expect_err("must wait");
        assert!(err.contains("[1]"), "{err}");
        // 5 voters, one dead: one more loss leaves 3 of 5.
        assert!(verdict(6, &[2, 3, 4, 5, 6], |v| v != 2).is_ok());
        // 5 voters, two dead: not ready.
        assert!(verdict(6, &[2, 3, 4, 5, 6], |v| v > 3).is_err());
        // 2 voters, none dead (a 1-replica Deployment's surge pod): ready;
        // the old pod leaves on SIGTERM.
        assert!(verdict(2, &[1, 2], all).is_ok());
    }

    #[test]
    fn an_open_gate_stays_open() {
        let gate = JoinGate::closed();
        assert!(gate.check().is_err());
        gate.update(Err("x".into()));
        assert_eq!(gate.check(), Err("x".into()));
        gate.update(Ok(()));
        gate.update(Err("later".into()));
        assert_eq!(gate.check(), Ok(()));
    }
}
