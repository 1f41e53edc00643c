//! Snapshots between nodes, out of the Raft message stream: the leader
//! streams a snapshot's state to a follower in chunks (`SendSnapshot`), so
//! no snapshot is too large for the frame limit and a transfer cut by a
//! reset resumes where the receiver stands; the raft-rs MsgSnapshot
//! carries only the metadata and a [`SnapshotRef`]. The receiver writes the
//! chunks to a file, checks size and CRC, decodes the state off the Raft
//! loop, and only then hands the MsgSnapshot to its loop, which installs
//! the decoded state.
//!
//! Also here: the test hooks of snapshot taking and transfer.
//!
//! Imports storage, the transport and the state machine (to decode into);
//! never the Raft loop, the node or the APIs.

mod receive;
mod send;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use raftoral_proto::cluster::v1::SnapshotRef;

use crate::consensus::storage::snapshot_state::SnapshotState;
use crate::workflows::state_machine::{NodeId, StateMachine};

#[cfg(test)]
pub(crate) use receive::decode;
pub(crate) use receive::{Acks, Partial};
#[cfg(test)]
pub(crate) use send::Transfer;

/// A received snapshot, checked and decoded, waiting for the Raft loop to
/// step its MsgSnapshot and install it.
pub(crate) struct Prepared {
    /// Index and term of the snapshot.
    pub reference: SnapshotRef,
    /// The decoded state.
    pub state: StateMachine,
    /// Its bytes, to keep as this node's snapshot.
    pub snapshot: SnapshotState,
}

/// Snapshot transfers of one node, both ways.
pub struct SnapshotTransfers {
    dir: Option<PathBuf>,
    chunk_bytes: usize,
    max_frame: usize,
    /// Peers a transfer is under way to.
    sending: Mutex<HashSet<NodeId>>,
    /// Incomplete incoming transfers, by sender: what a resumed stream
    /// continues.
    partials: Mutex<HashMap<NodeId, Partial>>,
    /// Completely received snapshots by (index, term), until the Raft loop
    /// installs one. Not a single slot: a newer transfer that completes
    /// between the loop's check of a snapshot and its install must not take
    /// that snapshot's state away (the install would fail and stop the
    /// node). Each entry has one owner: the transfer that prepared it, then
    /// the install that takes it.
    prepared: Mutex<PreparedSet>,
    hooks: SnapshotHooks,
}

impl SnapshotTransfers {
    pub(crate) fn new(dir: Option<PathBuf>, chunk_bytes: usize, max_frame: usize) -> Self {
        Self {
            dir,
            chunk_bytes,
            max_frame,
            sending: Mutex::default(),
            partials: Mutex::default(),
            prepared: Mutex::default(),
            hooks: SnapshotHooks::default(),
        }
    }

    /// Counters and test hooks.
    pub fn hooks(&self) -> &SnapshotHooks {
        &self.hooks
    }

    /// Keeps a completely received snapshot until its install; beyond
    /// [`MAX_PREPARED`] the oldest goes (it would be older than one a
    /// leader sent since, and never installed).
    pub(crate) fn prepare(&self, prepared: Prepared) {
        let key = (prepared.reference.index, prepared.reference.term);
        let mut set = self.prepared.lock().expect("prepared lock");
        set.all.insert(key, prepared);
        while set.all.len() > MAX_PREPARED {
            // Never the one the loop claimed: it is being installed.
            let claimed = set.claimed;
            let Some(oldest) = set.all.keys().copied().find(|k| Some(*k) != claimed) else {
                break;
            };
            set.all.remove(&oldest);
        }
    }

    /// True when a received snapshot at (index, term) is ready to install.
    #[cfg(test)]
    pub(crate) fn is_prepared(&self, index: u64, term: u64) -> bool {
        self.prepared
            .lock()
            .expect("prepared lock")
            .all
            .contains_key(&(index, term))
    }

    /// The Raft loop's check before it steps a MsgSnapshot: true when the
    /// snapshot at (index, term) is ready, which then stays until the
    /// install takes it (or the loop claims another), whatever transfers
    /// complete meanwhile.
    pub(crate) fn claim(&self, index: u64, term: u64) -> bool {
        let mut set = self.prepared.lock().expect("prepared lock");
        let ready = set.all.contains_key(&(index, term));
        set.claimed = ready.then_some((index, term));
        ready
    }

    /// Takes the received snapshot at (index, term) for its install; the
    /// ones at or below its index can never be installed after it and go.
    pub(crate) fn take_prepared(&self, index: u64, term: u64) -> Option<Prepared> {
        let mut set = self.prepared.lock().expect("prepared lock");
        let taken = set.all.remove(&(index, term));
        set.all.retain(|(i, _), _| *i > index);
        set.claimed = None;
        taken
    }
}

/// Received snapshots waiting for their install, and the one the loop
/// checked before stepping its message.
#[derive(Default)]
struct PreparedSet {
    all: BTreeMap<(u64, u64), Prepared>,
    claimed: Option<(u64, u64)>,
}

/// Received snapshots kept at once for their install (one per leader that
/// sent one is the common case; more means stale ones).
const MAX_PREPARED: usize = 4;

/// Counters of snapshot work and hooks that tests use to provoke faults.
#[derive(Default)]
pub struct SnapshotHooks {
    /// While true, snapshot encoding waits before it starts (it is then "in
    /// progress" as long as a test wants).
    hold_encoding: Mutex<bool>,
    released: Condvar,
    encodings_started: AtomicU64,
    /// The next incoming transfer stream fails after this many bytes.
    cut_after: Mutex<Option<u64>>,
    resumed: AtomicU64,
    completed: AtomicU64,
    chunks_received: AtomicU64,
    partials_started: AtomicU64,
}

impl SnapshotHooks {
    /// Holds (or releases) snapshot encoding at its start.
    pub fn hold_encoding(&self, hold: bool) {
        *self.hold_encoding.lock().expect("hold lock") = hold;
        self.released.notify_all();
    }

    /// Snapshot encodings started (held ones included).
    pub fn encodings_started(&self) -> u64 {
        self.encodings_started.load(Ordering::Relaxed)
    }

    /// Called by the encoding thread: counts the start, then waits while
    /// encoding is held.
    pub(crate) fn encoding_starts(&self) {
        self.encodings_started.fetch_add(1, Ordering::Relaxed);
        let held = self.hold_encoding.lock().expect("hold lock");
        let _released = self
            .released
            .wait_while(held, |held| *held)
            .expect("hold lock");
    }

    /// Makes the next incoming transfer stream fail once this many bytes
    /// of it were received, as a connection reset would.
    pub fn cut_next_transfer_after(&self, bytes: u64) {
        *self.cut_after.lock().expect("cut lock") = Some(bytes);
    }

    /// Takes the cut set for the next stream, if any.
    fn take_cut(&self) -> Option<u64> {
        self.cut_after.lock().expect("cut lock").take()
    }

    /// Incoming transfers that continued a partial one (offset > 0).
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }

    /// Incoming transfers completed, checked and handed to the Raft loop.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Chunks received by incoming transfers.
    pub fn chunks_received(&self) -> u64 {
        self.chunks_received.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::consensus::storage::snapshot_state::SnapshotBlob;

    fn prepared(index: u64, term: u64) -> Prepared {
        let reference = SnapshotRef {
            index,
            term,
            ..SnapshotRef::default()
        };
        Prepared {
            snapshot: SnapshotState {
                reference,
                blob: SnapshotBlob::Memory(Bytes::new()),
            },
            reference,
            state: StateMachine::new(),
        }
    }

    /// Issue 24, defect 3: a newer snapshot completing between the Raft
    /// loop's check of one and its install leaves the checked one in place.
    #[test]
    fn a_newer_transfer_completing_before_an_install_leaves_the_checked_snapshot() {
        let transfers = SnapshotTransfers::new(None, 1024, 1 << 20);
        transfers.prepare(prepared(10, 2));
        assert!(transfers.is_prepared(10, 2), "checked by the loop");
        transfers.prepare(prepared(20, 2));
        assert!(transfers.take_prepared(10, 2).is_some(), "installed");
        assert!(transfers.is_prepared(20, 2), "the newer one stays");
        transfers.prepare(prepared(5, 1));
        assert!(transfers.take_prepared(20, 2).is_some());
        assert!(!transfers.is_prepared(5, 1), "older than the install: gone");
        for i in 0..10 {
            transfers.prepare(prepared(100 + i, 3));
        }
        assert!(!transfers.is_prepared(100, 3) && transfers.is_prepared(109, 3));
    }

    /// Found by the simulation (seed 0x20001253 of the long run): with the
    /// set full, transfers completing between the loop's check of the
    /// oldest snapshot and its install evicted it, and the install failed.
    #[test]
    fn a_full_set_never_evicts_the_snapshot_the_loop_claimed() {
        let transfers = SnapshotTransfers::new(None, 1024, 1 << 20);
        for i in 0..MAX_PREPARED as u64 {
            transfers.prepare(prepared(10 + i, 2));
        }
        assert!(transfers.claim(10, 2), "the oldest, checked by the loop");
        for i in 0..3 {
            transfers.prepare(prepared(20 + i, 2));
        }
        assert!(transfers.take_prepared(10, 2).is_some(), "installed");
        assert!(!transfers.claim(11, 2), "unclaimed old ones went");
        assert!(transfers.claim(22, 2));
    }
}
