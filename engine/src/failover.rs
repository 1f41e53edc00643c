//! Owner failover, decided by the leader: a workflow whose owner node lost
//! Raft contact, or whose owner's app has been away longer than the app
//! timeout, moves to a live node whose app registered it. The move is a
//! `ChangeOwner` command, fenced on the old owner, so a stale decision (say,
//! by a deposed leader) is refused by the state machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use raftoral_proto::cluster::v1::ChangeOwner;
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
    pub(crate) fn check(
        &mut self,
        me: NodeId,
        is_leader: bool,
        state: &StateMachine,
    ) -> Vec<ChangeOwner> {
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
                .filter(|n| *n != owner && alive(*n) && state.is_present(*n))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let to = pick(&candidates, &wf.id);
            tracing::info!(workflow = %wf.id, from = owner, to, owner_node_lost = dead, owner_app_away = away, "failing the workflow over to a new owner");
            self.in_flight.insert(wf.id.clone(), now);
            changes.push(ChangeOwner {
                workflow_id: wf.id.clone(),
                from_node_id: owner,
                to_node_id: to,
            });
        }
        changes
    }
}
