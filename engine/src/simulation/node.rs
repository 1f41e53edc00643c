//! One simulated node: the real Raft loop, log store, state machine and
//! state store, opened from a directory by the real startup code, with its
//! environment (clock, network, flush thread) replaced by the simulator's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use raft::prelude::Message;
use tokio::sync::{broadcast, mpsc, watch};

use super::lanes::{Lane, Slice};
use crate::config::NodeConfig;
use crate::consensus::environment::{Clock, Environment, Outbox};
use crate::consensus::raft_loop::{Input, RaftLoop, RaftStatus, SnapshotInputs};
use crate::consensus::snapshot_transfer::SnapshotTransfers;
use crate::consensus::snapshot_transfer::Transfer;
use crate::consensus::storage::RaftStore;
use crate::consensus::storage::snapshot_state::SnapshotState;
use crate::workflows::state_machine::{NodeId, StateMachine};

/// Wall time at the start of every simulation (ms since the Unix epoch).
pub(super) const EPOCH_MS: u64 = 1_800_000_000_000;

/// A node's clock: the simulation's time plus this node's skew (which
/// jumps when the simulator says so) for wall time; the simulation's time
/// alone for monotonic time.
pub(super) struct SimClock {
    pub now: Arc<AtomicU64>,
    pub skew_ms: Arc<AtomicI64>,
    pub base: Instant,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let now = EPOCH_MS + self.now.load(Ordering::Relaxed);
        now.saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now.load(Ordering::Relaxed))
    }
}

/// A snapshot on its way: the message, the sender's open state and where
/// the outcome goes.
pub(super) struct SnapshotSend {
    pub message: Message,
    pub state: SnapshotState,
    /// Begun when sent, by the real sender's code: a compaction that
    /// deletes the file meanwhile must not take the bytes away.
    pub transfer: Result<Transfer, String>,
    pub report: mpsc::Sender<(NodeId, bool)>,
}

/// What a node sent during one step, collected for the simulated network.
#[derive(Default)]
pub(super) struct Sent {
    pub messages: Vec<Message>,
    pub snapshots: Vec<SnapshotSend>,
}

struct SimOutbox {
    sent: Arc<Mutex<Sent>>,
}

impl Outbox for SimOutbox {
    fn send(&self, messages: Vec<Message>) {
        self.sent.lock().expect("sent").messages.extend(messages);
    }

    fn send_snapshot(
        &self,
        message: Message,
        state: SnapshotState,
        report: mpsc::Sender<(NodeId, bool)>,
    ) {
        let transfer = Transfer::begin(&state);
        self.sent
            .lock()
            .expect("sent")
            .snapshots
            .push(SnapshotSend {
                message,
                state,
                transfer,
                report,
            });
    }

    fn set_address(&self, _: NodeId, _: String) {}
    fn remove_peer(&self, _: NodeId) {}
    fn set_cluster_id(&self, _: &str) {}
    fn note_refused(&self) {}
    fn crash_requested(&self) -> bool {
        false
    }
}

/// A snapshot's state received (or not) by a receiver lane: its message
/// goes to the loop next.
pub(super) struct Arrived {
    pub from: NodeId,
    pub message: Message,
    pub received: Result<(), String>,
}

/// A node's background threads, each a [`Lane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LaneId {
    /// The flush thread: flushes, snapshot encodes, compactions' files.
    Flush,
    /// The snapshot receiver: a received state decoded into a store.
    Receive,
}

/// A node while its process runs.
pub(super) struct Running {
    raft: RaftLoop,
    pub state: Arc<RwLock<StateMachine>>,
    store: RaftStore,
    pub snapshots: Arc<SnapshotTransfers>,
    sent: Arc<Mutex<Sent>>,
    inputs: SnapshotInputs,
    arrived: Arc<Mutex<Vec<Arrived>>>,
    dir: PathBuf,
    _events: broadcast::Receiver<Arc<crate::workflows::state_machine::EventAt>>,
    _status: watch::Receiver<RaftStatus>,
    // Last: dropped after the loop, and each waits for its thread.
    flush: Lane,
    receive: Lane,
}

/// A node: its configuration and directory, and its process when it runs.
pub(super) struct SimNode {
    pub id: NodeId,
    pub config: NodeConfig,
    pub running: Option<Running>,
    /// Bumped at every crash: events scheduled for an earlier process of
    /// this node are dropped.
    pub generation: u64,
    pub skew_ms: Arc<AtomicI64>,
    /// Ticks per election timeout (fixed here; see `startup::open_with`).
    pub election_ticks: usize,
    /// Removed from the cluster: stopped for good, out of every check.
    pub removed: bool,
    /// The highest skew this node's clock had when one of its processes
    /// started: a start trusts the wall clock once (`log_clock.rs`), so
    /// this is how far ahead of true time its stamps may run.
    pub max_start_skew_ms: i64,
}

impl SimNode {
    /// A node that has not started yet.
    pub(super) fn new(config: NodeConfig, skew_ms: i64, election_ticks: usize) -> SimNode {
        SimNode {
            id: config.node_id,
            config,
            running: None,
            generation: 0,
            skew_ms: Arc::new(AtomicI64::new(skew_ms)),
            election_ticks,
            removed: false,
            max_start_skew_ms: skew_ms,
        }
    }

    /// Opens the node from its directory (new or restarted).
    pub(super) fn start(&mut self, now: &Arc<AtomicU64>, base: Instant) -> Result<(), String> {
        let ticks = self.election_ticks;
        self.max_start_skew_ms = self
            .max_start_skew_ms
            .max(self.skew_ms.load(Ordering::Relaxed));
        let opened = crate::consensus::startup::open_with(&self.config, |c| {
            c.min_election_tick = ticks;
            c.max_election_tick = ticks + 1;
        })
        .map_err(|e| format!("node {} does not start: {e}", self.id))?;
        let store = opened.raw.store().clone();
        let state = Arc::new(RwLock::new(opened.state));
        let (events, events_rx) = broadcast::channel(64);
        let (status, status_rx) = watch::channel(RaftStatus::default());
        let snapshots = Arc::new(SnapshotTransfers::new(
            self.config.storage_path.clone(),
            self.config.snapshot_chunk_bytes,
            self.config.max_frame_bytes,
        ));
        let sent = Arc::new(Mutex::new(Sent::default()));
        let flush = Lane::start(&format!("sim-flush-{}", self.id));
        let receive = Lane::start(&format!("sim-receive-{}", self.id));
        let env = Environment {
            clock: Arc::new(SimClock {
                now: now.clone(),
                skew_ms: self.skew_ms.clone(),
                base,
            }),
            outbox: Arc::new(SimOutbox { sent: sent.clone() }),
            jobs: flush.jobs(),
        };
        let mut raft = RaftLoop::new(
            opened.raw,
            state.clone(),
            events,
            status,
            env,
            snapshots.clone(),
            self.config.clone(),
        );
        let inputs = raft.take_inputs();
        self.running = Some(Running {
            raft,
            state,
            store,
            snapshots,
            sent,
            inputs,
            arrived: Arc::default(),
            dir: self
                .config
                .storage_path
                .clone()
                .expect("a simulated node has a directory"),
            _events: events_rx,
            _status: status_rx,
            flush,
            receive,
        });
        Ok(())
    }

    /// A power loss: of the log's bytes written since its last fsync, the
    /// first `keep(n)` survive; queued flush jobs never run.
    pub(super) fn crash(&mut self, keep: impl FnOnce(u64) -> u64) {
        if let Some(running) = self.running.take() {
            running.store.power_loss(keep);
            drop(running);
        }
        self.generation += 1;
    }

    pub(super) fn is_up(&self) -> bool {
        self.running.is_some()
    }
}

impl Running {
    /// Handles one input and runs the Ready round after it, then what the
    /// round produced for the loop itself (transfer outcomes).
    /// With `interleave`, a receive under way runs to its end between the
    /// input and its Ready round (in a process a receiver finishes
    /// whenever it does, also between a check of the loop and the act
    /// that relies on it).
    pub(super) fn input(&mut self, input: Input, interleave: bool) -> Result<(), String> {
        self.step(input, interleave)?;
        self.drain()
    }

    /// One input and its Ready round (with a receive between them when
    /// `interleave`).
    fn step(&mut self, input: Input, interleave: bool) -> Result<(), String> {
        let storage = |e| format!("storage failed: {e}");
        self.raft.handle(input).map_err(storage)?;
        while interleave && self.receive.has_work() {
            if self.receive.slice()? == Slice::Finished {
                break;
            }
        }
        self.raft.ready().map_err(storage)
    }

    /// Feeds the loop what came back on its own channels.
    pub(super) fn drain(&mut self) -> Result<(), String> {
        loop {
            if let Ok(e) = self.inputs.2.try_recv() {
                return Err(format!("compaction files failed: {e}"));
            }
            let input = if let Ok(flush) = self.inputs.0.try_recv() {
                Input::Flushed(flush)
            } else if let Ok((peer, ok)) = self.inputs.1.try_recv() {
                Input::Signal(crate::consensus::transport::PeerSignal::Snapshot(peer, ok))
            } else {
                return Ok(());
            };
            self.step(input, false)?;
        }
    }

    /// Moves `lane`'s work to its next pause point or end, then feeds
    /// the loop what that produced.
    pub(super) fn slice(&mut self, lane: LaneId) -> Result<Slice, String> {
        let slice = match lane {
            LaneId::Flush => self.flush.slice()?,
            LaneId::Receive => self.receive.slice()?,
        };
        self.drain()?;
        Ok(slice)
    }

    /// The lanes with a job under way or queued.
    pub(super) fn busy_lanes(&self) -> Vec<LaneId> {
        let mut busy = Vec::new();
        if self.flush.has_work() {
            busy.push(LaneId::Flush);
        }
        if self.receive.has_work() {
            busy.push(LaneId::Receive);
        }
        busy
    }

    /// Queues the receive of `send` from `from` on the receiver lane; its
    /// outcome comes back through [`Self::take_arrived`].
    pub(super) fn receive(&self, from: NodeId, send: SnapshotSend) {
        let dir = self.dir.clone();
        let snapshots = self.snapshots.clone();
        let arrived = self.arrived.clone();
        // A receiver that dies before the end (even before it starts)
        // breaks the sender's stream, which reports the failure (raft-rs
        // then sends again).
        let report = FailUnlessReported(Some((send.report.clone(), send.message.to)));
        self.receive.push(Box::new(move || {
            let received = receive_snapshot(&dir, &snapshots, &send);
            report.report(received.is_ok());
            arrived.lock().expect("arrived").push(Arrived {
                from,
                message: send.message,
                received,
            });
        }));
    }

    /// Receives finished since the last call.
    pub(super) fn take_arrived(&self) -> Vec<Arrived> {
        std::mem::take(&mut *self.arrived.lock().expect("arrived"))
    }

    pub(super) fn take_sent(&self) -> Sent {
        std::mem::take(&mut *self.sent.lock().expect("sent"))
    }

    /// The membership this node's log store holds (as applied).
    pub(super) fn conf(&self) -> raft::prelude::ConfState {
        self.store.conf_state()
    }

    pub(super) fn raft(&self) -> &raft::RawNode<RaftStore> {
        self.raft.raw()
    }

    /// The stamp a proposal made here now carries (`Node::stamp`).
    pub(super) fn stamp(&self) -> u64 {
        self.raft.log_clock().stamp()
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> T {
        f(&self.state.read().expect("state lock"))
    }
}

/// Reports a snapshot's outcome to its sender once; a failure when
/// dropped unreported (the receiving process died).
struct FailUnlessReported(Option<(mpsc::Sender<(NodeId, bool)>, NodeId)>);

impl FailUnlessReported {
    fn report(mut self, received: bool) {
        if let Some((report, to)) = self.0.take() {
            let _ = report.try_send((to, received));
        }
    }
}

impl Drop for FailUnlessReported {
    fn drop(&mut self) {
        if let Some((report, to)) = self.0.take() {
            let _ = report.try_send((to, false));
        }
    }
}

/// How a receive's error starts when the sender could not read its own
/// snapshot (an invariant's violation, not a lost transfer).
pub(super) const SENDER_FAILED: &str = "the sender cannot read its snapshot: ";

/// Receives a whole snapshot into `dir` as the transfer's receiver would
/// (a file under its final name, decoded into a store of its own) and
/// makes it ready for the loop's install.
pub(super) fn receive_snapshot(
    dir: &Path,
    snapshots: &SnapshotTransfers,
    send: &SnapshotSend,
) -> Result<(), String> {
    use crate::consensus::storage::snapshot_state::{SNAPSHOT_DIR, SnapshotBlob};
    use std::io::Read as _;
    let reference = send.state.reference;
    let transfer = send.transfer.as_ref().map_err(|e| e.clone())?;
    // Two streams: the first breaks halfway (the loop, a compaction
    // included, may run meanwhile) and the transfer resumes where the
    // receiver stands. The sender failing to read its own state is a
    // defect, not a network fault.
    let sender = |e: String| format!("{SENDER_FAILED}{e}");
    let half = reference.size / 2;
    let mut bytes = Vec::new();
    transfer
        .read_from(0)
        .take(half)
        .read_to_end(&mut bytes)
        .map_err(|e| sender(e.to_string()))?;
    crate::consensus::pause::pause_point("snapshot half sent, the stream breaks");
    transfer
        .read_from(bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| sender(e.to_string()))?;
    let folder = dir.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    let path = folder.join(format!(
        "incoming-{}-{}.ready",
        reference.index, reference.term
    ));
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    crate::consensus::pause::pause_point("snapshot received, not decoded");
    let received = SnapshotState {
        reference,
        blob: SnapshotBlob::File(path),
    };
    let prepared = crate::consensus::snapshot_transfer::decode(Some(dir), received)?;
    snapshots.prepare(prepared);
    Ok(())
}
