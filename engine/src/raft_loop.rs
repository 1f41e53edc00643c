//! The task that drives one raft-rs group.
//!
//! The loop is event-driven: a proposal or an incoming message is handled at
//! once and followed by a Ready round; ticks run on their own timer. All
//! proposals waiting in the channel are taken before the Ready round, so a busy
//! node appends (and, with on-disk storage, syncs) them as one batch: group
//! commit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{Entry, EntryType, Message};
use raft::{RawNode, StateRole, storage::MemStorage};
use raftoral_proto::cluster::v1::Command;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{EngineError, Rejection};
use crate::event::Event;
use crate::state_machine::{Applied, StateMachine};

/// The reply a proposer waits for.
pub(crate) type ProposalReply = oneshot::Sender<Result<Applied, EngineError>>;

/// A command on its way into the log.
pub(crate) struct Proposal {
    pub command: Command,
    pub reply: ProposalReply,
}

/// Most proposals taken from the channel for one Ready round; bounds the
/// latency a huge burst adds to the first proposal of the next round.
const MAX_BATCH: usize = 1024;

/// Shared, read-mostly view of the role, for status queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// Known leader; 0 when none.
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Highest committed index.
    pub commit_index: u64,
    /// True when this node leads.
    pub is_leader: bool,
}

pub(crate) struct RaftLoop {
    raw: RawNode<MemStorage>,
    state: Arc<RwLock<StateMachine>>,
    events: broadcast::Sender<Arc<Event>>,
    /// proposal_id → waiting proposer (only proposals made on this node).
    pending: HashMap<u64, ProposalReply>,
    status: watch::Sender<RaftStatus>,
    tick_interval: Duration,
}

impl RaftLoop {
    pub(crate) fn new(
        raw: RawNode<MemStorage>,
        state: Arc<RwLock<StateMachine>>,
        events: broadcast::Sender<Arc<Event>>,
        status: watch::Sender<RaftStatus>,
        tick_interval: Duration,
    ) -> Self {
        Self {
            raw,
            state,
            events,
            pending: HashMap::new(),
            status,
            tick_interval,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut proposals: mpsc::Receiver<Proposal>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                proposal = proposals.recv() => {
                    let Some(proposal) = proposal else { break };
                    self.propose(proposal);
                    let mut taken = 1;
                    while taken < MAX_BATCH {
                        let Ok(proposal) = proposals.try_recv() else { break };
                        self.propose(proposal);
                        taken += 1;
                    }
                }
                _ = ticker.tick() => {
                    self.raw.tick();
                    // Callers that gave up (timeout) dropped their receiver.
                    self.pending.retain(|_, reply| !reply.is_closed());
                }
            }
            self.on_ready();
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(EngineError::ShuttingDown));
        }
        tracing::debug!(node = self.raw.raft.id, "raft loop stopped");
    }

    fn propose(&mut self, proposal: Proposal) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = proposal.reply.send(Err(EngineError::NoLeader {
                node: self.raw.raft.id,
            }));
            return;
        }
        let id = proposal.command.proposal_id;
        let data = proposal.command.encode_to_vec();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => {
                self.pending.insert(id, proposal.reply);
            }
            Err(e) => {
                let _ = proposal.reply.send(Err(e.into()));
            }
        }
    }

    /// One Ready round, in the order raft-rs requires: send messages, apply a
    /// snapshot, apply committed entries, append new entries, persist the hard
    /// state, send messages that needed persistence, advance, then handle the
    /// light ready the same way.
    fn on_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            if let Err(e) = self.raw.mut_store().wl().apply_snapshot(snapshot) {
                tracing::error!(error = %e, "cannot apply raft snapshot");
            }
        }
        let committed = ready.take_committed_entries();
        self.apply(committed);
        if !ready.entries().is_empty()
            && let Err(e) = self.raw.mut_store().wl().append(ready.entries())
        {
            tracing::error!(error = %e, "cannot append raft entries");
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().wl().set_hardstate(hs.clone());
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw
                .mut_store()
                .wl()
                .mut_hard_state()
                .set_commit(commit);
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.raw.advance_apply();
        self.publish_status();
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            // A single-node group never addresses another node; the cluster
            // transport arrives with multi-node support.
            tracing::warn!(to = m.to, msg_type = ?m.get_msg_type(), "no transport for raft message; dropped");
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut state = self.state.write().expect("state lock poisoned");
        for entry in entries {
            state.set_applied_index(entry.index);
            if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            let command = match Command::decode(entry.data.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    // Every node skips the same undecodable entry, so state stays
                    // identical; it can only come from a newer, incompatible
                    // version of this software.
                    tracing::error!(index = entry.index, error = %e, "undecodable log entry skipped");
                    continue;
                }
            };
            let (outcome, events) = state.apply(&command);
            if let Err(rejection) = &outcome {
                log_rejection(entry.index, rejection);
            }
            // Events are sent while the state lock is held, so a subscriber that
            // took a snapshot under the read lock sees every later change once.
            for event in events {
                let _ = self.events.send(Arc::new(event));
            }
            if command.proposer_node_id == self.raw.raft.id
                && let Some(reply) = self.pending.remove(&command.proposal_id)
            {
                let _ = reply.send(outcome.map_err(EngineError::from));
            }
        }
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let status = RaftStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            is_leader: raft.state == StateRole::Leader,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

fn log_rejection(index: u64, rejection: &Rejection) {
    match rejection {
        // Fencing at work: a deposed owner's late proposal. Expected after a
        // failover, so not an error, but worth seeing.
        Rejection::NotOwner { .. } | Rejection::UnexpectedSeq { .. } => {
            tracing::info!(index, reason = %rejection, "proposal rejected by the state machine")
        }
        _ => tracing::debug!(index, reason = %rejection, "proposal rejected by the state machine"),
    }
}
