//! Raft log storage: [`RaftStore`] implements `raft::Storage` over entries
//! kept in memory, made durable by an optional write-ahead log (`wal.rs`) and
//! a snapshot file. Without a directory it is purely in memory; the Raft loop
//! is the same either way.
//!
//! Files in the storage directory:
//! - `node.id`: the node id that owns the directory (checked at start);
//! - `wal/NNN.wal`: log segments (entries, hard states, conf states);
//! - `snapshot.bin`: the latest snapshot point's Raft metadata and, when the
//!   state was encoded there for a follower, a reference to it (CRC-checked);
//! - `snapshots/<index>-<term>.state`: that encoded state (size and CRC in
//!   the reference); see `snapshot_state.rs`.
//!
//! The state machine itself is in `state/` (`state_machine/archive.rs`); a
//! snapshot point is where it was flushed durably.
//!
//! Imports nothing of the engine above it but the state store's error type;
//! never the Raft loop, the node or the APIs.

mod compaction;
mod files;
mod replay;
pub mod snapshot_state;
mod wal;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError as RaftStorageError};

use files::{check_node_id, read_snapshot, write_snapshot};
use raftoral_proto::cluster::v1::SnapshotRef;
use snapshot_state::{SnapshotBlob, SnapshotState, decode_ref, encode_ref, state_file};
use wal::Wal;

pub use compaction::Compaction;
use compaction::PersistedPoint;

/// Storage failures. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("cannot {what} {}: {source}; check the storage path's permissions and free space", .path.display())]
    Io {
        /// The operation.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data on disk is damaged beyond the recoverable tail.
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// The directory belongs to another node.
    #[error("storage path {} holds the data of node {found}, not node {expected}; use that node's id or an empty directory", .path.display())]
    WrongNode {
        /// The directory.
        path: PathBuf,
        /// The id recorded there.
        found: u64,
        /// This node's id.
        expected: u64,
    },
    /// A record could not be encoded.
    #[error("cannot encode a log record: {0}")]
    Encode(String),
    /// The state machine's store failed.
    #[error(transparent)]
    Archive(#[from] crate::workflows::state_machine::ArchiveError),
    /// An earlier write or fsync failed; the log takes no more writes.
    #[error(
        "the log takes no more writes after an earlier failure ({0}); restart the node: it re-reads the log from the disk and keeps what an fsync made durable"
    )]
    Failed(String),
}

impl StorageError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        StorageError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    fn encode(e: protobuf::ProtobufError) -> Self {
        StorageError::Encode(e.to_string())
    }
}

/// Tuning of the on-disk log.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Size at which a log segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 8 * 1024 * 1024,
        }
    }
}

struct Core {
    hard_state: HardState,
    conf_state: ConfState,
    /// Latest snapshot; its metadata index/term mark the compaction point
    /// when nothing later was compacted. Its data is a reference to `state`.
    snapshot: Snapshot,
    /// The state bytes of `snapshot` (None before the first snapshot).
    state: Option<SnapshotState>,
    /// Entries with index `offset..`, contiguous.
    entries: Vec<Entry>,
    /// Index and term of the last discarded entry (`first_index - 1`).
    compacted: (u64, u64),
    wal: Option<Wal>,
    dir: Option<PathBuf>,
    /// Set when raft-rs asked for a snapshot the store does not have (too
    /// old, or taken before the receiving node was a member).
    snapshot_wanted: bool,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.compacted.0 + 1
    }

    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.compacted.0, |e| e.index)
    }

    /// Term of `index`, which is the compaction point or in the log.
    fn term_known(&self, index: u64) -> u64 {
        self.entries
            .get(index.wrapping_sub(self.first_index()) as usize)
            .map(|e| e.term)
            .unwrap_or(self.compacted.1)
    }

    /// Appends with Raft's truncation rule: an entry at index i replaces
    /// every entry at i and after.
    fn append_in_memory(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.compacted.0 {
            // Already covered by a snapshot; keep only the newer part.
            let skip = (self.compacted.0 + 1 - first.index) as usize;
            if skip >= entries.len() {
                return Ok(());
            }
            return self.append_in_memory(&entries[skip..]);
        }
        if first.index > self.last_index() + 1 {
            return Err(StorageError::Corrupt(format!(
                "log gap: entry {} follows entry {}",
                first.index,
                self.last_index()
            )));
        }
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// A snapshot from the leader replaces the whole log: entries after its
    /// index come from a log that diverged (or are not known to match), so
    /// none is kept. Used live and when replaying the log's record of it.
    fn install(&mut self, meta: &SnapshotMetadata) {
        self.entries.clear();
        self.compacted = (meta.index, meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
    }
}

/// The Raft log of one node. Clones share the same log.
#[derive(Clone)]
pub struct RaftStore {
    core: Arc<RwLock<Core>>,
    /// The snapshot point in `snapshot.bin` (see [`Compaction`]).
    persisted: PersistedPoint,
}

impl RaftStore {
    /// A log kept in memory only.
    pub fn in_memory(conf_state: ConfState) -> RaftStore {
        RaftStore::from_core(Core {
            hard_state: HardState::default(),
            conf_state,
            snapshot: Snapshot::default(),
            state: None,
            entries: Vec::new(),
            compacted: (0, 0),
            wal: None,
            dir: None,
            snapshot_wanted: false,
        })
    }

    /// The node id the storage in `dir` belongs to; None when it records
    /// none (no node ever opened it).
    pub fn stored_node_id(dir: &Path) -> Result<Option<u64>, StorageError> {
        files::stored_node_id(dir)
    }

    /// Opens the log in `dir` for `node_id`, creating it when empty. A new
    /// directory starts with `initial` as its membership. Returns the store
    /// and whether it already held data.
    pub fn open(
        dir: &Path,
        node_id: u64,
        initial: ConfState,
        options: &StorageOptions,
    ) -> Result<(RaftStore, bool), StorageError> {
        fs::create_dir_all(dir)
            .map_err(|e| StorageError::io("create the storage directory", dir, e))?;
        check_node_id(dir, node_id)?;
        let snapshot = read_snapshot(dir)?;
        let state = snapshot.as_ref().and_then(|s| state_of(dir, s));
        let (wal, records) = Wal::open(&dir.join("wal"), options.segment_bytes)?;
        let existed = snapshot.is_some() || !records.is_empty();
        let mut core = Core {
            hard_state: HardState::default(),
            conf_state: initial,
            snapshot: Snapshot::default(),
            state: None,
            entries: Vec::new(),
            compacted: (0, 0),
            wal: None,
            dir: Some(dir.to_path_buf()),
            snapshot_wanted: false,
        };
        let unrecorded = core.replay(records, snapshot)?;
        if let Some(state) = state {
            core.snapshot.data = encode_ref(&state.reference);
            core.state = Some(state);
        }
        let mut store = RaftStore::from_core(core);
        {
            let mut core = store.wl();
            let mut wal = wal;
            if !existed {
                wal.append_conf_state(&core.conf_state)?;
                wal.sync()?;
            }
            if let Some(meta) = unrecorded {
                // Entries appended from now on must not be replayed after
                // the replaced log's (the snapshot would not match it then).
                record_install(&mut wal, &core, &meta)?;
            }
            core.wal = Some(wal);
        }
        store.log_open(existed);
        Ok((store, existed))
    }

    fn from_core(core: Core) -> RaftStore {
        RaftStore {
            persisted: Arc::new(Mutex::new(core.snapshot.get_metadata().index)),
            core: Arc::new(RwLock::new(core)),
        }
    }

    fn log_open(&mut self, existed: bool) {
        let core = self.rl();
        tracing::info!(
            existed,
            first_index = core.first_index(),
            last_index = core.last_index(),
            commit = core.hard_state.commit,
            snapshot_index = core.snapshot.get_metadata().index,
            "raft log opened"
        );
    }

    fn rl(&self) -> RwLockReadGuard<'_, Core> {
        self.core.read().expect("raft store lock poisoned")
    }

    fn wl(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().expect("raft store lock poisoned")
    }

    /// True when the log is backed by disk.
    pub fn is_durable(&self) -> bool {
        self.rl().wal.is_some()
    }

    /// Appends entries (durable after [`sync`](Self::sync)).
    pub fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut core = self.wl();
        core.append_in_memory(entries)?;
        if let Some(wal) = core.wal.as_mut() {
            wal.append_entries(entries)?;
        }
        Ok(())
    }

    /// Records the hard state (durable after [`sync`](Self::sync)).
    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), StorageError> {
        let mut core = self.wl();
        core.hard_state = hs.clone();
        if let Some(wal) = core.wal.as_mut() {
            wal.append_hard_state(hs)?;
        }
        Ok(())
    }

    /// Records a new commit index. It need not be synced on its own: a lost
    /// commit index is learned again from the leader.
    pub fn set_commit(&self, commit: u64) -> Result<(), StorageError> {
        let hs = {
            let mut core = self.wl();
            core.hard_state.commit = commit;
            core.hard_state.clone()
        };
        self.set_hard_state(&hs)
    }

    /// Raises the recorded commit index to `index` (at start: the state
    /// machine's store was flushed at `index`, so it was committed).
    pub fn commit_at_least(&self, index: u64) -> Result<(), StorageError> {
        let (commit, last) = {
            let core = self.rl();
            (core.hard_state.commit, core.last_index())
        };
        if index <= commit {
            return Ok(());
        }
        if index > last {
            return Err(StorageError::Corrupt(format!(
                "the state machine's store was applied to index {index} but the log ends at {last}; remove the node's storage and re-join it"
            )));
        }
        self.set_commit(index)?;
        self.sync()
    }

    /// Records the membership after a conf change.
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), StorageError> {
        let mut core = self.wl();
        core.conf_state = cs.clone();
        if let Some(wal) = core.wal.as_mut() {
            wal.append_conf_state(cs)?;
        }
        Ok(())
    }

    /// Makes every append so far durable: one fsync for the whole Ready.
    pub fn sync(&self) -> Result<(), StorageError> {
        let mut core = self.wl();
        let (hs, cs) = (core.hard_state.clone(), core.conf_state.clone());
        if let Some(wal) = core.wal.as_mut() {
            wal.sync()?;
            if wal.wants_rotation() {
                wal.rotate(&hs, &cs)?;
            }
        }
        Ok(())
    }

    /// Installs a snapshot whose state is inline in `snapshot.data` (the
    /// bootstrap snapshot; tests): the state is written to its own file
    /// first. See [`install_snapshot`](Self::install_snapshot).
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata().clone();
        let dir = self.rl().dir.clone();
        let state = snapshot_state::write_state(dir.as_deref(), meta.index, meta.term, |w| {
            w.write_all(&snapshot.data)
        })?;
        self.install_snapshot(meta, state)
    }

    /// Installs a snapshot received from the leader: the log restarts after
    /// it, and no entry of the old log survives, in memory or after a
    /// restart. A state file elsewhere (a received one) is moved to its
    /// place first.
    pub fn install_snapshot(
        &self,
        meta: SnapshotMetadata,
        mut state: SnapshotState,
    ) -> Result<(), StorageError> {
        let mut core = self.wl();
        if let (Some(dir), SnapshotBlob::File(path)) = (core.dir.clone(), &state.blob) {
            let place = state_file(&dir, meta.index, meta.term);
            if *path != place {
                fs::rename(path, &place)
                    .map_err(|e| StorageError::io("rename into place", &place, e))?;
                wal::sync_dir(&dir.join(snapshot_state::SNAPSHOT_DIR))?;
                state.blob = SnapshotBlob::File(place);
            }
        }
        let mut snapshot = Snapshot {
            data: encode_ref(&state.reference),
            ..Default::default()
        };
        snapshot.set_metadata(meta.clone());
        if let Some(dir) = core.dir.clone() {
            let mut persisted = self.persisted.lock().expect("snapshot point lock");
            write_snapshot(&dir, &snapshot)?;
            snapshot_state::remove_older(&dir, meta.index, snapshot_state::Temps::Keep);
            *persisted = meta.index;
        }
        core.install(&meta);
        core.snapshot = snapshot;
        core.state = Some(state);
        if let Some(mut wal) = core.wal.take() {
            let recorded = record_install(&mut wal, &core, &meta);
            core.wal = Some(wal);
            recorded?;
        }
        Ok(())
    }

    /// Starts a new cluster's log: a snapshot at index 1, term 1 holding the
    /// initial membership and state. Every bootstrapping node writes the same
    /// one, and a node that joins later receives it (or a newer one) first,
    /// so it learns the initial membership that is in no log entry.
    pub fn bootstrap(&self, conf_state: ConfState, data: Vec<u8>) -> Result<(), StorageError> {
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.set_conf_state(conf_state);
        self.apply_snapshot(snapshot)?;
        let hs = self.rl().hard_state.clone();
        self.set_hard_state(&hs)?;
        self.sync()
    }

    /// Stores a snapshot of the state machine taken at `index` and compacts
    /// the log behind it, keeping `keep` entries for followers that lag a
    /// little (they then catch up from the log instead of a snapshot).
    /// Encodes in place: the Raft loop uses
    /// [`compact_to`](Self::compact_to) with state written off the loop.
    pub fn compact(&self, index: u64, data: Vec<u8>, keep: u64) -> Result<(), StorageError> {
        let (dir, term, conf_state) = {
            let core = self.rl();
            if index <= core.snapshot.get_metadata().index || index > core.last_index() {
                return Ok(());
            }
            (
                core.dir.clone(),
                core.term_known(index),
                core.conf_state.clone(),
            )
        };
        let state =
            snapshot_state::write_state(dir.as_deref(), index, term, |w| w.write_all(&data))?;
        match self.compact_to(index, term, conf_state, Some(state), keep)? {
            Some(files) => files.persist(),
            None => Ok(()),
        }
    }

    /// Term of `index` when the log still knows it (for a snapshot taken
    /// there); `None` once compacted away.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        let core = self.rl();
        (index >= core.compacted.0 && index <= core.last_index()).then(|| core.term_known(index))
    }

    /// The storage directory; `None` in memory.
    pub fn dir(&self) -> Option<PathBuf> {
        self.rl().dir.clone()
    }

    /// Makes (index, term) the latest snapshot point, the membership there
    /// being `conf_state`, and compacts the log behind it, keeping `keep`
    /// entries. The state machine's store holds the state at `index`
    /// (durably) before this is called; `state` is that state encoded for
    /// followers, when one was wanted (raft-rs asks again otherwise). A
    /// point older than the current one (a snapshot installed from the
    /// leader meanwhile) is dropped, as is an encoding of the current one
    /// when it has one.
    ///
    /// Done in memory; with a storage directory, the files are left to
    /// the returned [`Compaction`], to persist off the Raft loop.
    pub fn compact_to(
        &self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        state: Option<SnapshotState>,
        keep: u64,
    ) -> Result<Option<Compaction>, StorageError> {
        let mut core = self.wl();
        let current = core.snapshot.get_metadata().index;
        let stale = index < current
            || index > core.last_index()
            || (index == current && (state.is_none() || core.state.is_some()));
        if stale {
            let kept = core.state.as_ref().map(|s| &s.blob);
            if let Some(SnapshotState {
                blob: SnapshotBlob::File(path),
                ..
            }) = &state
                && !matches!(kept, Some(SnapshotBlob::File(p)) if p == path)
            {
                let _ = fs::remove_file(path);
            }
            return Ok(None);
        }
        let mut snapshot = Snapshot {
            data: state
                .as_ref()
                .map(|s| encode_ref(&s.reference))
                .unwrap_or_default(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        let dir = core.dir.clone();
        let written = snapshot.clone();
        core.snapshot = snapshot;
        core.state = state;
        let upto = index.saturating_sub(keep);
        if upto > core.compacted.0 {
            let drop = (upto - core.compacted.0) as usize;
            let boundary_term = core.entries[drop - 1].term;
            core.entries.drain(..drop);
            core.compacted = (upto, boundary_term);
        }
        let compacted = core.compacted.0;
        let segments = core
            .wal
            .as_mut()
            .map(|wal| wal.detach_to(compacted))
            .unwrap_or_default();
        Ok(dir.map(|dir| Compaction {
            dir,
            snapshot: written,
            segments,
            persisted: self.persisted.clone(),
        }))
    }

    /// True (once) when raft-rs asked for a newer snapshot than stored.
    pub fn take_snapshot_wanted(&self) -> bool {
        std::mem::take(&mut self.wl().snapshot_wanted)
    }

    /// The membership recorded with the latest snapshot, at its index;
    /// None when there is no snapshot.
    pub fn snapshot_conf_state(&self) -> Option<(u64, ConfState)> {
        let core = self.rl();
        let meta = core.snapshot.get_metadata();
        (meta.index > 0).then(|| (meta.index, meta.get_conf_state().clone()))
    }

    /// The latest snapshot (metadata index 0 when none).
    pub fn snapshot_index(&self) -> u64 {
        self.rl().snapshot.get_metadata().index
    }

    /// The state-machine data of the latest snapshot, if any, checked
    /// against its size and CRC.
    pub fn snapshot_data(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let Some(state) = self.snapshot_state() else {
            return Ok(None);
        };
        Ok(Some((state.reference.index, state.read_all()?)))
    }

    /// The state bytes of the latest snapshot, to send to a follower.
    pub fn snapshot_state(&self) -> Option<SnapshotState> {
        let core = self.rl();
        core.state
            .clone()
            .filter(|_| core.snapshot.get_metadata().index > 0)
    }

    /// Bytes of log segments on disk (0 in memory).
    pub fn disk_bytes(&self) -> u64 {
        self.rl().wal.as_ref().map_or(0, |w| w.disk_bytes())
    }

    /// fsyncs of log records since the node started (0 in memory). With
    /// group commit this grows slower than the number of commits.
    pub fn fsyncs(&self) -> u64 {
        self.rl().wal.as_ref().map_or(0, |w| w.fsyncs())
    }

    /// The current membership.
    pub fn conf_state(&self) -> ConfState {
        self.rl().conf_state.clone()
    }

    /// Test hook: the next fsync of the log fails as a disk error would.
    /// Compiled in always (one flag read per fsync) so that the crates
    /// above the engine can test how a storage failure reaches an app.
    #[doc(hidden)]
    pub fn fail_next_sync(&self) {
        if let Some(wal) = self.wl().wal.as_mut() {
            wal.fail_next_sync();
        }
    }

    /// Test hook: writes buffered records without an fsync; returns the
    /// active segment and where its written data ends.
    #[cfg(test)]
    pub(crate) fn flush_unsynced(&self) -> (PathBuf, u64) {
        self.wl()
            .wal
            .as_mut()
            .expect("a durable log")
            .flush_unsynced()
    }

    /// Test hook: a power loss (see `Wal::power_loss`); this store (and
    /// its clones) must not be used afterwards.
    #[cfg(test)]
    pub(crate) fn power_loss(&self, keep: impl FnOnce(u64) -> u64) {
        if let Some(wal) = self.wl().wal.take() {
            wal.power_loss(keep);
        }
    }

    /// Test hook: a crash. Buffered, unflushed records are lost; this store
    /// (and its clones) must not be used afterwards.
    #[cfg(test)]
    pub(crate) fn crash(self) {
        if let Some(wal) = self.wl().wal.take() {
            wal.crash();
        }
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.rl();
        Ok(RaftState {
            hard_state: core.hard_state.clone(),
            conf_state: core.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.rl();
        if low < core.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let offset = core.first_index();
        let mut out = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let core = self.rl();
        if idx == core.compacted.0 {
            return Ok(core.compacted.1);
        }
        if idx < core.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > core.last_index() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(core.entries[(idx - core.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut core = self.wl();
        let meta = core.snapshot.get_metadata();
        let conf = meta.get_conf_state();
        let has_peer = conf.voters.contains(&to) || conf.learners.contains(&to);
        // A snapshot that is too old, or that predates the receiver joining
        // (raft-rs on the receiver refuses those), is replaced: the Raft loop
        // takes a fresh one after this Ready and raft-rs asks again.
        if meta.index < request_index || !has_peer || core.state.is_none() {
            core.snapshot_wanted = true;
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(core.snapshot.clone())
    }
}

/// The state of a snapshot read from `snapshot.bin`: its file when the
/// data is a reference, or the inline state an older version wrote.
fn state_of(dir: &Path, snapshot: &Snapshot) -> Option<SnapshotState> {
    let meta = snapshot.get_metadata();
    if snapshot.data.is_empty() {
        // A flush point: the state is in the state machine's store.
        return None;
    }
    Some(match decode_ref(&snapshot.data) {
        Some(reference) => SnapshotState {
            blob: SnapshotBlob::File(state_file(dir, meta.index, meta.term)),
            reference,
        },
        None => SnapshotState {
            reference: SnapshotRef {
                index: meta.index,
                term: meta.term,
                size: snapshot.data.len() as u64,
                crc32: crc32fast::hash(&snapshot.data),
            },
            blob: SnapshotBlob::Memory(snapshot.data.clone()),
        },
    })
}

/// Records a snapshot install in the log: a new segment that starts with
/// the hard and conf state and the install, so a replay drops the old
/// entries even when older segments are still there (a crash before the
/// purge); then the older segments, which nothing needs any more, go.
fn record_install(wal: &mut Wal, core: &Core, meta: &SnapshotMetadata) -> Result<(), StorageError> {
    wal.rotate(&core.hard_state, &core.conf_state)?;
    wal.append_snapshot(meta)?;
    wal.sync()?;
    wal.purge_inactive()?;
    Ok(())
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
