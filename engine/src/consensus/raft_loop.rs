//! The task that drives one raft-rs group.
//!
//! The loop is event-driven: a proposal or an incoming message is handled at
//! once and followed by a Ready round; ticks run on their own timer. All
//! proposals waiting in the channel are taken before the Ready round, so a busy
//! node appends and fsyncs them as one batch: group commit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChangeType, ConfChangeV2, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use raftoral_proto::cluster::v1::{Command, ConfChangeContext};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::NodeConfig;
use crate::consensus::environment::{Clock, Environment, Jobs, Outbox};
use crate::consensus::log_clock::LogClock;
use crate::consensus::pause::pause_point;
use crate::consensus::proposal::{Liveness, Proposal, ProposalReply, ReadContext, random_u64};
use crate::consensus::snapshot_transfer::SnapshotTransfers;
use crate::consensus::storage::snapshot_state::{SnapshotState, decode_ref, write_state};
use crate::consensus::storage::{RaftStore, StorageError};
use crate::consensus::transport::PeerSignal;
use crate::error::{EngineError, Rejection};
use crate::workflows::failover::Failover;
use crate::workflows::state_machine::{Applied, Archived, NodeId, StateMachine};
use crate::workflows::state_machine::{Event, EventAt};
use crate::workflows::timer_service::TimerService;

/// Most proposals taken from the channel for one Ready round; bounds the
/// latency a huge burst adds to the first proposal of the next round.
const MAX_BATCH: usize = 1024;

/// This node's view of its Raft group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// Known leader; 0 when none.
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed index.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// True when this node leads.
    pub is_leader: bool,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// A flush of the state machine to its store is being written (off
    /// the Raft loop; see `state_machine/archive.rs`).
    pub flushing: bool,
}

pub(crate) struct RaftLoop {
    raw: RawNode<RaftStore>,
    store: RaftStore,
    state: Arc<RwLock<StateMachine>>,
    events: broadcast::Sender<Arc<EventAt>>,
    /// Time (see `environment.rs`).
    clock: Arc<dyn Clock>,
    /// The stamps of this node's proposals (see `log_clock.rs`).
    log_clock: Arc<LogClock>,
    /// The network: Raft messages out, members' addresses.
    outbox: Arc<dyn Outbox>,
    /// proposal_id → waiting proposer (only proposals made on this node).
    pending: HashMap<u64, ProposalReply>,
    status: watch::Sender<RaftStatus>,
    config: NodeConfig,
    failover: Failover,
    /// Fires due durable timers while this node leads.
    timers: TimerService,
    ticks: u64,
    /// Leader seen at the last Ready; a change fails pending proposals fast.
    last_leader: u64,
    /// When this node last became the leader (`liveness`).
    leading_since: Option<std::time::Instant>,
    /// ReadIndex requests in flight, by the counter of their context.
    pending_reads: HashMap<u64, oneshot::Sender<Result<u64, EngineError>>>,
    /// Identifies this process's read contexts; see [`ReadContext`].
    read_nonce: u64,
    next_read: u64,
    /// When this leader last proposed a retention purge (ms since epoch).
    purge_proposed_at: Option<u64>,
    /// Snapshot transfers to and from peers.
    snapshots: Arc<SnapshotTransfers>,
    /// A flush is being written off the loop.
    snapshotting: bool,
    /// Workflows the last flush archived are still in memory.
    evicting: bool,
    /// raft-rs asked for a snapshot to send while a flush was in flight.
    snapshot_wanted: bool,
    /// Writes flushes (and snapshots wanted after them) off the loop: the
    /// flush thread, at a lower priority than the loop.
    jobs: Box<dyn Jobs>,
    /// Written snapshots come back here (the receiver lives in `run`).
    snapshot_written: mpsc::Sender<Written>,
    /// Outcomes of snapshot transfers to peers.
    snapshot_reports: mpsc::Sender<(NodeId, bool)>,
    /// A compaction's files could not be written (on the flush thread).
    files_failed: mpsc::UnboundedSender<StorageError>,
    /// Receivers of the three above, taken by `run` (or the simulation).
    snapshot_inputs: Option<SnapshotInputs>,
}

/// A flush written by the flushing thread: the index and term it is the
/// state of, the membership there, and (on success) the ids of the
/// finished workflows it archived and the snapshot encoded from it when
/// one was wanted.
pub(crate) struct Written {
    index: u64,
    term: u64,
    conf_state: raft::prelude::ConfState,
    outcome: Result<(Vec<Archived>, Option<SnapshotState>), StorageError>,
}
/// Written snapshots, outcomes of transfers and failures of compactions'
/// files, read by `run`.
pub(crate) type SnapshotInputs = (
    mpsc::Receiver<Written>,
    mpsc::Receiver<(NodeId, bool)>,
    mpsc::UnboundedReceiver<StorageError>,
);

/// Archived workflows removed from memory per Ready round: about 0.1 ms
/// of work, so a flush of thousands never stalls the loop at once.
const EVICT_BATCH: usize = 256;

/// Ticks between failover checks (and learner promotions).
const FAILOVER_CHECK_TICKS: u64 = 5;
/// A learner this close to the commit index counts as caught up.
const PROMOTE_LAG: u64 = 64;
/// A retention purge not applied after this long is proposed again.
const PURGE_RETRY_MS: u64 = 5_000;

/// One thing for the loop to handle (see [`RaftLoop::handle`]).
pub(crate) enum Input {
    /// A proposal from this node.
    Proposal(Proposal),
    /// A Raft message from a peer.
    Message(Message),
    /// A flush was written off the loop.
    Flushed(Written),
    /// News of a peer from the network (or of a snapshot transfer).
    Signal(PeerSignal),
    /// A tick of the Raft clock.
    Tick,
}

/// Channels the loop reads.
pub(crate) struct LoopInputs {
    pub proposals: mpsc::Receiver<Proposal>,
    pub inbound: mpsc::Receiver<Message>,
    pub unreachable: mpsc::Receiver<PeerSignal>,
    pub shutdown: watch::Receiver<bool>,
}

impl RaftLoop {
    pub(crate) fn new(
        raw: RawNode<RaftStore>,
        state: Arc<RwLock<StateMachine>>,
        events: broadcast::Sender<Arc<EventAt>>,
        status: watch::Sender<RaftStatus>,
        env: Environment,
        snapshots: Arc<SnapshotTransfers>,
        config: NodeConfig,
    ) -> Self {
        let store = raw.store().clone();
        let (snapshot_written, written) = mpsc::channel(1);
        let (snapshot_reports, reports) = mpsc::channel(64);
        let (files_failed, failed_files) = mpsc::unbounded_channel();
        let log_time = state.read().expect("state lock poisoned").log_time_ms();
        let log_clock = Arc::new(LogClock::new(env.clock.clone(), log_time));
        Self {
            raw,
            store,
            state,
            events,
            clock: env.clock,
            log_clock,
            outbox: env.outbox,
            pending: HashMap::new(),
            status,
            failover: Failover::new(config.owner_timeout, config.app_timeout),
            timers: TimerService::default(),
            config,
            ticks: 0,
            last_leader: 0,
            leading_since: None,
            pending_reads: HashMap::new(),
            read_nonce: random_u64(),
            next_read: 1,
            purge_proposed_at: None,
            snapshots,
            snapshotting: false,
            evicting: false,
            snapshot_wanted: false,
            jobs: env.jobs,
            snapshot_written,
            snapshot_reports,
            files_failed,
            snapshot_inputs: Some((written, reports, failed_files)),
        }
    }

    /// Runs until shutdown, then makes the log durable (a commit index
    /// written without its own fsync is synced). A storage failure stops the
    /// loop with an error: after a failed fsync nothing written since can be
    /// trusted. The caller keeps `inputs` until it has recorded the failure,
    /// so a proposal that finds the queue closed also finds the reason.
    pub(crate) async fn run(mut self, inputs: &mut LoopInputs) -> Result<(), StorageError> {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish_status();
        let (mut written, mut reports, mut failed_files) = self.take_inputs();
        let result = loop {
            let handled = tokio::select! {
                biased;
                _ = inputs.shutdown.changed() => break Ok(()),
                Some(flush) = written.recv() => self.handle(Input::Flushed(flush)),
                Some(e) = failed_files.recv() => break Err(e),
                Some((peer, delivered)) = reports.recv() => {
                    self.handle(Input::Signal(PeerSignal::Snapshot(peer, delivered)))
                }
                proposal = inputs.proposals.recv() => {
                    let Some(proposal) = proposal else { break Ok(()) };
                    let mut handled = self.handle(Input::Proposal(proposal));
                    let mut taken = 1;
                    while handled.is_ok() && taken < MAX_BATCH {
                        let Ok(proposal) = inputs.proposals.try_recv() else { break };
                        handled = self.handle(Input::Proposal(proposal));
                        taken += 1;
                    }
                    handled
                }
                message = inputs.inbound.recv() => {
                    let Some(message) = message else { break Ok(()) };
                    let mut handled = self.handle(Input::Message(message));
                    while handled.is_ok() {
                        let Ok(message) = inputs.inbound.try_recv() else { break };
                        handled = self.handle(Input::Message(message));
                    }
                    handled
                }
                Some(signal) = inputs.unreachable.recv() => self.handle(Input::Signal(signal)),
                _ = ticker.tick() => self.handle(Input::Tick),
            };
            if let Err(e) = handled.and_then(|()| self.ready()) {
                break Err(e);
            }
        };
        // The graceful stop OPERATIONS.md promises: what was written is on
        // disk before the node reports it stopped.
        let result = result.and_then(|()| self.store.sync());
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(match &result {
                Ok(()) => EngineError::ShuttingDown,
                Err(e) => EngineError::StorageFailed(e.to_string()),
            }));
        }
        tracing::debug!(node = self.raw.raft.id, "raft loop stopped");
        result
    }

    /// The clock that stamps this node's proposals; the node's own
    /// proposals take their stamps from it too.
    pub(crate) fn log_clock(&self) -> Arc<LogClock> {
        self.log_clock.clone()
    }

    /// The receivers of written flushes, transfer outcomes and failed
    /// compaction files; taken once, by whoever drives the loop.
    pub(crate) fn take_inputs(&mut self) -> SnapshotInputs {
        self.snapshot_inputs
            .take()
            .expect("the Raft loop is driven once")
    }

    /// Handles one input; the caller runs a Ready round ([`Self::ready`])
    /// after one or a batch of them. `run` drives it from channels and a
    /// timer; the simulation calls it directly.
    pub(crate) fn handle(&mut self, input: Input) -> Result<(), StorageError> {
        match input {
            Input::Proposal(proposal) => self.propose(proposal),
            Input::Message(message) => self.step(message),
            Input::Flushed(flush) => {
                self.snapshotting = false;
                self.flush_written(flush)?;
            }
            Input::Signal(signal) => match signal {
                PeerSignal::Unreachable(peer) => self.raw.report_unreachable(peer),
                PeerSignal::Snapshot(peer, delivered) => {
                    let status = if delivered {
                        raft::SnapshotStatus::Finish
                    } else {
                        tracing::info!(peer, "a snapshot for the peer was lost; it is sent again");
                        raft::SnapshotStatus::Failure
                    };
                    self.raw.report_snapshot(peer, status);
                }
                PeerSignal::Down(peer) => {
                    self.raw.report_unreachable(peer);
                    // A killed node's workflows move now, not after the
                    // owner timeout, and nothing new is placed there.
                    self.failover.down(peer);
                    self.check_failover();
                }
            },
            Input::Tick => {
                // Test hook (see `Faults::crash_raft_loop`): the way a bug
                // in raft-rs or here would end the loop.
                assert!(
                    !self.outbox.crash_requested(),
                    "raft loop crash requested by a test"
                );
                self.raw.tick();
                self.ticks += 1;
                self.fire_timers();
                if self.ticks.is_multiple_of(FAILOVER_CHECK_TICKS) {
                    self.check_failover();
                    self.promote_learners();
                    self.purge_expired();
                }
                // Callers that gave up (timeout) dropped their receiver.
                self.pending.retain(|_, reply| !reply.is_closed());
                self.pending_reads.retain(|_, reply| !reply.is_closed());
            }
        }
        Ok(())
    }

    /// The raft-rs node (the simulation reads its term and role).
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &RawNode<RaftStore> {
        &self.raw
    }

    fn step(&mut self, mut message: Message) {
        if let Err(refusal) =
            crate::consensus::raft_guard::check_against_log(&message, &self.raw.raft)
        {
            tracing::warn!(from = message.from, reason = %refusal, "raft message refused");
            self.outbox.note_refused();
            return;
        }
        let commit = message.commit;
        if crate::consensus::raft_guard::hold_heartbeat_commit(&mut message, &self.raw.raft) {
            tracing::warn!(
                from = message.from,
                commit,
                last_index = self.raw.raft.raft_log.last_index(),
                "heartbeat commits past this node's log; commit held"
            );
            self.outbox.note_refused();
        }
        if let Some(snapshot) = message.snapshot.as_ref()
            && decode_ref(&snapshot.data).is_some()
        {
            let meta = snapshot.get_metadata();
            if !self.snapshots.claim(meta.index, meta.term) {
                // Its state did not arrive (or was dropped as stale): the
                // leader learns of the failure from the transfer.
                tracing::warn!(
                    from = message.from,
                    index = meta.index,
                    "a snapshot whose state was not received is refused"
                );
                self.outbox.note_refused();
                return;
            }
        }
        self.failover.heard(message.from, self.clock.now());
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(error = %e, "raft message not stepped");
        }
    }

    fn propose(&mut self, proposal: Proposal) {
        let proposal = match proposal {
            Proposal::Commands(commands) => {
                for (command, reply) in commands {
                    self.propose(Proposal::Command { command, reply });
                }
                return;
            }
            Proposal::Liveness { reply } => {
                let _ = reply.send(self.liveness());
                return;
            }
            other => other,
        };
        // A follower forwards proposals to the leader (raft-rs does it); with
        // no known leader the proposal would be dropped, so say so at once.
        if self.raw.raft.leader_id == 0 {
            let no_leader = EngineError::NoLeader {
                node: self.raw.raft.id,
            };
            match proposal {
                Proposal::Command { reply, .. } | Proposal::ConfChange { reply, .. } => {
                    let _ = reply.send(Err(no_leader));
                }
                Proposal::TransferLeader { reply, .. } | Proposal::ReadIndex { reply } => {
                    let _ = reply.send(Err(no_leader));
                }
                Proposal::Liveness { .. } | Proposal::Commands(_) => {}
            }
            return;
        }
        let (id, result, reply) = match proposal {
            Proposal::TransferLeader { to, reply } => {
                let _ = reply.send(self.transfer_leader(to));
                return;
            }
            Proposal::Liveness { .. } | Proposal::Commands(_) => return,
            Proposal::ReadIndex { reply } => {
                // raft-rs forwards it from a follower and drops it on a
                // leader that has not committed in its term yet; the caller
                // retries after a while in both lost cases.
                let context = ReadContext {
                    node: self.raw.raft.id,
                    nonce: self.read_nonce,
                    counter: self.next_read,
                };
                self.next_read += 1;
                self.pending_reads.insert(context.counter, reply);
                self.raw.read_index(context.to_bytes());
                return;
            }
            Proposal::Command { command, reply } => {
                let data = command.encode_to_vec();
                (
                    command.proposal_id,
                    self.raw.propose(Vec::new(), data),
                    reply,
                )
            }
            Proposal::ConfChange {
                change,
                proposal_id,
                reply,
            } => (
                proposal_id,
                self.raw.propose_conf_change(Vec::new(), change),
                reply,
            ),
        };
        match result {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// On the leader: the voters it heard from within an election timeout
    /// (itself included), most caught-up first.
    fn liveness(&self) -> Liveness {
        if self.raw.raft.state != StateRole::Leader {
            return Liveness::default();
        }
        let me = self.raw.raft.id;
        let window = self.config.election_timeout();
        let now = self.clock.now();
        let prs = self.raw.raft.prs();
        let mut live: Vec<u64> = self
            .store
            .conf_state()
            .voters
            .into_iter()
            .filter(|id| {
                // A node whose port refuses connections is gone even if it
                // spoke a moment ago: a removal must not count on it.
                *id == me
                    || self.failover.heard_within(*id, window, now) && !self.failover.is_down(*id)
            })
            .collect();
        live.sort_by_key(|id| std::cmp::Reverse(prs.get(*id).map_or(0, |p| p.matched)));
        let led_for = self
            .leading_since
            .map_or(window, |since| now.saturating_duration_since(since));
        let everyone = live.len() == self.store.conf_state().voters.len();
        Liveness {
            is_leader: true,
            live_voters: live,
            settles_in: if everyone {
                std::time::Duration::ZERO
            } else {
                window.saturating_sub(led_for)
            },
        }
    }

    /// Starts a leadership transfer (raft-rs forwards it to the leader from
    /// a follower); picks the most caught-up other voter when `to` is None.
    fn transfer_leader(&mut self, to: Option<u64>) -> Result<u64, EngineError> {
        let me = self.raw.raft.id;
        let to = match to {
            Some(to) => to,
            None => {
                if self.raw.raft.state != StateRole::Leader {
                    return Err(EngineError::InvalidArgument(
                        "only the leader picks a transferee; name the target node".into(),
                    ));
                }
                let voters = self.store.conf_state().voters;
                let prs = self.raw.raft.prs();
                voters
                    .iter()
                    .filter(|id| **id != me)
                    .max_by_key(|id| prs.get(**id).map_or(0, |p| p.matched))
                    .copied()
                    .ok_or_else(|| {
                        EngineError::InvalidArgument("no other voter to hand leadership to".into())
                    })?
            }
        };
        tracing::info!(
            from = self.raw.raft.leader_id,
            to,
            "leadership transfer requested"
        );
        self.raw.transfer_leader(to);
        Ok(to)
    }

    /// One Ready round, in the order raft-rs requires: send messages, apply a
    /// snapshot, apply committed entries, append new entries and the hard
    /// state, fsync once, send messages that needed persistence, advance,
    /// then handle the light ready the same way.
    pub(crate) fn ready(&mut self) -> Result<(), StorageError> {
        // A query may have found the store unreadable.
        if let Some(failure) = self
            .state
            .read()
            .expect("state lock poisoned")
            .archive_failure()
        {
            return Err(StorageError::Failed(failure));
        }
        self.evict_archived();
        if !self.raw.has_ready() {
            // raft-rs may have asked for a snapshot without producing a Ready.
            return self.maybe_snapshot();
        }
        let mut ready = self.raw.ready();
        for read in ready.take_read_states() {
            let ours = ReadContext::from_bytes(&read.request_ctx)
                .filter(|c| c.node == self.raw.raft.id && c.nonce == self.read_nonce);
            if let Some(reply) = ours.and_then(|c| self.pending_reads.remove(&c.counter)) {
                let _ = reply.send(Ok(read.index));
            }
        }
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        let committed = ready.take_committed_entries();
        self.apply(committed)?;
        self.store.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            self.store.set_hard_state(hs)?;
        }
        // Only new entries, a snapshot, or a new term or vote must be durable
        // before going on. A hard state that differs only in its commit index
        // is written but rides on the next fsync: a lower commit index after
        // a crash is re-learnt from the leader, and everything committed is
        // already durable on a majority. Without this a leader paid a second
        // fsync per commit (after applying it) and the next proposal queued
        // behind it.
        if ready.must_sync() {
            self.store.sync()?;
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit)?;
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed)?;
        self.raw.advance_apply();
        self.maybe_snapshot()?;
        self.on_leader_change();
        self.publish_status();
        Ok(())
    }

    /// A proposal forwarded to a leader that is gone will never commit
    /// through it; waiting for its timeout would stall the caller. Fail the
    /// pending ones at once with a retryable error: retries are safe, as
    /// every command is idempotent or fenced (a retried checkpoint that did
    /// commit is refused by seq and ignored by the SDK).
    fn on_leader_change(&mut self) {
        let leader = self.raw.raft.leader_id;
        if leader == self.last_leader {
            return;
        }
        let previous = std::mem::replace(&mut self.last_leader, leader);
        self.leading_since = (leader == self.raw.raft.id).then(|| self.clock.now());
        if previous == 0 {
            return;
        }
        for (_, reply) in self.pending_reads.drain() {
            let _ = reply.send(Err(EngineError::LeaderChanged));
        }
        if self.pending.is_empty() {
            return;
        }
        tracing::info!(
            previous,
            leader,
            pending = self.pending.len(),
            "leader changed; pending proposals fail for retry"
        );
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(EngineError::LeaderChanged));
        }
    }

    /// Hands messages to the network, except snapshots: those go by a
    /// transfer of their own with the stored state (`snapshot_transfer`).
    fn send(&self, messages: Vec<Message>) {
        let (snapshots, others): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot);
        self.outbox.send(others);
        for message in snapshots {
            let to = message.to;
            let meta = message.get_snapshot().get_metadata();
            let state = self
                .store
                .snapshot_state()
                .filter(|s| s.reference.index == meta.index && s.reference.term == meta.term);
            let Some(state) = state else {
                let _ = self.snapshot_reports.try_send((to, false));
                continue;
            };
            self.outbox
                .send_snapshot(message, state, self.snapshot_reports.clone());
        }
    }

    /// A snapshot from the leader replaces the state machine: the state
    /// that arrived with it and was decoded off the loop, or (from an
    /// older leader) the state inside the message.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata().clone();
        let index = meta.index;
        let restored = if decode_ref(&snapshot.data).is_some() {
            let prepared = self
                .snapshots
                .take_prepared(index, meta.term)
                .ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "the state of the snapshot at index {index} is gone before its install"
                    ))
                })?;
            self.store.install_snapshot(meta, prepared.snapshot)?;
            // The log now starts after the snapshot: its store becomes the
            // node's (a restart before this rebuilds it from the snapshot).
            let mut state = prepared.state;
            state.promote_archive()?;
            state
        } else {
            let restored = StateMachine::restore(&snapshot.data, index)
                .map_err(|e| StorageError::Corrupt(format!("snapshot at index {index}: {e}")))?;
            self.store.apply_snapshot(snapshot)?;
            restored
        };
        for (id, address) in restored.member_addresses() {
            self.outbox.set_address(*id, address.clone());
        }
        // A joining node learns its cluster's identity here.
        if !restored.cluster_id().is_empty() {
            self.outbox.set_cluster_id(restored.cluster_id());
        }
        self.log_clock.observe(restored.log_time_ms());
        *self.state.write().expect("state lock poisoned") = restored;
        tracing::info!(index, "installed a snapshot from the leader");
        // Sessions and waiters re-read the state: the events of the entries
        // the snapshot covers were never produced on this node.
        let _ = self.events.send(Arc::new(EventAt {
            index,
            event: Event::StateReplaced,
        }));
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut state = self.state.write().expect("state lock poisoned");
        for entry in entries {
            state.set_applied_index(entry.index);
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let command = match Command::decode(entry.data.as_ref()) {
                        Ok(c) => c,
                        Err(e) => {
                            // Every node skips the same undecodable entry, so
                            // state stays identical; it can only come from a
                            // newer, incompatible version of this software.
                            tracing::error!(index = entry.index, error = %e, "undecodable log entry skipped");
                            continue;
                        }
                    };
                    let (outcome, events) = state.apply(&command);
                    if let Some(failure) = state.archive_failure() {
                        return Err(StorageError::Failed(failure));
                    }
                    if let Err(rejection) = &outcome {
                        log_rejection(entry.index, rejection);
                    }
                    // This leader's purge applied: the next chunk of a
                    // backlog may go at the next check.
                    if matches!(
                        command.kind,
                        Some(raftoral_proto::cluster::v1::command::Kind::PurgeFinished(_))
                    ) && command.proposer_node_id == self.raw.raft.id
                    {
                        self.purge_proposed_at = None;
                    }
                    // Events are sent while the state lock is held, so a
                    // subscriber that took a snapshot under the read lock sees
                    // every later change once.
                    for event in events {
                        let index = entry.index;
                        let _ = self.events.send(Arc::new(EventAt { index, event }));
                    }
                    if command.proposer_node_id == self.raw.raft.id
                        && let Some(reply) = self.pending.remove(&command.proposal_id)
                    {
                        let _ = reply.send(outcome.map_err(EngineError::from));
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    let change = ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| {
                        StorageError::Corrupt(format!("conf change at {}: {e}", entry.index))
                    })?;
                    let context =
                        ConfChangeContext::decode(change.context.as_ref()).unwrap_or_default();
                    let outcome = match self.raw.apply_conf_change(&change) {
                        Ok(conf_state) => {
                            // Durable before anything that follows it: a
                            // store flush covering this entry must never
                            // reach the disk first (the restart would then
                            // skip the entry with the record of it lost).
                            self.store.set_conf_state(&conf_state)?;
                            self.store.sync()?;
                            for single in change.get_changes() {
                                let node = single.node_id;
                                match single.get_change_type() {
                                    ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                                        state.set_member_address(node, context.address.clone());
                                        self.outbox.set_address(node, context.address.clone());
                                    }
                                    ConfChangeType::RemoveNode => {
                                        let now = state.advance_log_time(context.proposed_at_ms);
                                        let moved = state.remove_member(node, now);
                                        for event in moved {
                                            let index = entry.index;
                                            let _ = self
                                                .events
                                                .send(Arc::new(EventAt { index, event }));
                                        }
                                        self.outbox.remove_peer(node);
                                        if node == self.raw.raft.id {
                                            tracing::warn!(
                                                "this node was removed from the cluster"
                                            );
                                            step_down_if_leading(&mut self.raw.raft);
                                        }
                                    }
                                }
                            }
                            tracing::info!(index = entry.index, voters = ?conf_state.voters, "membership changed");
                            Ok(Applied::MembershipChanged)
                        }
                        Err(e) => {
                            tracing::warn!(index = entry.index, error = %e, "conf change refused");
                            Err(EngineError::Raft(e))
                        }
                    };
                    if context.proposer_node_id == self.raw.raft.id
                        && let Some(reply) = self.pending.remove(&context.proposal_id)
                    {
                        let _ = reply.send(outcome);
                    }
                }
                EntryType::EntryConfChange => {
                    tracing::warn!(
                        index = entry.index,
                        "v1 conf change ignored: Raftoral proposes v2 only"
                    );
                }
            }
        }
        self.log_clock.observe(state.log_time_ms());
        Ok(())
    }

    /// On the leader: proposes owner changes for workflows whose owner is
    /// gone. These proposals have no waiter (proposal id 0).
    fn check_failover(&mut self) {
        let me = self.raw.raft.id;
        let is_leader = self.raw.raft.state == StateRole::Leader;
        let changes = {
            let state = self.state.read().expect("state lock poisoned");
            self.failover.check(self.clock.now(), me, is_leader, &state)
        };
        for change in changes {
            let command = Command {
                proposer_node_id: me,
                proposal_id: 0,
                proposed_at_ms: self.log_clock.stamp(),
                kind: Some(change),
            };
            if let Err(e) = self.raw.propose(Vec::new(), command.encode_to_vec()) {
                tracing::debug!(error = %e, "failover proposal dropped");
            }
        }
    }

    /// On the leader: proposes the firing of due durable timers (every
    /// tick, so a timer fires within a tick of its deadline plus a commit).
    fn fire_timers(&mut self) {
        let is_leader = self.raw.raft.state == StateRole::Leader;
        let stamp = self.log_clock.stamp();
        let fire = {
            let state = self.state.read().expect("state lock poisoned");
            self.timers
                .check(self.clock.now(), stamp, is_leader, &state)
        };
        let Some(kind) = fire else { return };
        let command = Command {
            proposer_node_id: self.raw.raft.id,
            proposal_id: 0,
            proposed_at_ms: stamp,
            kind: Some(kind),
        };
        if let Err(e) = self.raw.propose(Vec::new(), command.encode_to_vec()) {
            tracing::debug!(error = %e, "timer firing not proposed yet");
        }
    }

    /// On the leader: proposes the removal of finished workflows past the
    /// retention period, when there are any (a look at the oldest one).
    /// At most one purge is in flight: the next is proposed only once the
    /// previous one is applied, or after a while if it was lost.
    fn purge_expired(&mut self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let now = self.log_clock.stamp();
        let wanted = now.saturating_sub(retention.as_millis() as u64);
        let (due, cutoff) = {
            let state = self.state.read().expect("state lock poisoned");
            let due = state.oldest_finished_ms().is_some_and(|at| at < wanted);
            let cutoff = if due {
                // A backlog goes in chunks (`NodeConfig::purge_chunk`), the
                // next proposed as soon as the previous one applied.
                state.purge_cutoff(wanted, self.config.purge_chunk)
            } else {
                wanted
            };
            (due, cutoff)
        };
        if !due
            || self
                .purge_proposed_at
                .is_some_and(|at| now < at + PURGE_RETRY_MS)
        {
            return;
        }
        let command = Command {
            proposer_node_id: self.raw.raft.id,
            proposal_id: 0,
            proposed_at_ms: now,
            kind: Some(raftoral_proto::cluster::v1::command::Kind::PurgeFinished(
                raftoral_proto::cluster::v1::PurgeFinished {
                    finished_before_ms: cutoff,
                },
            )),
        };
        match self.raw.propose(Vec::new(), command.encode_to_vec()) {
            Ok(()) => self.purge_proposed_at = Some(now),
            Err(e) => tracing::debug!(error = %e, "retention purge not proposed yet"),
        }
    }

    /// On the leader: a learner (a joining node) whose log has caught up
    /// with the commit index becomes a voter. Joining as a learner first
    /// keeps the quorum the same while the new node receives its snapshot,
    /// so a slow or lost transfer never stops the cluster's writes.
    fn promote_learners(&mut self) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let learners = self.store.conf_state().learners;
        let caught_up = learners.into_iter().find(|id| {
            self.raw
                .raft
                .prs()
                .get(*id)
                .is_some_and(|p| p.matched + PROMOTE_LAG >= committed)
        });
        let Some(node) = caught_up else { return };
        let address = self
            .state
            .read()
            .expect("state lock poisoned")
            .member_addresses()
            .get(&node)
            .cloned()
            .unwrap_or_default();
        let change = crate::consensus::proposal::single_change(
            ConfChangeType::AddNode,
            node,
            &ConfChangeContext {
                proposer_node_id: self.raw.raft.id,
                proposal_id: 0,
                address,
                proposed_at_ms: self.log_clock.stamp(),
            },
        );
        match self.raw.propose_conf_change(Vec::new(), change) {
            Ok(()) => tracing::info!(node, "learner caught up; promoting it to voter"),
            Err(e) => tracing::debug!(node, error = %e, "learner promotion not proposed yet"),
        }
    }

    /// Starts a flush once enough entries were applied since the last one,
    /// or when raft-rs needs a snapshot for a follower: what memory holds
    /// is taken here, in O(1) for the workflow table, and written to the
    /// archive on the flush thread (lower priority) while the loop goes on; a wanted
    /// snapshot is then encoded from the archive. The log is compacted
    /// once the flush is durable ([`Self::flush_written`]).
    fn maybe_snapshot(&mut self) -> Result<(), StorageError> {
        if self.snapshotting {
            return Ok(());
        }
        let applied = self.raw.raft.raft_log.applied;
        let wanted = self.snapshot_wanted || self.store.take_snapshot_wanted();
        let due = applied >= self.store.snapshot_index() + self.config.snapshot_entries;
        if !(due || wanted) {
            return Ok(());
        }
        let (flush, writer) = {
            let mut state = self.state.write().expect("state lock poisoned");
            // What the last flush archived leaves memory first, or this one
            // writes it again.
            state.evict_archived(usize::MAX);
            (state.flush(), state.archive().writer())
        };
        // The state machine's applied index, which the flush is the state of
        // (the same as raft-rs' here, after `advance_apply`).
        let applied = flush.index;
        let Some(term) = self.store.term_of(applied) else {
            self.snapshot_wanted = wanted;
            return Ok(());
        };
        self.snapshot_wanted = false;
        let conf_state = self.store.conf_state();
        let dir = self.store.dir();
        let done = self.snapshot_written.clone();
        let snapshots = self.snapshots.clone();
        self.snapshotting = true;
        self.publish_status();
        self.jobs.run(Box::new(move || {
            snapshots.hooks().encoding_starts();
            pause_point("flush starts");
            let started = std::time::Instant::now();
            let outcome = writer
                .write(&flush)
                .map_err(StorageError::from)
                .and_then(|ids| {
                    pause_point("flush archived");
                    let state = if wanted {
                        let written = write_state(dir.as_deref(), applied, term, |out| {
                            writer
                                .encode_to(out)
                                .map(|_| ())
                                .map_err(std::io::Error::other)
                        })?;
                        Some(written)
                    } else {
                        None
                    };
                    Ok((ids, state))
                });
            // Memory drops the archived workflows next: the flush's copy of
            // the table must be gone by then, or each removal copies the
            // nodes it still shares.
            drop(flush);
            if let Ok((archived, state)) = &outcome {
                tracing::debug!(
                    index = applied,
                    archived = archived.len(),
                    snapshot_bytes = state.as_ref().map(|s| s.reference.size),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "state machine flushed"
                );
            }
            let _ = done.blocking_send(Written {
                index: applied,
                term,
                conf_state,
                outcome,
            });
        }));
        Ok(())
    }

    /// Lets a batch of the workflows the last flush archived leave memory,
    /// a little per Ready round rather than a whole flush at once.
    fn evict_archived(&mut self) {
        if self.evicting {
            let left = self
                .state
                .write()
                .expect("state lock poisoned")
                .evict_archived(EVICT_BATCH);
            self.evicting = left > 0;
        }
    }

    /// A flush was written off the loop: the finished workflows it archived
    /// leave memory, it becomes the latest snapshot point (with the encoded
    /// state when one was wanted) and the log is compacted behind it. A
    /// failed write stops the node like any storage failure.
    fn flush_written(&mut self, flush: Written) -> Result<(), StorageError> {
        let (archived, state) = flush.outcome?;
        {
            let mut sm = self.state.write().expect("state lock poisoned");
            sm.flushed(archived)?;
            // The first batch now; the rest a batch per Ready round.
            self.evicting = sm.evict_archived(EVICT_BATCH) > 0;
        }
        let keep = self.retained_entries(flush.index);
        let wanted_now = state.is_none() && self.store.take_snapshot_wanted();
        let files =
            self.store
                .compact_to(flush.index, flush.term, flush.conf_state, state, keep)?;
        if let Some(files) = files {
            let failed = self.files_failed.clone();
            self.jobs.run(Box::new(move || {
                if let Err(e) = files.persist() {
                    let _ = failed.send(e);
                }
            }));
        }
        tracing::debug!(index = flush.index, "state flushed; log compacted");
        self.publish_status();
        // raft-rs may have asked for a snapshot meanwhile.
        self.snapshot_wanted |= wanted_now;
        self.maybe_snapshot()
    }

    /// Entries to keep behind a snapshot at `index`: `snapshot_keep_entries`,
    /// or on the leader back to the slowest healthy follower's matched
    /// index, so a follower that missed a moment (a pause, a short
    /// partition) catches up from the log instead of a whole snapshot;
    /// never more than `snapshot_max_retained_entries`. Healthy: heard from
    /// within the owner timeout, the point at which failover takes a node
    /// for gone; a follower silent for longer gets a snapshot when it
    /// returns.
    fn retained_entries(&self, index: u64) -> u64 {
        let keep = self.config.snapshot_keep_entries;
        if self.raw.raft.state != StateRole::Leader {
            return keep;
        }
        let me = self.raw.raft.id;
        let window = self.config.owner_timeout;
        let now = self.clock.now();
        let slowest = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me && self.failover.heard_within(**id, window, now))
            .map(|(_, p)| p.matched)
            .min();
        match slowest {
            Some(matched) => index
                .saturating_sub(matched)
                .min(self.config.snapshot_max_retained_entries)
                .max(keep),
            None => keep,
        }
    }

    pub(crate) fn publish_status(&self) {
        let raft = &self.raw.raft;
        let conf = self.store.conf_state();
        let status = RaftStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            snapshot_index: self.store.snapshot_index(),
            first_index: raft::Storage::first_index(&self.store).unwrap_or(0),
            is_leader: raft.state == StateRole::Leader,
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            flushing: self.snapshotting,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

/// A leader that applied its own removal steps down at once. raft-rs
/// keeps it leading (an untested branch of `post_conf_change`), and the
/// next append response it handles panics the loop: its own progress
/// is gone from the tracker. The hand-over before a removal
/// (`membership.rs`) makes this rare, not impossible: leadership can
/// move to the node between that check and the commit. Found by the
/// simulation (`simulation/`). It steps down in its term, so its vote
/// stands; as a non-voter it never campaigns again, and the others
/// elect a leader after an election timeout.
fn step_down_if_leading(raft: &mut raft::Raft<RaftStore>) {
    if raft.state == StateRole::Leader {
        tracing::info!(term = raft.term, "a removed leader steps down");
        let term = raft.term;
        raft.become_follower(term, raft::INVALID_ID);
    }
}

fn log_rejection(index: u64, rejection: &Rejection) {
    match rejection {
        // Fencing at work: a deposed owner's late proposal. Expected after a
        // failover, so not an error, but worth seeing.
        Rejection::NotOwner { .. }
        | Rejection::UnexpectedSeq { .. }
        | Rejection::UnexpectedAttempt { .. } => {
            tracing::info!(index, reason = %rejection, "proposal rejected by the state machine")
        }
        _ => tracing::debug!(index, reason = %rejection, "proposal rejected by the state machine"),
    }
}
