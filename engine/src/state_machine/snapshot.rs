//! The state machine as a Raft snapshot: encoding and restoring the whole
//! replicated state (`raftoral.cluster.v1.StateSnapshot`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use prost::Message as _;
use raftoral_proto::cluster::v1::{CheckpointEntry, StateSnapshot, WorkflowRecord};

use super::{Checkpoint, StateMachine, Workflow, WorkflowType};

/// A point-in-time copy of the state, taken on the Raft loop in O(1) for
/// the workflow table (its nodes are shared; see [`StateMachine`]) and
/// encoded later on another thread while the loop goes on applying.
pub struct StateView {
    workflows: imbl::OrdMap<String, Arc<Workflow>>,
    /// Everything but the workflows (small: members, registrations).
    rest: StateSnapshot,
}

impl StateView {
    /// Writes the `StateSnapshot` encoding of the view, one workflow record
    /// at a time, so the whole encoding is never held in memory. Protobuf
    /// concatenation is a merge: the records (repeated field 1) followed by
    /// the rest decode as one message.
    pub fn encode_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        for w in self.workflows.values() {
            buf.clear();
            prost::encoding::message::encode(1, &record(w), &mut buf);
            out.write_all(&buf)?;
        }
        out.write_all(&self.rest.encode_to_vec())
    }

    /// Number of workflows in the view.
    pub fn workflow_count(&self) -> usize {
        self.workflows.len()
    }
}

fn record(w: &Workflow) -> WorkflowRecord {
    WorkflowRecord {
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
    }
}

impl StateMachine {
    /// A point-in-time view of the state for a snapshot; cheap enough to
    /// take on the Raft loop whatever the number of workflows.
    pub fn view(&self) -> StateView {
        use raftoral_proto::cluster::v1::{
            MemberAddress, NodePresence, Registration, WorkflowType,
        };
        StateView {
            workflows: self.workflows.clone(),
            rest: StateSnapshot {
                workflows: Vec::new(),
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
            },
        }
    }

    /// Encodes the whole state for a Raft snapshot, in memory (the Raft
    /// loop writes snapshot files through `StateView::encode_to`).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.view()
            .encode_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Rebuilds the state from [`snapshot`](Self::snapshot) data taken at
    /// `index`.
    pub fn restore(data: &[u8], index: u64) -> Result<StateMachine, prost::DecodeError> {
        let snap = StateSnapshot::decode(data)?;
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
                (wf.id.clone(), Arc::new(wf))
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
