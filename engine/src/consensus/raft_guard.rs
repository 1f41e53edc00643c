//! Checks every Raft message received from the network before raft-rs sees
//! it. raft-rs trusts its peers: it panics on a proposal without entries,
//! indexes past the end of an empty read request, and aborts on a commit
//! index beyond its log. The node-to-node port is reachable by anything on
//! the network, so a message that a correct peer could not have sent is
//! dropped here (and logged) instead of stopping the node.
//!
//! Two stages: [`check_peer_message`] runs on the receiving gRPC task and
//! needs only the membership and the message; [`check_against_log`] runs in
//! the Raft loop, right before the step, against the current log.

use protobuf::Message as _;
use raft::prelude::{ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{Raft, StateRole};

use crate::workflows::state_machine::{NodeId, StateMachine};

/// Terms above this are refused: real terms grow by one per election, and
/// raft-rs adds to them without overflow checks.
const MAX_TERM: u64 = u32::MAX as u64;
/// Log positions above this are refused, for the same reason.
const MAX_INDEX: u64 = 1 << 62;

/// Why a received Raft message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A message type only a node sends to itself (MsgHup, MsgBeat, ...).
    #[error("{0:?} is local to a node and never sent by a peer")]
    LocalType(MessageType),
    /// `from` is not the node that sent the batch.
    #[error("message from node {from} in a batch sent by node {batch_from}")]
    SenderMismatch {
        /// The message's `from`.
        from: NodeId,
        /// The batch's `from_node_id`.
        batch_from: NodeId,
    },
    /// `to` is not this node.
    #[error("message for node {to} received by node {me}")]
    WrongRecipient {
        /// The message's `to`.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The sender is not a voter or learner here (or was removed).
    #[error("node {from} is not a member of this cluster and may not send {kind:?}")]
    NotMember {
        /// The sender.
        from: NodeId,
        /// What it sent.
        kind: MessageType,
    },
    /// A field is missing or out of range for this message type.
    #[error("malformed {kind:?}: {why}")]
    Malformed {
        /// The message type.
        kind: MessageType,
        /// What is wrong.
        why: &'static str,
    },
    /// The message contradicts this node's log in a way that only a forged
    /// message can (raft-rs would abort on it).
    #[error("{kind:?} inconsistent with this node's log: {why}")]
    Inconsistent {
        /// The message type.
        kind: MessageType,
        /// What does not fit.
        why: &'static str,
    },
}

/// Who sent a batch and what this node knows of its membership.
pub(crate) struct Receiver<'a> {
    /// This node.
    pub me: NodeId,
    /// The batch's `from_node_id`.
    pub batch_from: NodeId,
    /// Current voters (empty on a node started with `--join`).
    pub voters: &'a [NodeId],
    /// Current learners.
    pub learners: &'a [NodeId],
    /// True when `batch_from` was removed from the cluster.
    pub removed: bool,
}

/// Checks a message received from a peer against the sender, the
/// membership and the fields its type requires.
pub(crate) fn check_peer_message(m: &Message, rx: &Receiver<'_>) -> Result<(), Refusal> {
    use MessageType::*;
    let kind = m.get_msg_type();
    let malformed = |why| Err(Refusal::Malformed { kind, why });
    match kind {
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
            return Err(Refusal::LocalType(kind));
        }
        _ => {}
    }
    // A forwarded transfer names the transferee in `from`; every other
    // message names its sender.
    if kind != MsgTransferLeader && m.from != rx.batch_from {
        return Err(Refusal::SenderMismatch {
            from: m.from,
            batch_from: rx.batch_from,
        });
    }
    if m.to != rx.me {
        return Err(Refusal::WrongRecipient {
            to: m.to,
            me: rx.me,
        });
    }
    if rx.batch_from == 0 || rx.batch_from == rx.me || m.from == 0 {
        return malformed("sender id is 0 or this node's own");
    }
    let member = |id: NodeId| rx.voters.contains(&id) || rx.learners.contains(&id);
    // The leader's replication traffic is accepted from a sender this node
    // does not know yet: a node started with `--join` has no membership
    // until the leader's snapshot arrives, and a node that was down during a
    // membership change learns it from the new leader's entries. Everything
    // else, proposals above all, comes from members only.
    let leader_traffic = matches!(kind, MsgAppend | MsgHeartbeat | MsgSnapshot);
    if rx.removed || !(member(rx.batch_from) || leader_traffic) {
        return Err(Refusal::NotMember {
            from: rx.batch_from,
            kind,
        });
    }
    if kind == MsgTransferLeader && !rx.voters.contains(&m.from) {
        return malformed("the transferee is not a voter");
    }
    // raft-rs sends proposals and read requests without a term (they are
    // forwarded as if local) and every other message with one.
    let termless = matches!(kind, MsgPropose | MsgReadIndex);
    if termless != (m.term == 0) {
        return malformed(if termless {
            "a forwarded request carries no term"
        } else {
            "term 0"
        });
    }
    if m.term > MAX_TERM || m.log_term > MAX_TERM {
        return malformed("term out of range");
    }
    if m.index > MAX_INDEX || m.commit > MAX_INDEX || m.reject_hint > MAX_INDEX {
        return malformed("log index out of range");
    }
    // Raftoral never asks for a snapshot by itself (raft-rs's
    // `request_snapshot`); a forged request would make the leader snapshot
    // and send its state over and over.
    if m.request_snapshot != 0 {
        return malformed("a snapshot request");
    }
    match kind {
        MsgPropose if m.entries.is_empty() => return malformed("no entries"),
        MsgPropose => check_entries(kind, &m.entries, MAX_TERM)?,
        MsgReadIndex | MsgReadIndexResp if m.entries.len() != 1 => {
            return malformed("a read request carries exactly one context entry");
        }
        MsgAppend => {
            if m.log_term > m.term {
                return malformed("previous entry's term above the message's term");
            }
            // raft-rs reads the term of an index past its log as 0, so a
            // previous entry "at term 0" past the log would match, and the
            // commit that follows would abort on an index it does not have
            // (found by the fuzzer). Every real entry has a term.
            if m.index > 0 && m.log_term == 0 {
                return malformed("previous entry without a term");
            }
            check_entries(kind, &m.entries, m.term)?;
            let mut last_term = m.log_term;
            for (i, entry) in m.entries.iter().enumerate() {
                // Entries follow the previous one without gaps (raft-rs
                // slices its log by these indexes) and terms never decrease.
                if Some(entry.index) != m.index.checked_add(i as u64 + 1) {
                    return malformed("entries are not contiguous after the previous index");
                }
                if entry.term < last_term || entry.term == 0 {
                    return malformed("entry terms decrease or are 0");
                }
                last_term = entry.term;
            }
        }
        MsgSnapshot => check_snapshot(m)?,
        _ => {}
    }
    Ok(())
}

/// True when a batch without a cluster id may still be taken by a node that
/// knows its id: a node started with `--join` learns the id only with the
/// leader's snapshot, and its answers to the leader's first probes (which
/// make the leader send that snapshot) carry none. So: a member, sending
/// nothing but answers to replication.
pub(crate) fn answers_without_cluster_id(messages: &[Message], rx: &Receiver<'_>) -> bool {
    let member = rx.voters.contains(&rx.batch_from) || rx.learners.contains(&rx.batch_from);
    member
        && messages.iter().all(|m| {
            matches!(
                m.get_msg_type(),
                MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
            )
        })
}

/// Entries that carry a membership change must decode as one the Raft loop
/// can apply: an undecodable one would stop every node that commits it.
fn check_entries(kind: MessageType, entries: &[Entry], max_term: u64) -> Result<(), Refusal> {
    let malformed = |why| Err(Refusal::Malformed { kind, why });
    for entry in entries {
        if entry.term > max_term || entry.index > MAX_INDEX {
            return malformed("entry term or index out of range");
        }
        match entry.get_entry_type() {
            EntryType::EntryNormal => {}
            // Raftoral proposes v2 changes only.
            EntryType::EntryConfChange => return malformed("a v1 membership change"),
            EntryType::EntryConfChangeV2 => match ConfChangeV2::parse_from_bytes(&entry.data) {
                Ok(change) if change.changes.len() == 1 && change.changes[0].node_id != 0 => {}
                _ => return malformed("a membership change other than one add or remove"),
            },
        }
    }
    Ok(())
}

/// A snapshot must describe a membership raft-rs can restore and carry a
/// state the state machine can load; raft-rs aborts on the first, and the
/// Raft loop would stop on the second.
fn check_snapshot(m: &Message) -> Result<(), Refusal> {
    let kind = MessageType::MsgSnapshot;
    let malformed = |why| Err(Refusal::Malformed { kind, why });
    let Some(snapshot) = m.snapshot.as_ref() else {
        return malformed("no snapshot");
    };
    let meta = snapshot.get_metadata();
    if meta.index == 0 || meta.index > MAX_INDEX || meta.term == 0 || meta.term > m.term {
        return malformed("snapshot index or term out of range");
    }
    let cs = meta.get_conf_state();
    let mut ids: Vec<NodeId> = cs.voters.iter().chain(&cs.learners).copied().collect();
    let members = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if cs.voters.is_empty()
        || ids.len() != members
        || ids.first() == Some(&0)
        || !cs.voters_outgoing.is_empty()
        || !cs.learners_next.is_empty()
        || cs.auto_leave
    {
        return malformed("snapshot membership is not a plain set of distinct voters and learners");
    }
    // The state travels apart (see `snapshot_transfer`): a reference is
    // checked where the state arrives. Inline state is an older sender's.
    if crate::consensus::storage::snapshot_state::decode_ref(&snapshot.data).is_none()
        && StateMachine::restore(&snapshot.data, meta.index).is_err()
    {
        return malformed("snapshot state does not decode");
    }
    Ok(())
}

/// Checks a peer's message against this node's role and log, in the Raft
/// loop right before the step: what raft-rs would abort on, or what would
/// corrupt the leader's view of a follower.
pub(crate) fn check_against_log<T: raft::Storage>(
    m: &Message,
    raft: &Raft<T>,
) -> Result<(), Refusal> {
    let kind = m.get_msg_type();
    let last = raft.raft_log.last_index();
    let inconsistent = |why| Err(Refusal::Inconsistent { kind, why });
    match kind {
        // A follower would forward it again, and raft-rs aborts when it
        // forwards a transfer that carries a term (every one from a peer
        // does). The asking node retries against the leader it sees.
        MessageType::MsgTransferLeader if raft.state != StateRole::Leader => {
            inconsistent("a forwarded transfer reached a node that does not lead")
        }
        // A follower cannot hold more than the leader sent it.
        MessageType::MsgAppendResponse if !m.reject && m.index > last => {
            inconsistent("acknowledges entries this node never had")
        }
        _ => Ok(()),
    }
}

/// raft-rs commits to a heartbeat's commit index without checking it and
/// aborts when that lies past its log. A correct leader never sends that
/// (it sends at most what this node acknowledged), so the leader's view of
/// this node is wrong, e.g. after a forged acknowledgement. The heartbeat
/// is kept for the leader contact it proves, with its commit held at this
/// node's own: nothing unproven is committed, and the node stays a quiet
/// follower instead of campaigning against a leader that is fine. True when
/// the commit was held.
pub(crate) fn hold_heartbeat_commit<T: raft::Storage>(m: &mut Message, raft: &Raft<T>) -> bool {
    if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > raft.raft_log.last_index() {
        m.commit = raft.raft_log.committed;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx(voters: &[NodeId]) -> Receiver<'_> {
        Receiver {
            me: 1,
            batch_from: 2,
            voters,
            learners: &[],
            removed: false,
        }
    }

    fn message(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = 2;
        m.to = 1;
        m.term = 3;
        m
    }

    #[test]
    fn the_two_byte_frames_that_stopped_a_node_are_refused() {
        for bytes in [[0x08u8, 0x02], [0x08, 0x0f]] {
            let m = Message::parse_from_bytes(&bytes).unwrap();
            let refused = check_peer_message(&m, &rx(&[1, 2, 3]));
            assert!(refused.is_err(), "{bytes:?} accepted");
        }
        let mut propose = message(MessageType::MsgPropose);
        propose.term = 0;
        assert!(matches!(
            check_peer_message(&propose, &rx(&[1, 2, 3])),
            Err(Refusal::Malformed {
                why: "no entries",
                ..
            })
        ));
        propose.entries.push(Entry::default());
        assert_eq!(check_peer_message(&propose, &rx(&[1, 2, 3])), Ok(()));
    }

    #[test]
    fn proposals_come_from_members_only_and_leader_traffic_from_anyone_not_removed() {
        let mut propose = message(MessageType::MsgPropose);
        propose.term = 0;
        propose.entries.push(Entry::default());
        assert!(matches!(
            check_peer_message(&propose, &rx(&[1, 3])),
            Err(Refusal::NotMember { from: 2, .. })
        ));
        // A joining node knows no members yet and must accept its leader.
        let heartbeat = message(MessageType::MsgHeartbeat);
        assert_eq!(check_peer_message(&heartbeat, &rx(&[])), Ok(()));
        let removed = Receiver {
            removed: true,
            ..rx(&[])
        };
        assert!(check_peer_message(&heartbeat, &removed).is_err());
        let vote = message(MessageType::MsgRequestVote);
        assert!(check_peer_message(&vote, &rx(&[])).is_err());
    }

    #[test]
    fn local_types_forged_senders_and_gaps_are_refused() {
        let voters = [1, 2, 3];
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert_eq!(
                check_peer_message(&message(kind), &rx(&voters)),
                Err(Refusal::LocalType(kind))
            );
        }
        let mut other = message(MessageType::MsgHeartbeat);
        other.from = 3;
        assert!(check_peer_message(&other, &rx(&voters)).is_err());
        let mut elsewhere = message(MessageType::MsgHeartbeat);
        elsewhere.to = 3;
        assert!(check_peer_message(&elsewhere, &rx(&voters)).is_err());
        let mut append = message(MessageType::MsgAppend);
        append.index = 5;
        append.log_term = 2;
        let mut entry = Entry {
            index: 6,
            term: 3,
            ..Entry::default()
        };
        append.entries.push(entry.clone());
        assert_eq!(check_peer_message(&append, &rx(&voters)), Ok(()));
        entry.index = 8;
        append.entries.push(entry);
        assert!(check_peer_message(&append, &rx(&voters)).is_err());
        // A previous entry without a term would match any index past the
        // receiver's log.
        let mut beyond = message(MessageType::MsgAppend);
        beyond.index = 1_000;
        beyond.commit = 1_000;
        assert!(check_peer_message(&beyond, &rx(&voters)).is_err());
        let mut asking = message(MessageType::MsgAppendResponse);
        asking.request_snapshot = 3;
        assert!(check_peer_message(&asking, &rx(&voters)).is_err());
    }
}
