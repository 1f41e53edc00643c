//! The state machine as a Raft snapshot and in its store: flushes to the
//! archive, encoding the whole state (`raftoral.cluster.v1.StateSnapshot`),
//! and restoring it from a stream or from the store after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

use prost::Message as _;
use raftoral_proto::cluster::v1::{StateSnapshot, WorkflowRecord};

use super::StateMachine;
use super::archive::{Archive, ArchiveError, Archived, Counts, Flush, Restorer};
use super::record::{record, workflow};
use super::workflow::{Workflow, WorkflowType, is_terminal};

/// A snapshot that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The bytes are not a `StateSnapshot`.
    #[error("the snapshot does not decode: {0}")]
    Decode(String),
    /// Reading the snapshot failed.
    #[error("cannot read the snapshot: {0}")]
    Read(#[from] std::io::Error),
    /// The store refused the state.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl StateMachine {
    /// Everything but the workflows (small: members, registrations).
    fn rest(&self) -> StateSnapshot {
        use raftoral_proto::cluster::v1::{
            MemberAddress, NodeCommandLevel, NodePresence, Registration, WorkflowType,
        };
        StateSnapshot {
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
            log_time_ms: self.log_time_ms,
            member_addresses: self
                .addresses
                .iter()
                .map(|(id, address)| MemberAddress {
                    node_id: *id,
                    address: address.clone(),
                })
                .collect(),
            command_levels: self
                .levels
                .iter()
                .map(|(node, level)| NodeCommandLevel {
                    node_id: *node,
                    level: *level,
                })
                .collect(),
        }
    }

    /// What a flush writes to the archive: cheap enough to take on the
    /// Raft loop whatever the number of workflows (the workflow table in
    /// memory is shared, not copied).
    pub fn flush(&self) -> Flush {
        Flush {
            index: self.applied_index,
            workflows: self.workflows.clone(),
            rest: self.rest(),
            counts: self.finished.clone(),
        }
    }

    /// A flush was written: the archive's view moves to it, and the
    /// finished workflows it holds (`archived`) are queued to leave memory
    /// ([`Self::evict_archived`]): reads find them in either place until
    /// then.
    pub fn flushed(&mut self, archived: Vec<Archived>) -> Result<(), ArchiveError> {
        self.archive.refresh()?;
        self.evicting.extend(archived);
        Ok(())
    }

    /// Removes up to `max` of the workflows queued by [`Self::flushed`]
    /// from memory; returns how many stay queued. The Raft loop calls it a
    /// batch at a time: removing a whole flush (thousands) at once stalled
    /// it for milliseconds on a busy machine.
    pub fn evict_archived(&mut self, max: usize) -> usize {
        for _ in 0..max {
            let Some(archived) = self.evicting.pop_front() else {
                break;
            };
            // Only the record the flush wrote: an id purged by retention,
            // started again and changed since is a newer record.
            let same = self.workflows.get(&archived.id).is_some_and(|wf| {
                wf.is_terminal()
                    && wf.created_at_ms == archived.created_at_ms
                    && wf.updated_at_ms == archived.updated_at_ms
            });
            if same {
                self.finished_at
                    .remove(&(archived.updated_at_ms, archived.id.clone()));
                self.workflows.remove(&archived.id);
            }
        }
        self.evicting.len()
    }

    /// The archive (to flush to it and encode snapshots from it).
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Releases the store (the node stopped): reads find only what memory
    /// holds from now on.
    pub fn close_archive(&mut self) {
        self.archive = Archive::in_memory();
    }

    /// Makes the archive built for an installed snapshot the node's own.
    pub fn promote_archive(&mut self) -> Result<(), ArchiveError> {
        self.archive.promote()
    }

    /// Encodes the whole state, in memory: tests, the bootstrap snapshot
    /// and nodes that check a snapshot; the Raft loop encodes from the
    /// archive instead.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for w in self.workflows.values() {
            seen.insert(w.id.clone());
            prost::encoding::message::encode(1, &record(w), &mut out);
        }
        let mut after = String::new();
        loop {
            let ids = self
                .archive
                .ids_after(&after, None, None, 1000)
                .expect("the archive reads");
            let Some(last) = ids.last().cloned() else {
                break;
            };
            for id in ids {
                if !seen.contains(&id)
                    && let Some(w) = self.archived(&id)
                {
                    prost::encoding::message::encode(1, &record(&w), &mut out);
                }
            }
            after = last;
        }
        out.extend_from_slice(&self.rest().encode_to_vec());
        out
    }

    /// Rebuilds the state from [`snapshot`](Self::snapshot) data taken at
    /// `index`, with an archive in memory.
    pub fn restore(data: &[u8], index: u64) -> Result<StateMachine, RestoreError> {
        Self::restore_into(data, index, Archive::in_memory())
    }

    /// Rebuilds the state from a `StateSnapshot` encoding taken at `index`,
    /// read as a stream: finished workflows go to `archive` (a new, empty
    /// one) as they are read, so a snapshot of any size needs memory only
    /// for the running work.
    pub fn restore_into(
        mut data: impl Read,
        index: u64,
        archive: Archive,
    ) -> Result<StateMachine, RestoreError> {
        let writer = archive.writer();
        let mut restorer = Restorer::new(&writer);
        let mut rest = Vec::new();
        let mut active = Vec::new();
        let mut counts = Counts::new();
        while let Some((key, field)) = read_field(&mut data)? {
            if key >> 3 == 1 && key & 7 == 2 {
                let record = WorkflowRecord::decode(field.as_slice())
                    .map_err(|e| RestoreError::Decode(e.to_string()))?;
                if is_terminal(record.status()) {
                    *counts.entry(record.status).or_default() += 1;
                    restorer.push(record)?;
                } else {
                    active.push(workflow(record));
                }
            } else {
                prost::encoding::encode_varint(key, &mut rest);
                rest.extend_from_slice(&field);
            }
        }
        let snap = StateSnapshot::decode(rest.as_slice())
            .map_err(|e| RestoreError::Decode(e.to_string()))?;
        restorer.finish(index, &snap, &counts, &active)?;
        let mut restored = StateMachine {
            archive,
            ..StateMachine::default()
        };
        restored.archive.refresh()?;
        restored.set_rest(snap);
        restored.finished = counts;
        restored.applied_index = index;
        restored.set_active(active);
        Ok(restored)
    }

    /// The state a restart finds in `archive`; `None` when it holds no
    /// flushed state yet (a new store).
    pub fn load(archive: Archive) -> Result<Option<StateMachine>, ArchiveError> {
        let Some(loaded) = archive.load()? else {
            return Ok(None);
        };
        let mut state = StateMachine {
            archive,
            ..StateMachine::default()
        };
        state.set_rest(loaded.rest);
        state.finished = loaded.counts;
        state.applied_index = loaded.applied;
        state.set_active(loaded.active);
        Ok(Some(state))
    }

    /// An empty state machine over `archive` (a new node's store).
    pub fn with_archive(archive: Archive) -> StateMachine {
        StateMachine {
            archive,
            ..StateMachine::default()
        }
    }

    fn set_active(&mut self, active: Vec<Workflow>) {
        for wf in active {
            self.count_active(None, Some(wf.status), 1);
            self.active.insert(wf.id.clone());
            self.add_timers(&wf);
            self.workflows.insert(wf.id.clone(), Arc::new(wf));
        }
    }

    fn set_rest(&mut self, snap: StateSnapshot) {
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
        self.present = if snap.presence.is_empty() {
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
        self.registry = registry;
        self.addresses = snap
            .member_addresses
            .into_iter()
            .map(|m| (m.node_id, m.address))
            .collect();
        self.removed = snap.removed_node_ids.into_iter().collect();
        self.levels = snap
            .command_levels
            .into_iter()
            .map(|l| (l.node_id, l.level))
            .collect();
        self.cluster_id = snap.cluster_id;
        self.purged_before_ms = snap.purged_before_ms;
        // State written before the field existed: the purge cut-off is a
        // time the log had reached.
        self.log_time_ms = snap.log_time_ms.max(snap.purged_before_ms);
    }
}

/// Reads one top-level protobuf field: its key and its encoded payload
/// (the length prefix included for a length-delimited field, so the bytes
/// re-encode the field when the key is put before them); `None` at the end.
fn read_field(data: &mut impl Read) -> Result<Option<(u64, Vec<u8>)>, RestoreError> {
    let Some(key) = read_varint(data)? else {
        return Ok(None);
    };
    let bad = |what: &str| RestoreError::Decode(format!("{what} in the snapshot's top level"));
    let mut payload = Vec::new();
    match key & 7 {
        0 => {
            let value = read_varint(data)?.ok_or_else(|| bad("a truncated varint"))?;
            if key >> 3 == 1 {
                return Err(bad("a varint for workflow records"));
            }
            prost::encoding::encode_varint(value, &mut payload);
        }
        1 => {
            payload.resize(8, 0);
            data.read_exact(&mut payload)?;
        }
        2 => {
            let len = read_varint(data)?.ok_or_else(|| bad("a truncated length"))?;
            let mut field = Vec::new();
            data.take(len).read_to_end(&mut field)?;
            if field.len() as u64 != len {
                return Err(bad("a truncated field"));
            }
            if key >> 3 == 1 {
                return Ok(Some((key, field)));
            }
            prost::encoding::encode_varint(len, &mut payload);
            payload.extend_from_slice(&field);
        }
        5 => {
            payload.resize(4, 0);
            data.read_exact(&mut payload)?;
        }
        _ => return Err(bad("an unknown wire type")),
    }
    Ok(Some((key, payload)))
}

fn read_varint(data: &mut impl Read) -> Result<Option<u64>, RestoreError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8];
        if data.read(&mut byte)? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(RestoreError::Decode("a truncated varint".into()));
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(RestoreError::Decode("a varint longer than 10 bytes".into()))
}
