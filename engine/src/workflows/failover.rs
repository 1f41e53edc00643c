//! Owner failover, decided by the leader: a workflow whose owner node lost
//! Raft contact, or whose owner's app has been away longer than the app
//! timeout, moves to a live node whose app registered it. The move is a
//! `ChangeOwner` command, fenced on the old owner, so a stale decision (say,
//! by a deposed leader) is refused by the state machine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use raftoral_proto::cluster::v1::{ChangeOwner, SetWorkerPresence, command::Kind};
use raftoral_proto::sidecar::v1::WorkflowStatus;

use crate::workflows::state_machine::{NodeId, StateMachine, WorkflowType, pick};

/// The leader's view of node and app liveness.
pub(crate) struct Failover {
    owner_timeout: Duration,
    app_timeout: Duration,
    /// Last Raft message received from each node (this leader's clock).
    last_heard: HashMap<NodeId, Instant>,
    /// Nodes whose process is known to be gone (their port refused a
    /// connection) and that were not heard from since.
    down: HashSet<NodeId>,
    /// When this leader first saw an owner's app unable to run a type it
    /// owns workflows of.
    away_since: HashMap<(NodeId, WorkflowType), Instant>,
    leader_since: Option<Instant>,
    /// When the last check ran: a long gap means this loop stalled.
    last_check: Option<Instant>,
    /// Failovers proposed and not yet visible in the state.
    in_flight: HashMap<String, Instant>,
}

impl Failover {
    pub(crate) fn new(owner_timeout: Duration, app_timeout: Duration) -> Self {
        Self {
            owner_timeout,
            app_timeout,
            last_heard: HashMap::new(),
            down: HashSet::new(),
            away_since: HashMap::new(),
            leader_since: None,
            last_check: None,
            in_flight: HashMap::new(),
        }
    }

    /// A Raft message arrived from `node` at `now`.
    pub(crate) fn heard(&mut self, node: NodeId, now: Instant) {
        self.last_heard.insert(node, now);
        self.down.remove(&node);
    }

    /// True when a Raft message from `node` arrived within `window` before
    /// `now`.
    pub(crate) fn heard_within(&self, node: NodeId, window: Duration, now: Instant) -> bool {
        self.last_heard
            .get(&node)
            .is_some_and(|t| now.saturating_duration_since(*t) < window)
    }

    /// True when `node`'s process is known to be gone (see [`Self::down`])
    /// and it was not heard from since.
    pub(crate) fn is_down(&self, node: NodeId) -> bool {
        self.down.contains(&node)
    }

    /// `node`'s process is gone: its connection closed and its port refuses
    /// new ones. Unlike silence (a paused or slow node keeps its workflows
    /// for the owner timeout), this is certain, so it acts at once.
    pub(crate) fn down(&mut self, node: NodeId) {
        if self.down.insert(node) {
            tracing::info!(node, "node is down (connection refused)");
        }
    }

    /// The owner changes to propose now. Empty unless `me` leads. For the
    /// first owner timeout of a leadership only nodes known to be down count
    /// as lost (silence means nothing before peers could be heard).
    pub(crate) fn check(
        &mut self,
        now: Instant,
        me: NodeId,
        is_leader: bool,
        state: &StateMachine,
    ) -> Vec<Kind> {
        let previous = self.last_check.replace(now);
        if !is_leader {
            self.leader_since = None;
            self.away_since.clear();
            return Vec::new();
        }
        // A loop that stalled (a long fsync, a paused process) has not
        // processed the messages that arrived meanwhile: peers look silent
        // only because this node did not listen. Start over as a new leader
        // would, instead of failing every workflow over.
        if previous.is_some_and(|p| now.duration_since(p) > self.owner_timeout / 2) {
            tracing::info!(stalled_for = ?now.duration_since(previous.unwrap_or(now)), "the Raft loop stalled; failover waits for peers to be heard again");
            self.leader_since = Some(now);
            self.away_since.clear();
        }
        let since = *self.leader_since.get_or_insert(now);
        let settled = now.duration_since(since) >= self.owner_timeout;
        let timeout = self.owner_timeout;
        self.in_flight
            .retain(|_, at| now.duration_since(*at) < timeout);
        let alive = |n: NodeId| {
            n == me
                || !self.down.contains(&n)
                    && (!settled
                        || self
                            .last_heard
                            .get(&n)
                            .is_some_and(|t| now.duration_since(*t) < self.owner_timeout))
        };
        let mut changes = Vec::new();
        // A node the leader cannot reach has no usable app either: mark it
        // absent so new workflows are not placed on it. It marks itself
        // present again when it is back (its presence reconciler).
        let mut marked = BTreeSet::new();
        for node in state.present_nodes() {
            if !alive(node) && !self.in_flight.contains_key(&absent_key(node)) {
                tracing::info!(node, "node unreachable: marking its app absent");
                self.in_flight.insert(absent_key(node), now);
                marked.insert(node);
                changes.push(Kind::SetWorkerPresence(SetWorkerPresence {
                    node_id: node,
                    present: false,
                    live: Vec::new(),
                    // Unchanged: the leader does not know it.
                    command_level: 0,
                }));
            }
        }
        let mut away_since = HashMap::new();
        for wf in state.active_workflows() {
            if wf.status != WorkflowStatus::Running {
                continue;
            }
            let owner = wf.owner;
            let kind = (wf.name.clone(), wf.version);
            // Presence is per workflow type: another app on the owner's node
            // that cannot run this type does not keep it there.
            let away = if state.is_live(owner, &wf.name, wf.version) {
                false
            } else {
                let key = (owner, kind);
                let first = *self.away_since.get(&key).unwrap_or(&now);
                away_since.insert(key, first);
                now.duration_since(first) > self.app_timeout
            };
            let dead = !alive(owner);
            if (!dead && !away) || self.in_flight.contains_key(&wf.id) {
                continue;
            }
            let candidates: Vec<NodeId> = state
                .live_nodes(&wf.name, wf.version)
                .into_iter()
                .filter(|n| *n != owner && alive(*n) && !marked.contains(n))
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
        self.away_since = away_since;
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
                    live: Vec::new(),
                    command_level: 0,
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
                start_delay_ms: 0,
                execution_timeout_ms: 0,
                signal: None,
            }),
        );
        // Zero timeouts: the leader (1) has heard nobody recently, so 2 and 3
        // count as lost; only the leader itself is a live candidate.
        let mut failover = Failover::new(Duration::ZERO, Duration::from_secs(60));
        assert!(
            failover.check(Instant::now(), 1, false, &sm).is_empty(),
            "only the leader decides"
        );
        let changes = failover.check(Instant::now(), 1, true, &sm);
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

    fn presence(node: u64, live: &[(&str, u32)]) -> Kind {
        Kind::SetWorkerPresence(SetWorkerPresence {
            node_id: node,
            present: !live.is_empty(),
            live: live
                .iter()
                .map(
                    |(name, version)| raftoral_proto::cluster::v1::WorkflowType {
                        workflow_name: (*name).into(),
                        version: *version,
                    },
                )
                .collect(),
            command_level: 0,
        })
    }

    fn register(sm: &mut StateMachine, node: u64, name: &str) {
        apply(
            sm,
            Kind::RegisterWorker(RegisterWorker {
                node_id: node,
                workflow_name: name.into(),
                version: 1,
            }),
        );
    }

    fn start(sm: &mut StateMachine, id: &str, name: &str, origin: u64) {
        apply(
            sm,
            Kind::StartWorkflow(StartWorkflow {
                workflow_id: id.into(),
                workflow_name: name.into(),
                version: 1,
                input: Default::default(),
                origin_node_id: origin,
                start_delay_ms: 0,
                execution_timeout_ms: 0,
                signal: None,
            }),
        );
    }

    fn moves(changes: &[Kind]) -> Vec<(String, u64, u64)> {
        changes
            .iter()
            .filter_map(|k| match k {
                Kind::ChangeOwner(c) => Some((c.workflow_id.clone(), c.from_node_id, c.to_node_id)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_owner_whose_app_for_the_type_left_loses_it_though_another_app_stays() {
        let mut sm = StateMachine::new();
        register(&mut sm, 1, "steps");
        register(&mut sm, 1, "other");
        register(&mut sm, 3, "steps");
        start(&mut sm, "w", "steps", 1);
        // App A (steps) on node 1 died; app B (other) is still connected.
        apply(&mut sm, presence(1, &[("other", 1)]));
        assert!(sm.is_present(1));
        // Every node reachable; a zero app timeout: away from the second
        // look on.
        let mut failover = Failover::new(Duration::from_secs(60), Duration::ZERO);
        let first = failover.check(Instant::now(), 2, true, &sm);
        assert!(moves(&first).is_empty(), "{first:?}");
        let second = failover.check(Instant::now(), 2, true, &sm);
        assert_eq!(moves(&second), vec![("w".to_owned(), 1, 3)]);
    }

    #[test]
    fn a_node_that_refuses_connections_loses_its_workflows_at_once() {
        let mut sm = StateMachine::new();
        register(&mut sm, 2, "wf");
        register(&mut sm, 3, "wf");
        start(&mut sm, "w", "wf", 2);
        // Long timeouts and a leader just elected: silence proves nothing.
        let mut failover = Failover::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(moves(&failover.check(Instant::now(), 1, true, &sm)).is_empty());
        failover.down(2);
        let changes = failover.check(Instant::now(), 1, true, &sm);
        assert_eq!(moves(&changes), vec![("w".to_owned(), 2, 3)]);
        assert!(changes.iter().any(|k| matches!(
            k,
            Kind::SetWorkerPresence(p) if p.node_id == 2 && !p.present
        )));
        // Heard again (restarted): no longer down.
        failover.heard(2, Instant::now());
        failover.in_flight.clear();
        assert!(failover.check(Instant::now(), 1, true, &sm).is_empty());
    }

    #[test]
    fn a_stall_of_the_loop_itself_moves_nothing() {
        let mut sm = StateMachine::new();
        for node in [1, 2, 3] {
            register(&mut sm, node, "wf");
        }
        start(&mut sm, "w", "wf", 2);
        let timeout = Duration::from_secs(1);
        let mut failover = Failover::new(timeout, timeout);
        let t0 = Instant::now();
        failover.heard(2, t0);
        failover.heard(3, t0);
        assert!(failover.check(t0, 1, true, &sm).is_empty());
        // The loop did not run for 5 s: everyone looks silent.
        let mut at = t0 + Duration::from_secs(5);
        assert!(
            moves(&failover.check(at, 1, true, &sm)).is_empty(),
            "silence during our own stall proves nothing"
        );
        // Node 2 stays silent for an owner timeout after the loop resumed
        // (checks every 250 ms): now it is lost.
        let mut moved = Vec::new();
        for _ in 0..6 {
            at += Duration::from_millis(250);
            moved.extend(moves(&failover.check(at, 1, true, &sm)));
        }
        assert_eq!(moved, vec![("w".to_owned(), 2, 1)]);
    }
}
