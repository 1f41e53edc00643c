//! Linearizable reads: a read on any node first learns, through Raft's
//! ReadIndex, the commit index the leader had when the read arrived, and
//! waits until this node has applied it. A read then sees every write that
//! completed before it started, wherever that write was made; a node that
//! cannot reach the leader answers UNAVAILABLE instead of stale data.

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::EngineError;
use crate::node::Node;
use crate::raft_loop::Proposal;

impl Node {
    /// Waits until this node's state covers every write committed before
    /// the call (one round to the leader's quorum). Fails with a retryable
    /// error after the proposal timeout when no leader can be reached.
    ///
    /// ```no_run
    /// # async fn demo(node: raftoral::Node) -> Result<(), raftoral::EngineError> {
    /// node.read_barrier().await?;
    /// let fresh = node.workflow("order-42");
    /// # Ok(()) }
    /// ```
    pub async fn read_barrier(&self) -> Result<(), EngineError> {
        let config = self.config();
        let timeout = config.proposal_timeout;
        let deadline = Instant::now() + timeout;
        // A request raft-rs dropped (a leader not settled in its term, a
        // forward lost with its leader) is sent again after this long.
        let attempt = config.election_timeout();
        let mut first = true;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(EngineError::ProposalTimeout(timeout));
            }
            if self.raft_status().leader_id == 0 {
                self.wait_status(remaining, |s| s.leader_id != 0).await;
                continue;
            }
            if !std::mem::take(&mut first) {
                self.note_read_retry();
            }
            let (reply, answer) = oneshot::channel();
            self.queue(Proposal::ReadIndex { reply }).await?;
            match tokio::time::timeout(attempt.min(remaining), answer).await {
                Ok(Ok(Ok(index))) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    return if self
                        .wait_status(remaining, |s| s.applied_index >= index)
                        .await
                    {
                        Ok(())
                    } else {
                        Err(EngineError::ProposalTimeout(timeout))
                    };
                }
                Ok(Ok(Err(e))) if e.is_retryable() => {}
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(self.stopped_error()),
                Err(_) => {}
            }
        }
    }
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
    use crate::node::random_u64;

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
