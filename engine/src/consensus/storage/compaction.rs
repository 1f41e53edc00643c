//! The on-disk half of a compaction, done off the Raft loop: the new
//! snapshot point written durably to `snapshot.bin`, then the log segments
//! behind it deleted. Its three fsyncs (file, directory) cost the Raft loop
//! 3-8 ms per flush on a busy node when they ran there, and every workflow
//! in flight waited for them.
//!
//! Until [`Compaction::persist`] ran, the previous point stays on disk with
//! every segment after it, so a crash in between restarts from there (the
//! state store is then ahead of the log's snapshot point, which restart
//! handles).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use raft::prelude::Snapshot;

use super::StorageError;
use super::files::write_snapshot;
use super::snapshot_state;
use super::wal;
use crate::consensus::pause::pause_point;

/// The index of the snapshot point in `snapshot.bin`, shared by the Raft
/// loop (installs) and the thread that persists compactions, so a
/// compaction never writes over a newer installed snapshot.
pub(super) type PersistedPoint = Arc<Mutex<u64>>;

/// Files a compaction done in memory leaves to write and delete.
#[must_use = "a compaction's files are only written by `persist`"]
pub struct Compaction {
    pub(super) dir: PathBuf,
    pub(super) snapshot: Snapshot,
    pub(super) segments: Vec<PathBuf>,
    pub(super) persisted: PersistedPoint,
}

impl Compaction {
    /// Makes the snapshot point durable, unless a newer one already is
    /// (installed from the leader meanwhile), then deletes the segments
    /// behind it.
    ///
    /// A point with no segment to delete and no state encoded for a
    /// follower is not written at all (most flushes: a segment holds
    /// several flushes' entries): the state store already holds the state
    /// at that point durably, and a restart from the older point replays
    /// the log after the store's index.
    pub fn persist(self) -> Result<(), StorageError> {
        let index = self.snapshot.get_metadata().index;
        let encoded = !self.snapshot.data.is_empty();
        if self.segments.is_empty() && !encoded {
            return Ok(());
        }
        {
            let mut persisted = self.persisted.lock().expect("snapshot point lock");
            // At the same index only to add the encoded state to the point.
            let newer = index > *persisted || (index == *persisted && encoded);
            if newer {
                write_snapshot(&self.dir, &self.snapshot)?;
                snapshot_state::remove_older(&self.dir, index, snapshot_state::Temps::Older);
                *persisted = index;
            }
        }
        pause_point("snapshot point persisted");
        wal::delete_segments(&self.segments)
    }
}
