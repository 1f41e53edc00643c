//! Rebuilding the log at open: the log's records replayed in order, then the
//! snapshot file put in place.

use raft::prelude::{Snapshot, SnapshotMetadata};

use super::wal::Record;
use super::{Core, StorageError};

impl Core {
    /// The term of the entry at `index`, if the log holds it.
    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.compacted.0 {
            return Some(self.compacted.1);
        }
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(offset as usize).map(|e| e.term)
    }

    /// Replays the log's records, then puts the snapshot file in place.
    /// Returns the snapshot's metadata when the snapshot file replaced the
    /// log (its install was not recorded): the caller records it now.
    pub(super) fn replay(
        &mut self,
        records: Vec<Record>,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<SnapshotMetadata>, StorageError> {
        // Compaction deletes whole segments, so the log may begin after
        // entry 1: its first entry then sets the base, whose term only the
        // snapshot file knows.
        let mut base = None;
        for record in records {
            match record {
                Record::Entry(e) => {
                    if self.entries.is_empty() && self.compacted == (0, 0) && e.index > 1 {
                        self.compacted = (e.index - 1, 0);
                        base = Some(e.index - 1);
                    }
                    self.append_in_memory(std::slice::from_ref(&e))?
                }
                Record::HardState(hs) => {
                    let commit = self.hard_state.commit.max(hs.commit);
                    self.hard_state = hs;
                    self.hard_state.commit = commit;
                }
                Record::ConfState(cs) => self.conf_state = cs,
                Record::Snapshot(meta) => {
                    base = None;
                    self.install(&meta)
                }
            }
        }
        let Some(snap) = snapshot else {
            if let Some(base) = base {
                return Err(StorageError::Corrupt(format!(
                    "the log begins after entry {base} but there is no snapshot.bin for what came before; restore that file, or remove the node's storage and join it again under a new id"
                )));
            }
            self.clamp_commit();
            return Ok(None);
        };
        let meta = snap.get_metadata();
        if meta.index < self.compacted.0 {
            return Err(StorageError::Corrupt(format!(
                "snapshot.bin is at index {} but the log goes back only to index {}: it is older than the log; remove the node's storage and join it again under a new id",
                meta.index, self.compacted.0
            )));
        }
        let matches = if base == Some(meta.index) {
            true
        } else {
            meta.index > self.compacted.0 && self.term_at(meta.index) == Some(meta.term)
        };
        let mut unrecorded = None;
        if matches {
            // A snapshot taken here: the log before it is compacted, the
            // entries after it stay.
            let drop = (meta.index - self.compacted.0) as usize;
            self.entries.drain(..drop);
            self.compacted = (meta.index, meta.term);
            self.hard_state.commit = self.hard_state.commit.max(meta.index);
        } else if meta.index > self.compacted.0 {
            // A snapshot from the leader written just before a crash that
            // lost the log's record of its install: the log does not match
            // it, so it replaces the log as the install would have.
            self.install(meta);
            unrecorded = Some(meta.clone());
        }
        self.snapshot = snap;
        self.clamp_commit();
        Ok(unrecorded)
    }

    fn clamp_commit(&mut self) {
        // A commit index beyond the surviving log (its tail was torn) is
        // clamped: the entries after it were never acknowledged as durable.
        self.hard_state.commit = self.hard_state.commit.min(self.last_index());
    }
}
