//! The state machine as a Raft snapshot: encoding and restoring the whole
//! replicated state (`raftoral.cluster.v1.StateSnapshot`).

use std::collections::{BTreeMap, BTreeSet};

use super::{Checkpoint, StateMachine, Workflow, WorkflowType};

impl StateMachine {
    /// Encodes the whole state for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        use prost::Message as _;
        use raftoral_proto::cluster::v1::{
            CheckpointEntry, MemberAddress, NodePresence, Registration, StateSnapshot,
            WorkflowRecord, WorkflowType,
        };
        StateSnapshot {
            workflows: self
                .workflows
                .values()
                .map(|w| WorkflowRecord {
                    workflow_id: w.id.clone(),
                    workflow_name: w.name.clone(),
                    version: w.version,
                    input: w.input.clone(),
                    status: w.status as i32,
                    owner_node_id: w.owner,
                    checkpoints: w
                        .checkpoints
                        .iter()
                        .map(|c| CheckpointEntry {
                            checkpoint_name: c.name.clone(),
                            value: c.value.clone(),
                            committed_at_ms: c.committed_at_ms,
                        })
                        .collect(),
                    result: w.result.clone(),
                    error: w.error.clone(),
                    pending_reason: w.pending_reason.clone(),
                    created_at_ms: w.created_at_ms,
                    updated_at_ms: w.updated_at_ms,
                })
                .collect(),
            registrations: self
                .registry
                .iter()
                .map(|((name, version), nodes)| Registration {
                    workflow_name: name.clone(),
                    version: *version,
                    node_ids: nodes.iter().copied().collect(),
                })
                .collect(),
            removed_node_ids: self.removed.iter().copied().collect(),
            present_node_ids: self.present_nodes().collect(),
            presence: self
                .present
                .iter()
                .map(|(node, live)| NodePresence {
                    node_id: *node,
                    live: live
                        .iter()
                        .map(|(name, version)| WorkflowType {
                            workflow_name: name.clone(),
                            version: *version,
                        })
                        .collect(),
                })
                .collect(),
            cluster_id: self.cluster_id.clone(),
            purged_before_ms: self.purged_before_ms,
            member_addresses: self
                .addresses
                .iter()
                .map(|(id, address)| MemberAddress {
                    node_id: *id,
                    address: address.clone(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Rebuilds the state from [`snapshot`](Self::snapshot) data taken at
    /// `index`.
    pub fn restore(data: &[u8], index: u64) -> Result<StateMachine, prost::DecodeError> {
        use prost::Message as _;
        let snap = raftoral_proto::cluster::v1::StateSnapshot::decode(data)?;
        let workflows = snap
            .workflows
            .into_iter()
            .map(|w| {
                let status = w.status();
                let wf = Workflow {
                    id: w.workflow_id,
                    name: w.workflow_name,
                    version: w.version,
                    input: w.input,
                    status,
                    owner: w.owner_node_id,
                    checkpoints: w
                        .checkpoints
                        .into_iter()
                        .map(|c| Checkpoint {
                            name: c.checkpoint_name,
                            value: c.value,
                            committed_at_ms: c.committed_at_ms,
                        })
                        .collect(),
                    result: w.result,
                    error: w.error,
                    pending_reason: w.pending_reason,
                    created_at_ms: w.created_at_ms,
                    updated_at_ms: w.updated_at_ms,
                };
                (wf.id.clone(), wf)
            })
            .collect();
        let registry: BTreeMap<WorkflowType, BTreeSet<u64>> = snap
            .registrations
            .into_iter()
            .map(|r| {
                (
                    (r.workflow_name, r.version),
                    r.node_ids.into_iter().collect(),
                )
            })
            .collect();
        let present = if snap.presence.is_empty() {
            // Written before per-type presence: a present node can run every
            // type it registered.
            snap.present_node_ids
                .iter()
                .map(|node| {
                    let live = registry
                        .iter()
                        .filter(|(_, nodes)| nodes.contains(node))
                        .map(|(key, _)| key.clone())
                        .collect();
                    (*node, live)
                })
                .collect()
        } else {
            snap.presence
                .into_iter()
                .map(|p| {
                    let live = p
                        .live
                        .into_iter()
                        .map(|t| (t.workflow_name, t.version))
                        .collect();
                    (p.node_id, live)
                })
                .collect()
        };
        let mut restored = StateMachine {
            workflows,
            registry,
            addresses: snap
                .member_addresses
                .into_iter()
                .map(|m| (m.node_id, m.address))
                .collect(),
            removed: snap.removed_node_ids.into_iter().collect(),
            present,
            cluster_id: snap.cluster_id,
            purged_before_ms: snap.purged_before_ms,
            applied_index: index,
            ..StateMachine::default()
        };
        restored.reindex();
        Ok(restored)
    }
}
