//! What a node hands its Raft loop: proposals (commands, membership
//! changes, leadership transfers, reads) and their replies, the context of
//! a linearizable read, and the stamps and ids a proposal carries.

use std::time::{SystemTime, UNIX_EPOCH};

use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raftoral_proto::cluster::v1::{Command, ConfChangeContext};
use tokio::sync::oneshot;

use crate::error::EngineError;
use crate::workflows::state_machine::Applied;

/// The reply a proposer waits for.
pub(crate) type ProposalReply = oneshot::Sender<Result<Applied, EngineError>>;

/// A change on its way into the log.
pub(crate) enum Proposal {
    /// A state-machine command.
    Command {
        command: Command,
        reply: ProposalReply,
    },
    /// A membership change; its context carries the proposal id.
    ConfChange {
        change: ConfChangeV2,
        proposal_id: u64,
        reply: ProposalReply,
    },
    /// Hand leadership to `to`, or (None, on the leader) to the most
    /// caught-up other voter. The reply names the target; the move itself
    /// completes asynchronously (watch the status).
    TransferLeader {
        to: Option<u64>,
        reply: oneshot::Sender<Result<u64, EngineError>>,
    },
    /// Raft ReadIndex: the reply is a commit index that, once applied here,
    /// covers every write committed before the request (linearizable reads).
    ReadIndex {
        reply: oneshot::Sender<Result<u64, EngineError>>,
    },
    /// The leader's view of which voters are live; see [`Liveness`].
    Liveness { reply: oneshot::Sender<Liveness> },
    /// Commands handed over together (steps an app sent side by side):
    /// proposed in one go, so they share one append and one fsync.
    Commands(Vec<(Command, ProposalReply)>),
}

/// Which voters a leader has heard from recently, for membership changes
/// that must not cost the quorum.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    /// True when the answering node leads (the rest is empty otherwise).
    pub is_leader: bool,
    /// Voters heard from within an election timeout (the leader included),
    /// most caught-up first.
    pub live_voters: Vec<u64>,
    /// Zero when `live_voters` can be trusted; otherwise how long until it
    /// can: a leader elected less than an election timeout ago that has not
    /// heard from every voter yet (its followers answer its first
    /// heartbeats; until the window has passed, "not heard" means "not asked
    /// yet", not "dead").
    pub settles_in: std::time::Duration,
}

/// A membership change of one node (never a joint one: each commits with
/// the quorum of the membership it changes), with its context.
pub(crate) fn single_change(
    kind: ConfChangeType,
    node: u64,
    context: &ConfChangeContext,
) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = node;
    let mut change = ConfChangeV2::default();
    change.set_changes(vec![single].into());
    change.context = prost::Message::encode_to_vec(context).into();
    change
}

/// A random 64-bit value, different in every process (and every node
/// started in one): seeds proposal ids and read contexts so that nothing a
/// previous run left in the log or on the leader can be mistaken for ours.
pub(crate) fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The context of a ReadIndex request: the leader keeps one pending request
/// per context and drops a second with the same bytes, so contexts must not
/// collide between nodes (node id) or with requests of an earlier run of
/// this node still pending on the leader (a random per-process nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadContext {
    /// The requesting node.
    pub node: u64,
    /// Its per-process nonce.
    pub nonce: u64,
    /// Its request counter.
    pub counter: u64,
}

impl ReadContext {
    const LEN: usize = 24;

    /// The bytes raft-rs carries to the leader and back.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::LEN);
        for part in [self.node, self.nonce, self.counter] {
            bytes.extend_from_slice(&part.to_le_bytes());
        }
        bytes
    }

    /// Parses [`ReadContext::to_bytes`]; None for anything else.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let part = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i * 8..(i + 1) * 8]);
            u64::from_le_bytes(word)
        };
        Some(Self {
            node: part(0),
            nonce: part(1),
            counter: part(2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_contexts_differ_between_nodes_and_runs_and_round_trip() {
        let a = ReadContext {
            node: 2,
            nonce: random_u64(),
            counter: 1,
        };
        let b = ReadContext { node: 3, ..a };
        let rerun = ReadContext {
            nonce: random_u64(),
            ..a
        };
        assert_ne!(a.to_bytes(), b.to_bytes());
        assert_ne!(a.to_bytes(), rerun.to_bytes());
        assert_eq!(ReadContext::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(ReadContext::from_bytes(&1u64.to_le_bytes()), None);
    }
}
