//! Membership changes (Raft conf changes) and the cluster view.

use raft::prelude::ConfChangeType;
use raftoral_proto::cluster::v1::{ConfChangeContext, Member, MemberRole};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::consensus::proposal::Proposal;
use crate::consensus::raft_loop::RaftStatus;
use crate::error::EngineError;
use crate::node::Node;
use crate::workflows::state_machine::NodeId;

/// Proposals of a removal that met a leader change, after the first.
const REMOVE_ATTEMPTS: u32 = 5;
/// Pause before the next one, times the attempt: lets an election settle.
const REMOVE_RETRY_PAUSE: Duration = Duration::from_millis(100);

impl Node {
    /// Adds `node_id` (reachable at `address`) as a learner; the leader
    /// promotes it to voter once it has caught up, so the quorum does not
    /// change while it receives its snapshot. Ids are never reused: an id
    /// that is or was a member is refused.
    pub async fn add_node(
        &self,
        node_id: NodeId,
        address: &str,
    ) -> Result<Vec<Member>, EngineError> {
        if node_id == 0 || address.is_empty() {
            return Err(EngineError::InvalidArgument(
                "a joining node needs an id of at least 1 and an address".into(),
            ));
        }
        let status = self.raft_status();
        if status.voters.contains(&node_id) || status.learners.contains(&node_id) {
            // Retried joins of the same node at the same address succeed.
            let same = self.read(|sm| sm.member_addresses().get(&node_id).cloned());
            if same.as_deref() == Some(address) {
                return Ok(self.members());
            }
            return Err(EngineError::AlreadyExists(format!(
                "node id {node_id} is already a member at {}",
                same.unwrap_or_default()
            )));
        }
        if self.read(|sm| sm.was_removed(node_id)) {
            return Err(EngineError::AlreadyExists(format!(
                "node id {node_id} was removed from this cluster and is never reused; start the node with a new id and empty storage"
            )));
        }
        self.change_membership(ConfChangeType::AddLearnerNode, node_id, address)
            .await?;
        Ok(self.members())
    }

    /// Removes `node_id` from the membership. Only the leader decides (the
    /// gRPC service forwards the request there; elsewhere this answers
    /// [`EngineError::NotLeader`]): it refuses a removal that would leave
    /// fewer live voters than a quorum of the new membership, unless
    /// `force`, and when it removes itself it first hands leadership to the
    /// most caught-up live voter, since a removed leader would go on leading.
    ///
    /// ```no_run
    /// # async fn demo(leader: raftoral::Node) -> Result<(), raftoral::EngineError> {
    /// let members = leader.remove_node(3, false).await?;
    /// assert!(members.iter().all(|m| m.node_id != 3));
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(
        &self,
        node_id: NodeId,
        force: bool,
    ) -> Result<Vec<Member>, EngineError> {
        let status = self.raft_status();
        if !status.voters.contains(&node_id) && !status.learners.contains(&node_id) {
            return Err(EngineError::NotMember(node_id));
        }
        let voter = status.voters.contains(&node_id);
        let remaining: Vec<NodeId> = status
            .voters
            .iter()
            .copied()
            .filter(|id| *id != node_id)
            .collect();
        if voter && remaining.is_empty() {
            return Err(EngineError::QuorumAtRisk(format!(
                "node {node_id} is the only voter; add another node before removing it"
            )));
        }
        let quorum = remaining.len() / 2 + 1;
        let live: Vec<NodeId> = self
            .live_voters()
            .await?
            .into_iter()
            .filter(|id| *id != node_id)
            .collect();
        if voter && live.len() < quorum && !force {
            let down: Vec<NodeId> = remaining
                .iter()
                .copied()
                .filter(|id| !live.contains(id))
                .collect();
            return Err(EngineError::QuorumAtRisk(format!(
                "removing node {node_id} would leave {} live voters of {} ({down:?} not heard from recently), fewer than the {quorum} needed to commit: bring those nodes back first, remove one of them instead, or force the removal (raftoral cluster remove --force)",
                live.len(),
                remaining.len()
            )));
        }
        // A leader removing itself hands over first (to the most caught-up
        // live voter, the first of `live`): propose_removal checks that
        // before every attempt.
        self.propose_removal(node_id, &live).await?;
        let gone = |s: &RaftStatus| !s.voters.contains(&node_id) && !s.learners.contains(&node_id);
        // The reply comes when the change is applied; the status this node
        // publishes follows a moment later. Answer with the membership as
        // changed, not the one before.
        let _ = self.wait_status(self.config().proposal_timeout, gone).await;
        Ok(self.members())
    }

    /// On the leader: the voters it heard from within an election timeout,
    /// itself included, most caught-up first. Elsewhere
    /// [`EngineError::NotLeader`]. A leader elected less than an election
    /// timeout ago that has not heard from every voter waits until it has,
    /// or until that window has passed: its followers answer its first
    /// heartbeats, and
    /// before then a missing voter is one not asked yet (a pod leaving on
    /// SIGTERM asks the leader it just handed over to for its removal).
    pub async fn live_voters(&self) -> Result<Vec<NodeId>, EngineError> {
        loop {
            let (reply, answer) = oneshot::channel();
            self.queue(Proposal::Liveness { reply }).await?;
            let liveness = answer.await.map_err(|_| EngineError::ShuttingDown)?;
            if !liveness.is_leader {
                return Err(EngineError::NotLeader {
                    node: self.id(),
                    leader: self.raft_status().leader_id,
                });
            }
            if liveness.settles_in.is_zero() {
                return Ok(liveness.live_voters);
            }
            // Asked again each heartbeat: the answer is final as soon as
            // every voter was heard, and at the latest when the window
            // ends (`settles_in` shrinks to zero), so this loop is bounded.
            let config = self.config();
            let heartbeat = config.tick_interval * config.heartbeat_ticks as u32;
            tokio::time::sleep(liveness.settles_in.min(heartbeat)).await;
        }
    }

    /// Moves leadership to voter `to`, or (`None`, sent to the leader) to
    /// its most caught-up follower, and waits until the move is seen here.
    /// Returns the new leader. Use it before taking the leader down: the
    /// cluster then skips the election timeout.
    ///
    /// ```no_run
    /// # async fn demo(node: raftoral::Node) -> Result<(), raftoral::EngineError> {
    /// let leader = node.transfer_leadership(Some(2), std::time::Duration::from_secs(2)).await?;
    /// assert_eq!(leader, 2);
    /// # Ok(()) }
    /// ```
    pub async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
        timeout: Duration,
    ) -> Result<NodeId, EngineError> {
        let status = self.raft_status();
        if let Some(to) = to {
            if status.learners.contains(&to) {
                return Err(EngineError::InvalidArgument(format!(
                    "node {to} is a learner; only a voter can lead"
                )));
            }
            if !status.voters.contains(&to) {
                return Err(EngineError::NotMember(to));
            }
            if status.leader_id == to {
                return Ok(to);
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queue(Proposal::TransferLeader { to, reply }).await?;
        let to = answer.await.map_err(|_| EngineError::ShuttingDown)??;
        if self.wait_status(timeout, |s| s.leader_id == to).await {
            Ok(to)
        } else {
            Err(EngineError::TransferTimeout { to, timeout })
        }
    }

    /// The removal of `node_id` proposed until it commits, after the checks
    /// of [`remove_node`](Self::remove_node) (`live`: the live voters but
    /// `node_id`). Public for tests of the retry path only.
    #[doc(hidden)]
    pub async fn propose_removal(
        &self,
        node_id: NodeId,
        live: &[NodeId],
    ) -> Result<(), EngineError> {
        // Proposed right after a hand-over (in remove_node, or one under
        // way), the change can meet the leader change and fail with a
        // retryable error although it may have committed: catch up with
        // the leader, and propose again only if the node is still a member.
        let gone = |s: &RaftStatus| !s.voters.contains(&node_id) && !s.learners.contains(&node_id);
        let mut attempt = 0;
        loop {
            // Checked before every attempt: the node to remove may have
            // become the leader meanwhile (a leader change is what makes an
            // attempt fail). raft-rs keeps a removed leader leading for an
            // election timeout with no one allowed to take over, so it hands
            // leadership to a live voter first, as a node removing itself
            // does.
            // A hand-over that meets another leader change is retried like
            // the change itself.
            let attempted = match self.hand_over_before_removal(node_id, live).await {
                Ok(()) => {
                    self.change_membership(ConfChangeType::RemoveNode, node_id, "")
                        .await
                }
                Err(e) => Err(e),
            };
            let Err(e) = attempted else {
                return Ok(());
            };
            if !e.is_retryable() || attempt >= REMOVE_ATTEMPTS {
                return Err(e);
            }
            attempt += 1;
            tracing::info!(node_id, attempt, error = %e, "the removal met a leader change; checking and retrying");
            // Applied here already? (A removed node hears from no leader
            // any more, so it could not catch up by a read barrier.)
            if self.wait_status(REMOVE_RETRY_PAUSE * attempt, gone).await {
                return Ok(());
            }
            if node_id == self.id() {
                // A node removing itself may never see its removal apply:
                // the leader stops replicating to it once it applies the
                // change. Only another member can tell, so the caller asks
                // again through any node (NOT_FOUND once it applied)
                // instead of this node retrying blind until its timeouts
                // run out (it knows no leader any more).
                return Err(e);
            }
            if self.read_barrier().await.is_ok() && gone(&self.raft_status()) {
                return Ok(());
            }
        }
    }

    /// When `node_id` leads, moves leadership to this node (a voter that
    /// is not being removed) or to the first of `live`, and waits for it.
    async fn hand_over_before_removal(
        &self,
        node_id: NodeId,
        live: &[NodeId],
    ) -> Result<(), EngineError> {
        let status = self.raft_status();
        if status.leader_id != node_id {
            return Ok(());
        }
        let me = self.id();
        let to = if me != node_id && status.voters.contains(&me) {
            Some(me)
        } else {
            live.iter().copied().find(|id| *id != node_id)
        };
        let Some(to) = to else {
            return Err(EngineError::QuorumAtRisk(format!(
                "no other voter is live to take over from node {node_id}, the leader; bring one back first"
            )));
        };
        let timeout = self.config().election_timeout() * 2;
        self.transfer_leadership(Some(to), timeout).await?;
        tracing::info!(
            node_id,
            to,
            "leadership handed over before removing the leader"
        );
        Ok(())
    }

    async fn change_membership(
        &self,
        change_type: ConfChangeType,
        node_id: NodeId,
        address: &str,
    ) -> Result<(), EngineError> {
        let proposal_id = self.next_proposal_id();
        let change = crate::consensus::proposal::single_change(
            change_type,
            node_id,
            &ConfChangeContext {
                proposer_node_id: self.id(),
                proposal_id,
                address: address.to_owned(),
                proposed_at_ms: self.stamp(),
            },
        );
        let (reply, answer) = oneshot::channel();
        self.submit(
            Proposal::ConfChange {
                change,
                proposal_id,
                reply,
            },
            answer,
        )
        .await
        .map(|_| ())
    }

    /// Members with address and role, ordered by id.
    pub fn members(&self) -> Vec<Member> {
        let status = self.raft_status();
        let mut addresses = self.transport().addresses();
        for (id, address) in self.read(|sm| sm.member_addresses().clone()) {
            addresses.entry(id).or_insert(address);
        }
        addresses.insert(self.id(), self.transport().advertise().to_owned());
        let mut members: Vec<Member> = status
            .voters
            .iter()
            .map(|id| (*id, false))
            .chain(status.learners.iter().map(|id| (*id, true)))
            .map(|(id, learner)| Member {
                node_id: id,
                address: addresses.get(&id).cloned().unwrap_or_default(),
                role: if learner {
                    MemberRole::Learner
                } else if id == status.leader_id {
                    MemberRole::Leader
                } else if status.leader_id == 0 {
                    MemberRole::Unspecified
                } else {
                    MemberRole::Follower
                } as i32,
            })
            .collect();
        members.sort_by_key(|m| m.node_id);
        members
    }
}
