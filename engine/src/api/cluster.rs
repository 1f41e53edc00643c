//! The node-to-node gRPC service (`raftoral.cluster.v1.ClusterService`):
//! raft message streams, status, join and remove.

use raftoral_proto::cluster::v1::{
    ClusterStatusRequest, ClusterStatusResponse, JoinClusterRequest, JoinClusterResponse,
    RaftRequest, RaftResponse, RemoveNodeRequest, RemoveNodeResponse, SendSnapshotRequest,
    TransferLeaderRequest, TransferLeaderResponse,
    cluster_service_client::ClusterServiceClient,
    cluster_service_server::{ClusterService, ClusterServiceServer},
};
use tonic::{Request, Response, Status, Streaming};

use crate::api::status::to_status;
use crate::consensus::raft_guard::{Receiver, answers_without_cluster_id, check_peer_message};
use crate::consensus::storage::snapshot_state::decode_ref;
use crate::consensus::transport::decode_envelope;
use crate::error::EngineError;
use crate::node::Node;

/// Metadata key set on a request one node forwards to the leader.
const FORWARDED: &str = "x-raftoral-forwarded";

impl ClusterApi {
    /// What the checks of a message from `from` need to know of this node.
    fn receiver<'a>(
        &self,
        status: &'a crate::RaftStatus,
        from: crate::workflows::state_machine::NodeId,
    ) -> Receiver<'a> {
        let member = status.voters.contains(&from) || status.learners.contains(&from);
        Receiver {
            me: status.id,
            batch_from: from,
            voters: &status.voters,
            learners: &status.learners,
            removed: !member && self.node.read(|sm| sm.was_removed(from)),
        }
    }

    /// Sends a removal to the leader and returns its answer as it is.
    /// Asks `leader` to remove a node. A leader removing itself cannot
    /// tell whether its removal applied once it is out, nor retry a
    /// proposal lost with the leader change it causes: this member can.
    /// On `UNAVAILABLE` it catches up; a node gone is the request done,
    /// one still a member is asked for again, here if this node leads now,
    /// else through the new leader (a few times).
    async fn remove_through_leader(
        &self,
        mut leader: u64,
        r: RemoveNodeRequest,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let done = || {
            Ok(Response::new(RemoveNodeResponse {
                members: self.node.members(),
            }))
        };
        let mut attempt = 0;
        loop {
            let refused = match self.forward_remove(leader, r).await {
                Err(status) if status.code() == tonic::Code::Unavailable && attempt < 3 => status,
                other => return other,
            };
            attempt += 1;
            if self.node.read_barrier().await.is_err() {
                return Err(refused);
            }
            match self.node.remove_node(r.node_id, r.force).await {
                Ok(_) | Err(EngineError::NotMember(_)) => return done(),
                Err(EngineError::NotLeader { leader: now, .. }) if now != 0 => leader = now,
                Err(e) => return Err(to_status(e)),
            }
        }
    }

    async fn forward_remove(
        &self,
        leader: u64,
        r: RemoveNodeRequest,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let address = self
            .node
            .members()
            .into_iter()
            .find(|m| m.node_id == leader)
            .map(|m| m.address)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "the address of leader node {leader} is unknown here; send the request to the leader"
                ))
            })?;
        let endpoint = self
            .node
            .transport()
            .endpoint(&address)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut client = ClusterServiceClient::connect(endpoint).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach leader node {leader} at {address}: {e}"
            ))
        })?;
        let mut request = Request::new(r);
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        client.remove_node(request).await
    }

    /// Checks the header of a snapshot transfer: from a member of this
    /// cluster, a MsgSnapshot for this node that passes the checks of any
    /// raft message, whose data is a reference to the state that follows.
    fn check_snapshot_header(
        &self,
        first: Option<SendSnapshotRequest>,
    ) -> Result<
        (
            u64,
            raft::prelude::Message,
            raftoral_proto::cluster::v1::SnapshotRef,
        ),
        Status,
    > {
        let header = first.and_then(|r| r.header).ok_or_else(|| {
            Status::invalid_argument(
                "the first request of a snapshot transfer must carry its header",
            )
        })?;
        let from = header.from_node_id;
        if self.node.transport().is_foreign(&header.cluster_id) {
            return Err(Status::failed_precondition(format!(
                "node {from} belongs to cluster '{}', this node to cluster {}; a snapshot from another cluster is refused",
                header.cluster_id,
                self.node.transport().cluster_id()
            )));
        }
        let message = header
            .message
            .as_ref()
            .and_then(decode_envelope)
            .filter(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot)
            .ok_or_else(|| {
                Status::failed_precondition("a snapshot transfer must carry a MsgSnapshot")
            })?;
        let status = self.node.raft_status();
        let receiver = self.receiver(&status, from);
        check_peer_message(&message, &receiver).map_err(|refusal| {
            self.node.transport().note_refused();
            Status::failed_precondition(format!("snapshot refused: {refusal}"))
        })?;
        let reference = message
            .snapshot
            .as_ref()
            .and_then(|s| decode_ref(&s.data))
            .ok_or_else(|| {
                Status::failed_precondition(
                    "a snapshot transfer's MsgSnapshot must carry a reference, not the state",
                )
            })?;
        let meta = message.get_snapshot().get_metadata();
        if reference.index != meta.index || reference.term != meta.term {
            return Err(Status::failed_precondition(
                "the snapshot reference does not match the snapshot's metadata",
            ));
        }
        Ok((from, message, reference))
    }

    /// Checks one received batch and hands what passes to the Raft loop.
    /// An error (another cluster) ends the stream; single messages that fail
    /// their checks are dropped, logged and counted in `refused`.
    fn take_batch(&self, batch: RaftRequest, refused: &mut u64) -> Result<(), Status> {
        let from = batch.from_node_id;
        // A clone per batch: the checks below (a snapshot's decode above
        // all) must not hold the status lock the Raft loop publishes under.
        let status = self.node.raft_status();
        let receiver = self.receiver(&status, from);
        let messages: Vec<_> = batch.messages.iter().filter_map(decode_envelope).collect();
        if self.node.transport().is_foreign(&batch.cluster_id)
            && !(batch.cluster_id.is_empty() && answers_without_cluster_id(&messages, &receiver))
        {
            let ours = self.node.transport().cluster_id();
            tracing::error!(
                from,
                address = %batch.from_address,
                theirs = %batch.cluster_id,
                ours = %ours,
                "raft traffic from another cluster refused"
            );
            let theirs = if batch.cluster_id.is_empty() {
                "no cluster (it sent no cluster id)".to_owned()
            } else {
                format!("cluster {}", batch.cluster_id)
            };
            return Err(Status::failed_precondition(format!(
                "node {from} belongs to {theirs}, this node to cluster {ours}: check that every node of a cluster was started with the same --peers list, and that no address is shared between clusters"
            )));
        }
        let mut accepted = false;
        for message in messages {
            match check_peer_message(&message, &receiver) {
                Ok(()) => {
                    accepted = true;
                    self.node.step(message);
                }
                Err(refusal) => {
                    // The first refusal on a stream is worth a warning; a
                    // flood of them is not worth a log line each.
                    *refused += 1;
                    self.node.transport().note_refused();
                    if *refused == 1 {
                        tracing::warn!(from, address = %batch.from_address, reason = %refusal, "raft message refused");
                    } else {
                        tracing::debug!(from, reason = %refusal, "raft message refused");
                    }
                }
            }
        }
        // Only a sender with an acceptable message may change where this
        // node sends its own traffic.
        if accepted {
            self.node
                .transport()
                .set_address(from, batch.from_address.clone());
        }
        Ok(())
    }
}

/// Serves `ClusterService` for one node.
pub struct ClusterApi {
    node: Node,
}

impl Node {
    /// The node-to-node gRPC service, to mount on the node's listen address.
    pub fn cluster_service(&self) -> ClusterServiceServer<ClusterApi> {
        let max_frame = self.config().max_frame_bytes;
        ClusterServiceServer::new(ClusterApi { node: self.clone() })
            .max_decoding_message_size(max_frame)
            .max_encoding_message_size(max_frame)
    }

    /// Removes this node from its cluster, as `raftoral cluster remove` of
    /// its own id would: through the leader (asked over gRPC when this node
    /// does not lead), which refuses if the others could not keep a quorum
    /// and hands leadership over first if this node leads. The running
    /// workflows this node owns move to the others. For a node about to
    /// stop for good (a Kubernetes Deployment's pod on SIGTERM).
    ///
    /// A node that is removed may not see its removal apply (the leader
    /// stops replicating to it): an `UNAVAILABLE` answer then means "maybe
    /// removed", which the caller checks with another member if it cares.
    ///
    /// ```no_run
    /// # async fn demo(node: raftoral::Node) {
    /// if let Err(e) = node.leave().await {
    ///     eprintln!("still a member (or unsure): {e}");
    /// }
    /// # }
    /// ```
    pub async fn leave(&self) -> Result<Vec<raftoral_proto::cluster::v1::Member>, Status> {
        let api = ClusterApi { node: self.clone() };
        let request = Request::new(RemoveNodeRequest {
            node_id: self.id(),
            force: false,
        });
        api.remove_node(request)
            .await
            .map(|r| r.into_inner().members)
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn raft(
        &self,
        request: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<RaftResponse>, Status> {
        let mut stream = request.into_inner();
        let faults = self.node.transport().faults().clone();
        let mut stop = self.node.shutdown_signal();
        let mut refused: u64 = 0;
        loop {
            // End the stream when this node stops, or graceful shutdown would
            // wait for peers that keep their streams open.
            let batch = tokio::select! {
                batch = stream.message() => batch?,
                _ = crate::shutdown::stopped(&mut stop) => None,
            };
            let Some(batch) = batch else { break };
            if faults.is_blocked(batch.from_node_id) {
                continue;
            }
            self.take_batch(batch, &mut refused)?;
        }
        if refused > 1 {
            tracing::warn!(refused, "raft stream ended; messages refused on it");
        }
        Ok(Response::new(RaftResponse {}))
    }

    type SendSnapshotStream = crate::consensus::snapshot_transfer::Acks;

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SendSnapshotRequest>>,
    ) -> Result<Response<Self::SendSnapshotStream>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?;
        let (from, message, reference) = self.check_snapshot_header(first)?;
        let faults = self.node.transport().faults();
        if faults.is_blocked(from) {
            return Err(Status::unavailable("partitioned by a test"));
        }
        let node = self.node.clone();
        let acks =
            self.node
                .snapshot_transfers()
                .receive(from, message, reference, stream, move |m| node.step(m))?;
        Ok(Response::new(acks))
    }

    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let status = self.node.raft_status();
        Ok(Response::new(ClusterStatusResponse {
            node_id: status.id,
            leader_id: status.leader_id,
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            snapshot_index: status.snapshot_index,
            members: self.node.members(),
            first_index: status.first_index,
            log_disk_bytes: self.node.store().disk_bytes(),
            nondeterminism_reports: self.node.nondeterminism_reports(),
            cluster_id: self.node.transport().cluster_id(),
        }))
    }

    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        let r = request.into_inner();
        let members = self
            .node
            .add_node(r.node_id, &r.address)
            .await
            .map_err(to_status)?;
        Ok(Response::new(JoinClusterResponse { members }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let to = request.into_inner().node_id;
        // Two election timeouts: raft-rs gives up a transfer after one.
        let timeout = self.node.config().election_timeout() * 2;
        let leader_id = self
            .node
            .transfer_leadership((to != 0).then_some(to), timeout)
            .await
            .map_err(to_status)?;
        Ok(Response::new(TransferLeaderResponse { leader_id }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let r = request.into_inner();
        match self.node.remove_node(r.node_id, r.force).await {
            Ok(members) => Ok(Response::new(RemoveNodeResponse { members })),
            // Only the leader knows which voters are live: ask it, once (a
            // request forwarded to a node that no longer leads fails with
            // UNAVAILABLE instead of bouncing while leadership moves).
            Err(EngineError::NotLeader { leader, .. }) if leader != 0 && !forwarded => {
                self.remove_through_leader(leader, r).await
            }
            Err(e) => Err(to_status(e)),
        }
    }
}
