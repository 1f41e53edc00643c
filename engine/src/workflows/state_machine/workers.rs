//! The worker registry and app presence (which node's app runs which
//! workflow types, live now or not), the command level each node
//! recorded, and placing workflows on nodes: who may own what.

use std::collections::BTreeSet;
use std::sync::Arc;

use raftoral_proto::cluster::v1::{RegisterWorker, SetWorkerPresence};
use raftoral_proto::sidecar::v1::WorkflowStatus;

use super::workflow::{NodeId, WorkflowType};
use super::{Applied, Event, StateMachine, pick};

impl StateMachine {
    /// True while some app connected to `node` can run workflows.
    pub fn is_present(&self, node: NodeId) -> bool {
        self.present.get(&node).is_some_and(|live| !live.is_empty())
    }

    /// Nodes with a connected app.
    pub fn present_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.present
            .iter()
            .filter(|(_, live)| !live.is_empty())
            .map(|(node, _)| *node)
    }

    /// True while an app connected to `node` can run (name, version).
    pub fn is_live(&self, node: NodeId, name: &str, version: u32) -> bool {
        self.present
            .get(&node)
            .is_some_and(|live| live.contains(&(name.to_owned(), version)))
    }

    /// The types the apps connected to `node` can run now.
    pub fn live_types(&self, node: NodeId) -> BTreeSet<WorkflowType> {
        self.present.get(&node).cloned().unwrap_or_default()
    }

    /// Members whose connected app can run (name, version), in id order.
    pub fn live_nodes(&self, name: &str, version: u32) -> Vec<NodeId> {
        let key = (name.to_owned(), version);
        self.present
            .iter()
            .filter(|(node, live)| live.contains(&key) && !self.removed.contains(node))
            .map(|(node, _)| *node)
            .collect()
    }

    /// Nodes that registered (name, version).
    pub fn registered_nodes(&self, name: &str, version: u32) -> Vec<NodeId> {
        self.registry
            .get(&(name.to_owned(), version))
            .map(|nodes| nodes.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn set_presence(
        &mut self,
        c: &SetWorkerPresence,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Applied {
        if self.removed.contains(&c.node_id) {
            return Applied::PresenceRecorded;
        }
        if c.command_level > 0 {
            self.levels.insert(c.node_id, c.command_level);
        }
        let live: BTreeSet<WorkflowType> = if !c.present {
            BTreeSet::new()
        } else if c.live.is_empty() {
            // Written before per-type presence: every registered type.
            self.registry
                .iter()
                .filter(|(_, nodes)| nodes.contains(&c.node_id))
                .map(|(key, _)| key.clone())
                .collect()
        } else {
            c.live
                .iter()
                .map(|t| (t.workflow_name.clone(), t.version))
                .collect()
        };
        let before = self.present.remove(&c.node_id).unwrap_or_default();
        let was_present = !before.is_empty();
        let arrived: Vec<WorkflowType> = live.difference(&before).cloned().collect();
        if !live.is_empty() {
            self.present.insert(c.node_id, live);
        }
        let is_present = self.is_present(c.node_id);
        if was_present != is_present || !arrived.is_empty() || before != self.live_types(c.node_id)
        {
            events.push(Event::PresenceChanged {
                node_id: c.node_id,
                present: is_present,
            });
        }
        for (name, version) in arrived {
            self.start_pending(c.node_id, &name, version, now, events);
        }
        Applied::PresenceRecorded
    }

    /// Pending workflows of (name, version) start on `node`, whose app can
    /// run them now.
    pub(super) fn start_pending(
        &mut self,
        node: NodeId,
        name: &str,
        version: u32,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let mut started = 0;
        for id in &self.active {
            let Some(wf) = self.workflows.get_mut(id).map(Arc::make_mut) else {
                continue;
            };
            // A delayed start waits for its timer, not for a worker.
            if wf.status == WorkflowStatus::Pending
                && wf.start_at_ms == 0
                && wf.name == name
                && wf.version == version
            {
                started += 1;
                wf.status = WorkflowStatus::Running;
                wf.owner = node;
                wf.pending_reason.clear();
                wf.updated_at_ms = now;
                events.push(Event::WorkflowRunning {
                    workflow_id: wf.id.clone(),
                    owner: node,
                });
            }
        }
        self.count_active(
            Some(WorkflowStatus::Pending),
            Some(WorkflowStatus::Running),
            started,
        );
    }

    /// The command level `node`'s engine recorded (0: none yet).
    pub fn recorded_command_level(&self, node: NodeId) -> u32 {
        self.levels.get(&node).copied().unwrap_or(0)
    }

    /// The lowest command level among the members: a command of a higher
    /// level would be skipped by some member's engine, so it is not
    /// proposed. A member that recorded none counts as 0.
    pub fn command_level(&self) -> u32 {
        self.addresses
            .keys()
            .map(|node| self.recorded_command_level(*node))
            .min()
            .unwrap_or(0)
    }

    /// True when a member recorded a command level below `level` (not
    /// none): its engine predates what `level` brings. A member that
    /// recorded none yet (it just started) is not counted.
    pub fn predates(&self, level: u32) -> bool {
        self.addresses.keys().any(|node| {
            let recorded = self.recorded_command_level(*node);
            recorded > 0 && recorded < level
        })
    }

    /// True when `node` registered (name, version).
    pub fn is_registered(&self, node: NodeId, name: &str, version: u32) -> bool {
        self.registry
            .get(&(name.to_owned(), version))
            .is_some_and(|nodes| nodes.contains(&node))
    }

    pub(super) fn register_worker(
        &mut self,
        c: &RegisterWorker,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Applied {
        if self.removed.contains(&c.node_id) {
            // A removed node's app cannot run anything here any more.
            return Applied::Registered;
        }
        let key = (c.workflow_name.clone(), c.version);
        let inserted = self
            .registry
            .entry(key.clone())
            .or_default()
            .insert(c.node_id);
        if inserted {
            events.push(Event::WorkerRegistered {
                node_id: c.node_id,
                workflow_name: c.workflow_name.clone(),
                version: c.version,
            });
        }
        // A registration comes from a connected app: the type is live there
        // (the node's presence reconciler corrects it if the app has left).
        self.present.entry(c.node_id).or_default().insert(key);
        // Pending workflows of this exact (name, version) can run now.
        self.start_pending(c.node_id, &c.workflow_name, c.version, now, events);
        Applied::Registered
    }

    /// Picks the owner among members whose connected app can run the
    /// workflow: the starting node when it can, else one chosen by a hash of
    /// the id (spreads load, and is the same on every replica). A workflow
    /// nobody connected can run stays PENDING: placing it on a node whose app
    /// is gone would only make it wait for that app. Err carries the reason.
    pub(super) fn place(
        &self,
        name: &str,
        version: u32,
        id: &str,
        origin: NodeId,
    ) -> Result<NodeId, String> {
        let pool = self.live_nodes(name, version);
        if !pool.is_empty() {
            if pool.contains(&origin) {
                return Ok(origin);
            }
            return Ok(pick(&pool, id));
        }
        if let Some(nodes) = self.registry.get(&(name.to_owned(), version))
            && !nodes.is_empty()
        {
            let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
            return Err(format!(
                "no live worker can run workflow '{}' version {}: the apps that registered it \
                 (on nodes {}) are not connected now; it starts when one connects",
                name,
                version,
                nodes.join(", ")
            ));
        }
        let other_versions: Vec<String> = self
            .registry
            .iter()
            .filter(|((n, _), nodes)| *n == name && !nodes.is_empty())
            .map(|((_, v), _)| v.to_string())
            .collect();
        Err(if other_versions.is_empty() {
            format!(
                "no worker has registered workflow '{}'; it starts when one registers it",
                name
            )
        } else {
            format!(
                "no worker has registered workflow '{}' version {} (registered versions: {}); \
                 it starts when one registers that version",
                name,
                version,
                other_versions.join(", ")
            )
        })
    }
}
