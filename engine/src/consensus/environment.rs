//! What the Raft loop needs from the world beyond its own state: a clock,
//! a network to send on and a thread for background writes.
//!
//! A node in a process uses the real ones ([`Environment::process`]: the
//! system clock, the gRPC [`Transport`], the [`FlushThread`]). The
//! deterministic simulation (`simulation/`, tests only) gives every node
//! its own skewed clock, a network that delays, drops, duplicates and
//! partitions, and runs the background jobs at moments its seed picks: the
//! loop's code is the same in both.

use std::sync::Arc;
use std::time::Instant;

use raft::prelude::Message;
use tokio::sync::{mpsc, watch};

use crate::consensus::flush_thread::FlushThread;
use crate::consensus::snapshot_transfer::SnapshotTransfers;
use crate::consensus::storage::snapshot_state::SnapshotState;
use crate::consensus::transport::Transport;
use crate::workflows::state_machine::NodeId;

/// Time as the loop reads it.
pub(crate) trait Clock: Send + Sync {
    /// Wall time, ms since the Unix epoch: the stamps of proposals.
    fn now_ms(&self) -> u64;
    /// Monotonic time: liveness windows and timeouts.
    fn now(&self) -> Instant;
}

/// The system clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::consensus::proposal::now_ms()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Where the loop's messages go, and what it tells the network about
/// members.
pub(crate) trait Outbox: Send + Sync {
    /// Sends Raft messages other than snapshots; best effort (Raft
    /// retries).
    fn send(&self, messages: Vec<Message>);
    /// Sends a snapshot message with its stored state; the outcome goes to
    /// `report` (true once the peer holds it).
    fn send_snapshot(
        &self,
        message: Message,
        state: SnapshotState,
        report: mpsc::Sender<(NodeId, bool)>,
    );
    /// A member's address (learnt from the log or a snapshot).
    fn set_address(&self, node: NodeId, address: String);
    /// A member left the cluster.
    fn remove_peer(&self, node: NodeId);
    /// The cluster's identity, learnt from a snapshot.
    fn set_cluster_id(&self, cluster_id: &str);
    /// A message from the network was refused by the loop's checks.
    fn note_refused(&self);
    /// Test hook: a test asked the loop to crash (see `Faults`).
    fn crash_requested(&self) -> bool;
}

/// Runs background jobs (flushes, compactions' files) in order, off the
/// loop.
pub(crate) trait Jobs: Send {
    /// Queues `job` after the jobs queued before it.
    fn run(&self, job: Box<dyn FnOnce() + Send>);
}

impl Jobs for FlushThread {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        FlushThread::run(self, job);
    }
}

/// The loop's seams, together.
pub(crate) struct Environment {
    pub clock: Arc<dyn Clock>,
    pub outbox: Arc<dyn Outbox>,
    pub jobs: Box<dyn Jobs>,
}

impl Environment {
    /// The real world: system clock, gRPC transport, flush thread.
    pub(crate) fn process(
        transport: Arc<Transport>,
        snapshots: Arc<SnapshotTransfers>,
        shutdown: watch::Receiver<bool>,
    ) -> Environment {
        Environment {
            clock: Arc::new(SystemClock),
            outbox: Arc::new(TransportOutbox {
                transport,
                snapshots,
                shutdown,
            }),
            jobs: Box::new(FlushThread::start()),
        }
    }
}

/// The gRPC transport as the loop's outbox; snapshots go by a transfer of
/// their own (`snapshot_transfer`).
struct TransportOutbox {
    transport: Arc<Transport>,
    snapshots: Arc<SnapshotTransfers>,
    shutdown: watch::Receiver<bool>,
}

impl Outbox for TransportOutbox {
    fn send(&self, messages: Vec<Message>) {
        self.transport.send(messages);
    }

    fn send_snapshot(
        &self,
        message: Message,
        state: SnapshotState,
        report: mpsc::Sender<(NodeId, bool)>,
    ) {
        if self.transport.faults().is_blocked(message.to) {
            return;
        }
        self.snapshots.send(
            &self.transport,
            message,
            state,
            report,
            self.shutdown.clone(),
        );
    }

    fn set_address(&self, node: NodeId, address: String) {
        self.transport.set_address(node, address);
    }

    fn remove_peer(&self, node: NodeId) {
        self.transport.remove_peer(node);
    }

    fn set_cluster_id(&self, cluster_id: &str) {
        self.transport.set_cluster_id(cluster_id);
    }

    fn note_refused(&self) {
        self.transport.note_refused();
    }

    fn crash_requested(&self) -> bool {
        self.transport.faults().crash_requested()
    }
}
