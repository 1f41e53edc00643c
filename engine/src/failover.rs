//! Owner failover, decided by the leader: a workflow whose owner node lost
//! Raft contact, or whose owner's app has been away longer than the app
//! timeout, moves to a live node whose app registered it. The move is a
//! `ChangeOwner` command, fenced on the old owner, so a stale decision (say,
//! by a deposed leader) is refused by the state machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raftoral_proto::cluster::v1::{ChangeOwner, SetWorkerPresence, command::Kind};
use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::state_machine::{NodeId, StateMachine, pick};

/// The leader's view of node and app liveness.
pub(crate) struct Failover {
    owner_timeout: Duration,
    app_timeout: Duration,
    /// Last Raft message received from each node (this leader's clock).
    last_heard: HashMap<NodeId, Instant>,
    /// When each node's app was last seen leaving.
    absent_since: HashMap<NodeId, Instant>,
    leader_since: Option<Instant>,
    /// Failovers proposed and not yet visible in the state.
    in_flight: HashMap<String, Instant>,
}

impl Failover {
    pub(crate) fn new(owner_timeout: Duration, app_timeout: Duration) -> Self {
        Self {
            owner_timeout,
            app_timeout,
            last_heard: HashMap::new(),
            absent_since: HashMap::new(),
            leader_since: None,
            in_flight: HashMap::new(),
        }
    }

    /// A Raft message arrived from `node`.
    pub(crate) fn heard(&mut self, node: NodeId) {
        self.last_heard.insert(node, Instant::now());
    }

    /// True when a Raft message from `node` arrived within `window`.
    pub(crate) fn heard_within(&self, node: NodeId, window: Duration) -> bool {
        self.last_heard
            .get(&node)
            .is_some_and(|t| t.elapsed() < window)
    }

    /// A node's app presence changed (applied).
    pub(crate) fn presence(&mut self, node: NodeId, present: bool) {
        if present {
            self.absent_since.remove(&node);
        } else {
            self.absent_since.insert(node, Instant::now());
        }
    }

    /// The owner changes to propose now. Empty unless `me` leads, and for
    /// the first owner timeout of a leadership (peers must first be heard).
    pub(crate) fn check(&mut self, me: NodeId, is_leader: bool, state: &StateMachine) -> Vec<Kind> {
        if !is_leader {
            self.leader_since = None;
            return Vec::new();
        }
        let now = Instant::now();
        let since = *self.leader_since.get_or_insert(now);
        if now.duration_since(since) < self.owner_timeout {
            return Vec::new();
        }
        let timeout = self.owner_timeout;
        self.in_flight
            .retain(|_, at| now.duration_since(*at) < timeout);
        let alive = |n: NodeId| {
            n == me
                || self
                    .last_heard
                    .get(&n)
                    .is_some_and(|t| now.duration_since(*t) < self.owner_timeout)
        };
        let app_gone = |n: NodeId| {
            !state.is_present(n)
                && now.duration_since(*self.absent_since.get(&n).unwrap_or(&since))
                    > self.app_timeout
        };
        let mut changes = Vec::new();
        // A node the leader cannot reach has no usable app either: mark it
        // absent so new workflows are not placed on it. It marks itself
        // present again when it is back (its presence reconciler).
        let mut marked = std::collections::BTreeSet::new();
        for wf_node in state.present_nodes() {
            if !alive(wf_node) && !self.in_flight.contains_key(&absent_key(wf_node)) {
                tracing::info!(node = wf_node, "node unreachable: marking its app absent");
                self.in_flight.insert(absent_key(wf_node), now);
                marked.insert(wf_node);
                changes.push(Kind::SetWorkerPresence(SetWorkerPresence {
                    node_id: wf_node,
                    present: false,
                }));
            }
        }
        for wf in state.workflows() {
            if wf.status != WorkflowStatus::Running || self.in_flight.contains_key(&wf.id) {
                continue;
            }
            let owner = wf.owner;
            let (dead, away) = (!alive(owner), app_gone(owner));
            if !dead && !away {
                continue;
            }
            let candidates: Vec<NodeId> = state
                .registered_nodes(&wf.name, wf.version)
                .into_iter()
                .filter(|n| *n != owner && alive(*n) && state.is_present(*n) && !marked.contains(n))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let to = pick(&candidates, &wf.id);
            tracing::info!(workflow = %wf.id, from = owner, to, owner_node_lost = dead, owner_app_away = away, "failing the workflow over to a new owner");
            self.in_flight.insert(wf.id.clone(), now);
            changes.push(Kind::ChangeOwner(ChangeOwner {
                workflow_id: wf.id.clone(),
                from_node_id: owner,
                to_node_id: to,
            }));
        }
        changes
    }
}

/// In-flight key of an "app absent" decision (workflow ids never start with
/// a NUL byte).
fn absent_key(node: NodeId) -> String {
    format!("\0absent:{node}")
}

#[cfg(test)]
mod tests {
    use raftoral_proto::cluster::v1::{Command, RegisterWorker, StartWorkflow};

    use super::*;

    fn apply(sm: &mut StateMachine, kind: Kind) {
        let (outcome, _) = sm.apply(&Command {
            proposer_node_id: 1,
            proposal_id: 1,
            proposed_at_ms: 1,
            kind: Some(kind),
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    #[test]
    fn a_silent_owner_loses_its_workflows_and_its_presence() {
        let mut sm = StateMachine::new();
        for node in [1, 2, 3] {
            apply(
                &mut sm,
                Kind::RegisterWorker(RegisterWorker {
                    node_id: node,
                    workflow_name: "wf".into(),
                    version: 1,
                }),
            );
            apply(
                &mut sm,
                Kind::SetWorkerPresence(SetWorkerPresence {
                    node_id: node,
                    present: true,
                }),
            );
        }
        apply(
            &mut sm,
            Kind::StartWorkflow(StartWorkflow {
                workflow_id: "a".into(),
                workflow_name: "wf".into(),
                version: 1,
                input: Default::default(),
                origin_node_id: 2,
            }),
        );
        // Zero timeouts: the leader (1) has heard nobody recently, so 2 and 3
        // count as lost; only the leader itself is a live candidate.
        let mut failover = Failover::new(Duration::ZERO, Duration::from_secs(60));
        assert!(
            failover.check(1, false, &sm).is_empty(),
            "only the leader decides"
        );
        let changes = failover.check(1, true, &sm);
        let absent: Vec<u64> = changes
            .iter()
            .filter_map(|k| match k {
                Kind::SetWorkerPresence(p) if !p.present => Some(p.node_id),
                _ => None,
            })
            .collect();
        assert_eq!(absent, vec![2, 3]);
        let moves: Vec<&ChangeOwner> = changes
            .iter()
            .filter_map(|k| match k {
                Kind::ChangeOwner(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from_node_id, moves[0].to_node_id), (2, 1));
    }
}
