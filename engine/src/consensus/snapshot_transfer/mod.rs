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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use raftoral_proto::cluster::v1::SnapshotRef;

use crate::consensus::storage::snapshot_state::SnapshotState;
use crate::workflows::state_machine::{NodeId, StateMachine};

pub(crate) use receive::{Acks, Partial};

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
    /// The latest completely received snapshot.
    prepared: Mutex<Option<Prepared>>,
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

    /// True when a received snapshot at (index, term) is ready to install.
    pub(crate) fn is_prepared(&self, index: u64, term: u64) -> bool {
        self.prepared
            .lock()
            .expect("prepared lock")
            .as_ref()
            .is_some_and(|p| p.reference.index == index && p.reference.term == term)
    }

    /// Takes the received snapshot at (index, term), if that is the one
    /// prepared.
    pub(crate) fn take_prepared(&self, index: u64, term: u64) -> Option<Prepared> {
        let mut slot = self.prepared.lock().expect("prepared lock");
        if slot
            .as_ref()
            .is_some_and(|p| p.reference.index == index && p.reference.term == term)
        {
            slot.take()
        } else {
            None
        }
    }
}

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
