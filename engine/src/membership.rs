//! Membership changes (Raft conf changes) and the cluster view.

use prost::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raftoral_proto::cluster::v1::{ConfChangeContext, Member, MemberRole};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::EngineError;
use crate::node::Node;
use crate::raft_loop::Proposal;
use crate::state_machine::NodeId;

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

    /// Removes `node_id` from the membership.
    pub async fn remove_node(&self, node_id: NodeId) -> Result<Vec<Member>, EngineError> {
        let status = self.raft_status();
        if !status.voters.contains(&node_id) && !status.learners.contains(&node_id) {
            return Err(EngineError::NotMember(node_id));
        }
        self.change_membership(ConfChangeType::RemoveNode, node_id, "")
            .await?;
        Ok(self.members())
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

    async fn change_membership(
        &self,
        change_type: ConfChangeType,
        node_id: NodeId,
        address: &str,
    ) -> Result<(), EngineError> {
        let proposal_id = self.next_proposal_id();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = node_id;
        let mut change = ConfChangeV2::default();
        change.set_changes(vec![single].into());
        change.context = ConfChangeContext {
            proposer_node_id: self.id(),
            proposal_id,
            address: address.to_owned(),
            proposed_at_ms: crate::node::now_ms(),
        }
        .encode_to_vec()
        .into();
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
