//! Linearizable reads: a read on any node first learns, through Raft's
//! ReadIndex, the commit index the leader had when the read arrived, and
//! waits until this node has applied it. A read then sees every write that
//! completed before it started, wherever that write was made; a node that
//! cannot reach the leader answers UNAVAILABLE instead of stale data.

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::consensus::proposal::Proposal;
use crate::error::EngineError;
use crate::node::Node;

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
