//! The simulated world: one queue of events in simulated time, the
//! network between the nodes, the faults the seed draws, and the run of
//! one seed from start to verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft::StateRole;
use raft::prelude::Message;

use crate::config::NodeConfig;
use crate::consensus::raft_loop::Input;
use crate::workflows::state_machine::NodeId;

use super::invariants::{Leaders, bounded_purges, check_end, digest, first_difference};
use super::node::{Arrived, LaneId, SENDER_FAILED, SimNode, SnapshotSend};
use super::rng::Rng;
use super::scenario::Scenario;
use super::workload::Workload;

/// A voter being replaced by a new node: first the old one's removal,
/// then the new one's addition as a learner (the leader promotes it).
#[derive(Debug, Clone, Copy)]
enum Replacement {
    Removing(NodeId),
    Adding(NodeId),
}

/// How one seed ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub events: u64,
    pub sim_ms: u64,
    pub crashes: u64,
    pub terms: u64,
    pub committed: u64,
    /// Snapshots received (a state decoded off the loop).
    pub snapshots: u64,
}

enum Event {
    Tick(NodeId, u64),
    Deliver(NodeId, Message),
    Snapshot(NodeId, NodeId, SnapshotSend),
    Poll(NodeId),
    Job(NodeId, u64, LaneId),
    App(NodeId),
    Clients,
    Crash,
    /// One power loss, not the start of a series.
    PowerLoss,
    Restart(NodeId),
    Partition,
    Heal,
    ClockJump,
    Membership,
    Quiesce,
    Check,
}

const TICK_MS: u64 = 50;
const ELECTION_TICKS: usize = 10;

pub(crate) struct World {
    seed: u64,
    scenario: Scenario,
    rng: Rng,
    now: Arc<AtomicU64>,
    base: Instant,
    queue: BTreeMap<(u64, u64), Event>,
    next_event: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Lanes with a Job event queued.
    job_scheduled: BTreeSet<(NodeId, LaneId)>,
    faults_on: bool,
    /// A voter replacement under way: the node going, then the one coming.
    replacing: Option<Replacement>,
    workload: Workload,
    leaders: Leaders,
    crashes: u64,
    snapshots: u64,
    events: u64,
    trace: bool,
    _dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new(seed: u64, trace: bool) -> Result<World, String> {
        World::with_scenario(seed, Scenario::of(seed), trace)
    }

    /// A world of `scenario`, its randomness from `seed`.
    pub(crate) fn with_scenario(
        seed: u64,
        scenario: Scenario,
        trace: bool,
    ) -> Result<World, String> {
        let mut rng = Rng::new(seed);
        // On tmpfs where there is one: fsync is free there, and the
        // simulation decides what a crash loses itself.
        let mut builder = tempfile::Builder::new();
        builder.prefix("raftoral-sim-");
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            builder.tempdir_in("/dev/shm")
        } else {
            builder.tempdir()
        }
        .map_err(|e| e.to_string())?;
        let ids: Vec<NodeId> = (1..=scenario.nodes as u64).collect();
        let peers: BTreeMap<u64, String> =
            ids.iter().map(|id| (*id, format!("sim-{id}"))).collect();
        let now = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let mut nodes = BTreeMap::new();
        for id in &ids {
            let config = NodeConfig {
                node_id: *id,
                tick_interval: Duration::from_millis(TICK_MS),
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: 2,
                peers: peers.clone(),
                advertise: format!("sim-{id}"),
                storage_path: Some(PathBuf::from(dir.path()).join(format!("n{id}"))),
                snapshot_entries: scenario.snapshot_entries,
                snapshot_keep_entries: scenario.snapshot_keep_entries,
                snapshot_max_retained_entries: scenario.snapshot_max_retained_entries,
                retention: scenario.retention_ms.map(Duration::from_millis),
                purge_chunk: scenario.purge_chunk,
                ..NodeConfig::default()
            };
            let skew = rng.range(0, 200) as i64 - 100;
            let mut node = SimNode::new(config, skew, ELECTION_TICKS);
            node.start(&now, base)?;
            nodes.insert(*id, node);
        }
        let flows = (0..scenario.workflows)
            .map(|_| (rng.range(0, 25), rng.range(0, scenario.fault_ms)))
            .collect();
        let workload = Workload::new(flows, rng.next_u64() >> 2);
        let mut world = World {
            seed,
            scenario,
            rng,
            now,
            base,
            queue: BTreeMap::new(),
            next_event: 0,
            nodes,
            blocked: BTreeSet::new(),
            job_scheduled: BTreeSet::new(),
            faults_on: true,
            replacing: None,
            workload,
            leaders: Leaders::default(),
            snapshots: 0,
            crashes: 0,
            events: 0,
            trace,
            _dir: dir,
        };
        for id in ids {
            let jitter = world.rng.range(0, TICK_MS);
            world.at(jitter, Event::Tick(id, 0));
            let app = world.rng.range(0, 100);
            world.at(app, Event::App(id));
        }
        world.at(0, Event::Clients);
        world.at(100, Event::Check);
        let s = &world.scenario;
        let faults = [
            (s.replace_every_ms, Event::Membership),
            (s.crash_every_ms, Event::Crash),
            (s.partition_every_ms, Event::Partition),
            (s.clock_jump_every_ms, Event::ClockJump),
        ];
        let quiesce = s.fault_ms;
        for (every, event) in faults {
            if every > 0 {
                let t = world.rng.range(0, every * 2);
                world.at(t, event);
            }
        }
        world.at(quiesce, Event::Quiesce);
        Ok(world)
    }

    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Schedules `event` `after` ms from now.
    fn at(&mut self, after: u64, event: Event) {
        self.next_event += 1;
        let when = self.now() + after;
        self.queue.insert((when, self.next_event), event);
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>7}ms] {}", self.now(), what());
        }
    }

    /// Runs events until `until` gives a value, for at most `within`
    /// simulated ms.
    pub(crate) fn run_until<T>(
        &mut self,
        within: u64,
        mut until: impl FnMut(&World) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = self.now() + within;
        loop {
            if let Some(found) = until(self) {
                return Ok(found);
            }
            let Some(((when, _), event)) = self.queue.pop_first() else {
                return Err("no events left".into());
            };
            if when > deadline {
                return Err(format!("not reached within {within} ms"));
            }
            self.now.store(when, Ordering::Relaxed);
            self.events += 1;
            self.handle(event)?;
        }
    }

    /// The node that leads in the highest term, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.running.as_ref().map(|r| (n.id, &r.raft().raft)))
            .filter(|(_, raft)| raft.state == StateRole::Leader)
            .max_by_key(|(_, raft)| raft.term)
            .map(|(id, _)| id)
    }

    /// The voters as node `id` applied them.
    pub(crate) fn voters(&self, id: NodeId) -> Vec<NodeId> {
        self.nodes[&id]
            .running
            .as_ref()
            .map(|r| r.conf().voters)
            .unwrap_or_default()
    }

    /// Node `id`'s commit index.
    pub(crate) fn committed(&self, id: NodeId) -> u64 {
        self.nodes[&id]
            .running
            .as_ref()
            .map_or(0, |r| r.raft().raft.raft_log.committed)
    }

    /// Runs the seed to its verdict.
    pub(crate) fn run(mut self) -> Result<Outcome, String> {
        let end = self.scenario.fault_ms + self.scenario.settle_ms;
        while let Some(((when, _), event)) = self.queue.pop_first() {
            if when > end {
                break;
            }
            self.now.store(when, Ordering::Relaxed);
            self.events += 1;
            if self.handle(event)? {
                return self.verdict();
            }
        }
        Err(self.stuck())
    }

    /// Handles one event; true once the workload finished after the
    /// faults stopped.
    fn handle(&mut self, event: Event) -> Result<bool, String> {
        match event {
            Event::Tick(id, generation) => {
                if self.nodes[&id].generation != generation {
                    return Ok(false);
                }
                self.input(id, Input::Tick)?;
                // Each node's timer drifts a little: raft-rs's randomized
                // election timeout is fixed here, the seed breaks the ties.
                let next = TICK_MS - 5 + self.rng.range(0, 10);
                self.at(next, Event::Tick(id, generation));
            }
            Event::Deliver(to, message) => {
                if !self.blocked.contains(&(message.from, to)) {
                    self.log(|| {
                        format!(
                            "deliver {:?} {}->{to}",
                            message.get_msg_type(),
                            message.from
                        )
                    });
                    self.input(to, Input::Message(message))?;
                }
            }
            Event::Snapshot(from, to, send) => self.deliver_snapshot(from, to, send)?,
            Event::Poll(id) => {
                if let Some(running) = self.node_mut(id) {
                    running.drain()?;
                    self.after_step(id)?;
                }
            }
            Event::Job(id, generation, lane) => {
                self.job_scheduled.remove(&(id, lane));
                if self.nodes[&id].generation == generation
                    && let Some(running) = self.node_mut(id)
                {
                    let slice = running.slice(lane).map_err(|e| format!("node {id}: {e}"))?;
                    self.log(|| format!("node {id} {lane:?} lane: {slice:?}"));
                    self.after_step(id)?;
                }
            }
            Event::App(id) => {
                self.app(id)?;
                let next = self.rng.range(10, 80);
                self.at(next, Event::App(id));
            }
            Event::Clients => {
                let up: Vec<NodeId> = self.up();
                if !up.is_empty() {
                    let via = self.rng.pick(&up);
                    let stamp = self.stamp(via);
                    let now = self.now();
                    let proposals = self.workload.clients(via, stamp, now);
                    self.propose(proposals)?;
                }
                let next = self.rng.range(20, 200);
                self.at(next, Event::Clients);
            }
            Event::Crash => self.crash(),
            Event::PowerLoss => self.power_loss(),
            Event::Restart(id) => {
                if self.nodes[&id].is_up() || self.nodes[&id].removed {
                    return Ok(false);
                }
                self.log(|| format!("node {id} restarts"));
                let (now, base) = (self.now.clone(), self.base);
                let node = self.nodes.get_mut(&id).expect("node");
                node.start(&now, base)?;
                let generation = node.generation;
                if self.trace {
                    let running = self.nodes[&id].running.as_ref().expect("started");
                    let (conf, applied) = (running.conf(), running.raft().raft.raft_log.applied);
                    self.log(|| {
                        format!(
                            "node {id} restarted: voters {:?} learners {:?} applied {applied}",
                            conf.voters, conf.learners
                        )
                    });
                }
                self.at(1, Event::Tick(id, generation));
            }
            Event::Partition => {
                if self.faults_on {
                    self.partition();
                    let heal = self.rng.range(100, self.scenario.partition_every_ms * 2);
                    self.at(heal, Event::Heal);
                    let next = self.rng.range(1, self.scenario.partition_every_ms * 2);
                    self.at(next, Event::Partition);
                }
            }
            Event::Heal => {
                self.log(|| "network heals".into());
                self.blocked.clear();
            }
            Event::ClockJump => {
                if self.faults_on {
                    let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                    let id = self.rng.pick(&ids);
                    let max = self.scenario.max_clock_jump_ms;
                    let skew = self.rng.range(0, 2 * max) as i64 - max as i64;
                    self.log(|| format!("node {id}'s clock jumps to a skew of {skew} ms"));
                    self.nodes[&id].skew_ms.store(skew, Ordering::Relaxed);
                    let next = self.rng.range(1, self.scenario.clock_jump_every_ms * 2);
                    self.at(next, Event::ClockJump);
                }
            }
            Event::Membership => {
                self.membership()?;
                if self.faults_on || self.replacing.is_some() {
                    let next = self.rng.range(100, self.scenario.replace_every_ms.max(200));
                    self.at(next, Event::Membership);
                }
            }
            Event::Quiesce => {
                self.log(|| "faults stop; the world heals".into());
                self.faults_on = false;
                self.blocked.clear();
                let down: Vec<NodeId> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| !n.is_up() && !n.removed)
                    .map(|(id, _)| *id)
                    .collect();
                for id in down {
                    self.at(0, Event::Restart(id));
                }
            }
            Event::Check => {
                self.check_replicas()?;
                if !self.faults_on && self.finished() {
                    return Ok(true);
                }
                let next = self.rng.range(50, 300);
                self.at(next, Event::Check);
            }
        }
        Ok(false)
    }

    /// The nodes not removed from the cluster.
    fn members(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.values().filter(|n| !n.removed)
    }

    fn up(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_up())
            .map(|(id, _)| *id)
            .collect()
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut super::node::Running> {
        self.nodes.get_mut(&id).and_then(|n| n.running.as_mut())
    }

    /// The stamp a proposal made on `id` now carries: its wall clock
    /// bounded by elapsed time, as a node stamps (`log_clock.rs`).
    fn stamp(&self, id: NodeId) -> u64 {
        match self.nodes[&id].running.as_ref() {
            Some(running) => running.stamp(),
            None => {
                let skew = self.nodes[&id].skew_ms.load(Ordering::Relaxed);
                (super::node::EPOCH_MS + self.now()).saturating_add_signed(skew)
            }
        }
    }

    /// The log's time never runs ahead of true time by more than a clock
    /// was ahead when its process started: a clock that jumps while its
    /// node runs moves no stamp, so it fires no timer early.
    fn log_time_bounded(&self, id: NodeId) -> Result<(), String> {
        let Some(running) = self.nodes[&id].running.as_ref() else {
            return Ok(());
        };
        let ahead = self
            .nodes
            .values()
            .map(|n| n.max_start_skew_ms)
            .max()
            .unwrap_or(0)
            .max(0);
        let log_time = running.state.read().expect("state").log_time_ms();
        let bound = (super::node::EPOCH_MS + self.now()).saturating_add_signed(ahead);
        if log_time > bound {
            return Err(format!(
                "node {id}: the log's time {log_time} runs {} ms ahead of true time, \
                 more than the {ahead} ms a clock was ahead at a start",
                log_time - (super::node::EPOCH_MS + self.now())
            ));
        }
        Ok(())
    }

    fn input(&mut self, id: NodeId, input: Input) -> Result<(), String> {
        let Some(running) = self.nodes.get(&id).and_then(|n| n.running.as_ref()) else {
            return Ok(());
        };
        let receiving = running.busy_lanes().contains(&LaneId::Receive);
        let interleave = receiving && self.rng.chance(0.5);
        let running = self.node_mut(id).expect("up");
        running
            .input(input, interleave)
            .map_err(|e| format!("node {id}: {e}"))?;
        let purges = std::mem::take(&mut running.state.write().expect("state").purges);
        bounded_purges(&purges, self.scenario.purge_chunk)
            .map_err(|e| format!("node {id}: {e}"))?;
        self.log_time_bounded(id)?;
        self.after_step(id)
    }

    /// After a node stepped: check its view of leadership, put what it
    /// sent on the network, schedule its background jobs.
    fn after_step(&mut self, id: NodeId) -> Result<(), String> {
        let Some(running) = self.nodes.get(&id).and_then(|n| n.running.as_ref()) else {
            return Ok(());
        };
        let raft = &running.raft().raft;
        if raft.state == StateRole::Leader {
            self.leaders.saw(raft.term, id)?;
        }
        let sent = running.take_sent();
        let busy = running.busy_lanes();
        let arrived = running.take_arrived();
        for message in sent.messages {
            self.send(message);
        }
        for send in sent.snapshots {
            let to = send.message.to;
            let delay = self.rng.range(1, self.scenario.max_delay_ms * 4);
            self.at(delay, Event::Snapshot(id, to, send));
        }
        for lane in busy {
            if self.job_scheduled.insert((id, lane)) {
                let generation = self.nodes[&id].generation;
                let most = match lane {
                    LaneId::Flush => self.scenario.max_job_delay_ms,
                    LaneId::Receive => self.scenario.max_receive_delay_ms,
                };
                let delay = self.rng.range(1, most);
                self.at(delay, Event::Job(id, generation, lane));
            }
        }
        for Arrived {
            from,
            message,
            received,
        } in arrived
        {
            self.log(|| format!("snapshot {from}->{id} received: {received:?}"));
            if let Err(e) = &received
                && e.starts_with(SENDER_FAILED)
            {
                return Err(format!("snapshot {from}->{id}: {e}"));
            }
            // The sender learns the outcome from the transfer.
            self.at(0, Event::Poll(from));
            if received.is_ok() {
                self.snapshots += 1;
                // Its message goes on the network (delayed, lost,
                // duplicated like any other): other receives and installs
                // may come before it.
                self.send(message);
            }
        }
        Ok(())
    }

    /// The network: drops, duplicates and delays (which reorders).
    fn send(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        if self.blocked.contains(&(from, to)) {
            return;
        }
        let hostile = self.faults_on;
        if hostile && self.rng.chance(self.scenario.drop_rate) {
            return;
        }
        let copies = if hostile && self.rng.chance(self.scenario.duplicate_rate) {
            2
        } else {
            1
        };
        let slow = hostile && self.scenario.slow_node_ms > 0 && to == self.scenario.nodes as NodeId;
        let most = if slow {
            self.scenario.slow_node_ms
        } else {
            self.scenario.max_delay_ms
        };
        for _ in 0..copies {
            let delay = self.rng.range(0, most);
            self.at(delay, Event::Deliver(to, message.clone()));
        }
    }

    fn deliver_snapshot(
        &mut self,
        from: NodeId,
        to: NodeId,
        send: SnapshotSend,
    ) -> Result<(), String> {
        let reachable = !self.blocked.contains(&(from, to));
        match self.nodes.get(&to).and_then(|n| n.running.as_ref()) {
            Some(running) if reachable => {
                // Received off the loop, on the node's receiver lane.
                running.receive(from, send);
                self.log(|| format!("snapshot {from}->{to} arrives"));
                self.after_step(to)
            }
            _ => {
                self.log(|| format!("snapshot {from}->{to} lost"));
                let _ = send.report.try_send((to, false));
                self.at(0, Event::Poll(from));
                Ok(())
            }
        }
    }

    fn propose(&mut self, proposals: Vec<super::workload::Propose>) -> Result<(), String> {
        for note in std::mem::take(&mut self.workload.notes) {
            self.log(|| note);
        }
        for (id, proposal) in proposals {
            self.input(id, Input::Proposal(proposal))?;
        }
        Ok(())
    }

    fn app(&mut self, id: NodeId) -> Result<(), String> {
        let Some(running) = self.nodes.get(&id).and_then(|n| n.running.as_ref()) else {
            return Ok(());
        };
        let state = running.state.clone();
        let (stamp, now) = (self.stamp(id), self.now());
        let proposals = {
            let state = state.read().expect("state lock");
            self.workload.app(id, stamp, now, &state)
        };
        self.propose(proposals)
    }

    /// The series of power losses: one now, the next a while later.
    fn crash(&mut self) {
        self.power_loss();
        let next = self.rng.range(1, self.scenario.crash_every_ms * 2);
        self.at(next, Event::Crash);
    }

    /// Right after a membership change applied, a power loss now and then:
    /// the moment its durability matters (the record of the change against
    /// the state store's flushes).
    fn power_loss_soon(&mut self) {
        if self.scenario.crash_every_ms > 0 && self.rng.chance(0.5) {
            let soon = self.rng.range(0, 300);
            self.at(soon, Event::PowerLoss);
        }
    }

    /// A node loses power (while a majority stays up, mostly).
    fn power_loss(&mut self) {
        if !self.faults_on {
            return;
        }
        let up = self.up();
        let majority = self.scenario.nodes / 2 + 1;
        if up.len() > majority || self.rng.chance(0.2) && !up.is_empty() {
            let id = self.rng.pick(&up);
            let mode = self.rng.range(0, 2);
            let cut = self.rng.next_u64();
            self.log(|| format!("node {id} loses power (mode {mode})"));
            let node = self.nodes.get_mut(&id).expect("node");
            node.crash(|unsynced| match mode {
                0 => 0,
                1 => unsynced,
                _ => cut % (unsynced + 1),
            });
            self.workload.node_crashed(id);
            self.crashes += 1;
            let back = self.rng.range(50, 4_000);
            self.at(back, Event::Restart(id));
        }
    }

    fn partition(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.blocked.clear();
        if self.rng.chance(0.5) {
            // Two sides.
            let side: BTreeSet<NodeId> = ids
                .iter()
                .copied()
                .filter(|_| self.rng.chance(0.5))
                .collect();
            for a in &ids {
                for b in &ids {
                    if side.contains(a) != side.contains(b) {
                        self.blocked.insert((*a, *b));
                    }
                }
            }
            self.log(|| format!("partition {side:?} | rest"));
        } else {
            // Some one-way links.
            for _ in 0..self.rng.range(1, ids.len() as u64) {
                let (a, b) = (self.rng.pick(&ids), self.rng.pick(&ids));
                if a != b {
                    self.blocked.insert((a, b));
                }
            }
            self.log(|| format!("one-way links down: {:?}", self.blocked));
        }
    }

    /// The next move of a voter replacement, or the start of one. Each
    /// move reads the membership the current leader applied: applied means
    /// committed, so a removal it shows can never be undone (any other
    /// node's view may be empty or stale, as a restarted joiner's is).
    fn membership(&mut self) -> Result<(), String> {
        let Some(via) = self.leader() else {
            return Ok(());
        };
        let mut conf = self.nodes[&via].running.as_ref().expect("up").conf();
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        let (voters, learners) = (conf.voters, conf.learners);
        let replacing = self.replacing;
        self.log(|| {
            format!("membership {voters:?} learners {learners:?}; {replacing:?} via {via}")
        });
        use raft::prelude::ConfChangeType::{AddLearnerNode, RemoveNode};
        match self.replacing {
            None => {
                if !self.faults_on || voters.len() < 3 || !learners.is_empty() {
                    return Ok(());
                }
                let victim = self.rng.pick(&voters);
                self.log(|| format!("replacing node {victim}: its removal is proposed"));
                self.replacing = Some(Replacement::Removing(victim));
                self.propose_conf(via, victim, RemoveNode)
            }
            Some(Replacement::Removing(victim)) => {
                // Gone from voters is not removed: a leader that has not
                // applied its whole log yet may show the victim as the
                // learner it was before its promotion (seed 0x20015574
                // stopped such a voter for good).
                if voters.contains(&victim) || learners.contains(&victim) {
                    return self.propose_conf(via, victim, RemoveNode);
                }
                // Removed: its process stops for good; a new node joins.
                let old = self.nodes.get_mut(&victim).expect("node");
                old.crash(|unsynced| unsynced);
                old.removed = true;
                let mut config = old.config.clone();
                self.workload.node_crashed(victim);
                let id = *self.nodes.keys().last().expect("nodes") + 1;
                config.node_id = id;
                config.join = true;
                config.peers.clear();
                config.advertise = format!("sim-{id}");
                config.storage_path = config
                    .storage_path
                    .map(|dir| dir.with_file_name(format!("n{id}")));
                let mut node = SimNode::new(config, 0, ELECTION_TICKS);
                node.start(&self.now, self.base)?;
                self.nodes.insert(id, node);
                self.log(|| format!("node {victim} removed; node {id} joins"));
                self.at(1, Event::Tick(id, 0));
                self.at(1, Event::App(id));
                self.replacing = Some(Replacement::Adding(id));
                self.power_loss_soon();
                self.propose_conf(via, id, AddLearnerNode)
            }
            Some(Replacement::Adding(id)) => {
                if voters.contains(&id) {
                    self.log(|| format!("node {id} is a voter"));
                    self.replacing = None;
                    self.power_loss_soon();
                    return Ok(());
                }
                if !learners.contains(&id) {
                    return self.propose_conf(via, id, AddLearnerNode);
                }
                Ok(())
            }
        }
    }

    /// Proposes one membership change through `via` (nobody waits for
    /// its reply: the next look at the membership decides).
    pub(crate) fn propose_conf(
        &mut self,
        via: NodeId,
        node: NodeId,
        kind: raft::prelude::ConfChangeType,
    ) -> Result<(), String> {
        let change = crate::consensus::proposal::single_change(
            kind,
            node,
            &raftoral_proto::cluster::v1::ConfChangeContext {
                proposer_node_id: via,
                proposal_id: 0,
                address: format!("sim-{node}"),
                proposed_at_ms: self.stamp(via),
            },
        );
        let (reply, _) = tokio::sync::oneshot::channel();
        let proposal = crate::consensus::proposal::Proposal::ConfChange {
            change,
            proposal_id: 0,
            reply,
        };
        self.input(via, Input::Proposal(proposal))
    }

    /// Nodes at the same applied index hold the same state.
    fn check_replicas(&self) -> Result<(), String> {
        let mut by_index: BTreeMap<u64, (NodeId, Vec<String>)> = BTreeMap::new();
        for (id, node) in &self.nodes {
            let Some(running) = &node.running else {
                continue;
            };
            if node.removed {
                continue;
            }
            let (applied, lines) = running.read(|s| (s.applied_index(), digest(s, &self.workload)));
            match by_index.get(&applied) {
                None => {
                    by_index.insert(applied, (*id, lines));
                }
                Some((other, theirs)) => {
                    if let Some((a, b)) = first_difference(theirs, &lines) {
                        return Err(format!(
                            "replicas diverged at applied index {applied}:\n  node {other}: {a}\n  node {id}: {b}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node is up, at the same applied index, and shows every
    /// workflow finished (or purged by retention after it started).
    fn finished(&self) -> bool {
        if self.replacing.is_some() {
            return false;
        }
        let mut applied = BTreeSet::new();
        for node in self.members() {
            let Some(running) = &node.running else {
                return false;
            };
            let done = running.read(|s| {
                applied.insert(s.applied_index());
                check_end(
                    node.id,
                    s,
                    &self.workload,
                    self.scenario.retention_ms.is_some(),
                )
                .is_ok()
            });
            if !done {
                return false;
            }
        }
        applied.len() == 1 && self.workload.flows.iter().all(|f| f.started)
    }

    fn verdict(self) -> Result<Outcome, String> {
        let expected: Vec<NodeId> = self.members().map(|n| n.id).collect();
        for node in self.members() {
            let running = node.running.as_ref().expect("all up");
            let mut conf = running.conf();
            conf.voters.sort_unstable();
            if conf.voters != expected || !conf.learners.is_empty() {
                return Err(format!(
                    "node {} ends with voters {:?} and learners {:?}; the members are {expected:?}",
                    node.id, conf.voters, conf.learners
                ));
            }
            running.read(|s| {
                check_end(
                    node.id,
                    s,
                    &self.workload,
                    self.scenario.retention_ms.is_some(),
                )
            })?;
        }
        let leader = self
            .nodes
            .values()
            .filter_map(|n| n.running.as_ref())
            .next();
        let (terms, committed) = leader.map_or((0, 0), |r| {
            let raft = &r.raft().raft;
            (raft.term, raft.raft_log.committed)
        });
        Ok(Outcome {
            events: self.events,
            sim_ms: self.now(),
            crashes: self.crashes,
            snapshots: self.snapshots,
            terms,
            committed,
        })
    }

    /// Why the run did not finish in time, for the report.
    fn stuck(&self) -> String {
        let mut why = format!(
            "the workload did not finish {} ms after the faults stopped",
            self.scenario.settle_ms
        );
        for node in self.members() {
            match &node.running {
                None => why.push_str(&format!("\n  node {}: down", node.id)),
                Some(running) => {
                    let raft = &running.raft().raft;
                    let end = running.read(|s| {
                        check_end(
                            node.id,
                            s,
                            &self.workload,
                            self.scenario.retention_ms.is_some(),
                        )
                        .err()
                        .unwrap_or_default()
                    });
                    why.push_str(&format!(
                        "\n  node {}: {:?} term {} leader {} commit {} applied {} {end}",
                        node.id,
                        raft.state,
                        raft.term,
                        raft.leader_id,
                        raft.raft_log.committed,
                        raft.raft_log.applied,
                    ));
                    why.push_str(&format!(
                        "\n    membership: stored {:?}, raft's {:?}",
                        running.conf(),
                        raft.prs().conf().to_conf_state()
                    ));
                    if raft.state == StateRole::Leader {
                        why.push_str(&format!(
                            "\n    last index {}, pending conf at {}, progress {:?}",
                            raft.raft_log.last_index(),
                            raft.pending_conf_index,
                            raft.prs()
                                .iter()
                                .map(|(id, p)| (*id, (p.matched, p.state)))
                                .collect::<BTreeMap<_, _>>()
                        ));
                    }
                }
            }
        }
        let unstarted = self.workload.flows.iter().filter(|f| !f.started).count();
        why.push_str(&format!("\n  starts not acknowledged: {unstarted}"));
        let _ = self.seed;
        why
    }
}
