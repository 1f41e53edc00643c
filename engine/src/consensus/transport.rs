//! Node-to-node transport: raft-rs messages over gRPC streams.
//!
//! Each node keeps one outbound stream per peer, fed by a bounded queue: a
//! slow or dead peer loses messages (Raft retransmits) instead of blocking the
//! leader or growing memory. Messages are batched: everything queued for a
//! peer when its task wakes goes out as one `RaftRequest`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use raftoral_proto::cluster::v1::{
    RaftEnvelope, RaftRequest, cluster_service_client::ClusterServiceClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::consensus::tls::{Tls, TlsError, cluster_endpoint};
use crate::workflows::state_machine::NodeId;

/// The only Raft group today; see `RaftEnvelope.group_id`.
pub const GROUP_ID: u64 = 0;
/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Messages per batch.
const MAX_BATCH: usize = 256;
/// A peer that does not take a batch for this long gets a new stream.
const STALL: Duration = Duration::from_secs(2);
/// Largest node-to-node frame (snapshots travel inside raft messages).
pub const MAX_FRAME: usize = 512 * 1024 * 1024;

/// What the transport learnt about a peer, for the Raft loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSignal {
    /// The stream to the peer failed (for raft-rs `report_unreachable`).
    Unreachable(NodeId),
    /// The stream failed and the peer's port refuses connections: its
    /// process is gone (a paused or partitioned peer does not refuse).
    Down(NodeId),
    /// A snapshot for the peer was handed to its stream (`true`), or was
    /// dropped (`false`: full queue, failed stream). raft-rs keeps a
    /// follower waiting for a snapshot until told, so both are reported.
    Snapshot(NodeId, bool),
}

/// Outbound side of the transport, shared by the Raft loop and the server.
pub struct Transport {
    me: NodeId,
    advertise: String,
    /// This node's cluster id, sent with every batch (a joining node learns
    /// it from the leader's snapshot).
    cluster_id: Arc<Mutex<String>>,
    addresses: Mutex<HashMap<NodeId, String>>,
    peers: Mutex<HashMap<NodeId, mpsc::Sender<Message>>>,
    /// Peers whose stream failed, for `report_unreachable` and failover.
    unreachable: mpsc::Sender<PeerSignal>,
    shutdown: watch::Receiver<bool>,
    faults: Faults,
    /// Received Raft messages dropped by the checks of `raft_guard`.
    refused: AtomicU64,
    /// Mutual TLS for outgoing streams; `None` dials plaintext.
    tls: Option<Arc<Tls>>,
}

/// Test hooks: peers whose traffic is dropped in both directions, to
/// simulate a network partition inside one process tree, and a crash of the
/// Raft loop.
#[derive(Default, Clone)]
pub struct Faults {
    blocked: Arc<Mutex<std::collections::HashSet<NodeId>>>,
    /// Incoming snapshots dropped while set; the count of those dropped.
    drop_snapshots: Arc<std::sync::atomic::AtomicBool>,
    snapshots_dropped: Arc<std::sync::atomic::AtomicU64>,
    crash: Arc<AtomicBool>,
}

impl Faults {
    /// Makes the Raft loop panic at its next tick, as a bug would; the node
    /// must then report itself unhealthy and stop.
    pub fn crash_raft_loop(&self) {
        self.crash.store(true, Ordering::Relaxed);
    }

    /// True once [`Faults::crash_raft_loop`] was called.
    pub fn crash_requested(&self) -> bool {
        self.crash.load(Ordering::Relaxed)
    }

    /// Drops all traffic to and from `peers` (replacing the previous set).
    pub fn block(&self, peers: impl IntoIterator<Item = NodeId>) {
        *self.blocked.lock().expect("faults lock") = peers.into_iter().collect();
    }

    /// True when traffic with `peer` is dropped.
    pub fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked.lock().expect("faults lock").contains(&peer)
    }

    /// Drops (or stops dropping) every incoming snapshot: a transfer lost
    /// on the way.
    pub fn drop_snapshots(&self, drop: bool) {
        self.drop_snapshots
            .store(drop, std::sync::atomic::Ordering::Relaxed);
    }

    /// True (and counted) when an incoming snapshot must be dropped.
    pub fn drops_snapshot(&self) -> bool {
        let drop = self
            .drop_snapshots
            .load(std::sync::atomic::Ordering::Relaxed);
        if drop {
            self.snapshots_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        drop
    }

    /// Incoming snapshots dropped so far.
    pub fn snapshots_dropped(&self) -> u64 {
        self.snapshots_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Transport {
    /// A transport for node `me`, reachable at `advertise`.
    pub fn new(
        me: NodeId,
        advertise: String,
        addresses: HashMap<NodeId, String>,
        unreachable: mpsc::Sender<PeerSignal>,
        shutdown: watch::Receiver<bool>,
        faults: Faults,
        tls: Option<Arc<Tls>>,
    ) -> Transport {
        Transport {
            me,
            advertise,
            cluster_id: Arc::default(),
            addresses: Mutex::new(addresses),
            peers: Mutex::new(HashMap::new()),
            unreachable,
            shutdown,
            faults,
            refused: AtomicU64::new(0),
            tls,
        }
    }

    /// The TLS material outgoing streams use, when mutual TLS is on.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// A client endpoint for a node-to-node `address`, over TLS when on.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, TlsError> {
        cluster_endpoint(self.tls.as_deref(), address)
    }

    /// Counts a received Raft message that was dropped as malformed, from a
    /// non-member, or inconsistent with this node's log.
    pub fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Received Raft messages dropped since the node started.
    pub fn refused_messages(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// This node's cluster id; empty until known.
    pub fn cluster_id(&self) -> String {
        self.cluster_id.lock().expect("cluster id lock").clone()
    }

    /// True when `theirs` is not this node's cluster id, once this node
    /// knows it. An empty id is foreign too then: every member knows the id
    /// (a joining node learns it with its first snapshot, before it sends
    /// anything but answers), so only a stranger sends none. Checked on
    /// every received batch, so it does not allocate.
    pub fn is_foreign(&self, theirs: &str) -> bool {
        let ours = self.cluster_id.lock().expect("cluster id lock");
        !ours.is_empty() && *ours != theirs
    }

    /// Sets the cluster id sent to peers and checked on their traffic.
    pub fn set_cluster_id(&self, cluster_id: &str) {
        *self.cluster_id.lock().expect("cluster id lock") = cluster_id.to_owned();
    }

    /// This node's advertised address.
    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    /// The fault injector.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Learns (or updates) a peer's address. A changed address restarts the
    /// peer's connection.
    pub fn set_address(&self, node: NodeId, address: String) {
        if node == self.me || address.is_empty() {
            return;
        }
        let mut addresses = self.addresses.lock().expect("addresses lock");
        if addresses.get(&node) != Some(&address) {
            tracing::info!(peer = node, %address, "peer address learned");
            addresses.insert(node, address);
            self.peers.lock().expect("peers lock").remove(&node);
        }
    }

    /// Forgets a removed peer.
    pub fn remove_peer(&self, node: NodeId) {
        self.addresses.lock().expect("addresses lock").remove(&node);
        self.peers.lock().expect("peers lock").remove(&node);
    }

    /// Known addresses.
    pub fn addresses(&self) -> HashMap<NodeId, String> {
        self.addresses.lock().expect("addresses lock").clone()
    }

    /// Queues messages for their peers; never blocks.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            let to = m.to;
            if self.faults.is_blocked(to) {
                continue;
            }
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let Some(queue) = self.queue_for(to) else {
                tracing::debug!(to, "no address for peer; raft message dropped");
                if snapshot {
                    let _ = self.unreachable.try_send(PeerSignal::Snapshot(to, false));
                }
                continue;
            };
            if let Err(e) = queue.try_send(m) {
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        tracing::debug!(to, "peer queue full; raft message dropped")
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        self.peers.lock().expect("peers lock").remove(&to);
                    }
                }
                if snapshot {
                    let _ = self.unreachable.try_send(PeerSignal::Snapshot(to, false));
                }
            }
        }
    }

    fn queue_for(&self, to: NodeId) -> Option<mpsc::Sender<Message>> {
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(q) = peers.get(&to)
            && !q.is_closed()
        {
            return Some(q.clone());
        }
        let address = self
            .addresses
            .lock()
            .expect("addresses lock")
            .get(&to)?
            .clone();
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        tokio::spawn(run_peer(PeerLink {
            me: self.me,
            advertise: self.advertise.clone(),
            cluster_id: self.cluster_id.clone(),
            to,
            address,
            queue: rx,
            unreachable: self.unreachable.clone(),
            shutdown: self.shutdown.clone(),
            tls: self.tls.clone(),
        }));
        peers.insert(to, tx.clone());
        Some(tx)
    }
}

struct PeerLink {
    me: NodeId,
    advertise: String,
    cluster_id: Arc<Mutex<String>>,
    to: NodeId,
    address: String,
    queue: mpsc::Receiver<Message>,
    unreachable: mpsc::Sender<PeerSignal>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<Tls>>,
}

/// Keeps one stream to a peer open, reconnecting with backoff, until the
/// queue's sender is dropped (peer removed or address changed) or shutdown.
async fn run_peer(mut link: PeerLink) {
    let mut backoff = Duration::from_millis(50);
    // A certificate rotation ends the stream: the next one is dialled with
    // the new client certificate and CA bundle.
    let mut rotations = link.tls.as_ref().map(|t| t.rotations());
    loop {
        // Built per connection, so that it carries the current TLS files.
        let endpoint = match cluster_endpoint(link.tls.as_deref(), &link.address) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(peer = link.to, address = %link.address, error = %e, "invalid peer address");
                return;
            }
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let mut client = ClusterServiceClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(MAX_FRAME)
            .max_decoding_message_size(MAX_FRAME);
        let (batches, rx) = mpsc::channel::<RaftRequest>(64);
        // The call runs on its own task so that hyper drives the request body
        // whatever this loop is doing; this loop may then wait on `batches`.
        let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(rx)).await });
        let mut sent_any = false;
        let mut rotated_now = false;
        let ended = loop {
            tokio::select! {
                result = &mut call => {
                    break match result {
                        Ok(r) => r.map(|_| ()).map_err(|s| s.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                }
                message = link.queue.recv() => {
                    let Some(first) = message else {
                        call.abort();
                        return;
                    };
                    let mut envelopes = Vec::with_capacity(8);
                    let mut snapshot = first.get_msg_type() == MessageType::MsgSnapshot;
                    push_envelope(&mut envelopes, first);
                    while envelopes.len() < MAX_BATCH {
                        let Ok(m) = link.queue.try_recv() else { break };
                        snapshot |= m.get_msg_type() == MessageType::MsgSnapshot;
                        push_envelope(&mut envelopes, m);
                    }
                    let request = RaftRequest {
                        from_node_id: link.me,
                        messages: envelopes,
                        from_address: link.advertise.clone(),
                        cluster_id: link.cluster_id.lock().expect("cluster id lock").clone(),
                    };
                    // Backpressure from a slow peer stops here, in this task:
                    // the Raft loop only ever try_sends into the bounded
                    // queue, so it never waits; a peer stuck longer than
                    // STALL is reconnected.
                    let sent = tokio::time::timeout(STALL, batches.send(request)).await;
                    if snapshot {
                        let ok = matches!(sent, Ok(Ok(())));
                        let _ = link.unreachable.try_send(PeerSignal::Snapshot(link.to, ok));
                    }
                    match sent {
                        Ok(Ok(())) => sent_any = true,
                        Ok(Err(_)) => break Err("stream closed".into()),
                        Err(_) => break Err(format!("peer did not drain its stream for {STALL:?}")),
                    }
                }
                _ = link.shutdown.changed() => {
                    call.abort();
                    return;
                }
                _ = rotated(&mut rotations) => {
                    rotated_now = true;
                    break Ok(());
                }
            }
        };
        call.abort();
        if rotated_now {
            // The peer is fine: reconnect at once, with no unreachable
            // report to the Raft loop.
            tracing::debug!(
                peer = link.to,
                "TLS files rotated; reconnecting to the peer with them"
            );
            continue;
        }
        if let Err(reason) = ended {
            tracing::debug!(peer = link.to, %reason, "raft stream to peer ended");
        }
        let signal = if refuses_connections(&link.address).await {
            PeerSignal::Down(link.to)
        } else {
            PeerSignal::Unreachable(link.to)
        };
        let _ = link.unreachable.try_send(signal);
        if sent_any {
            backoff = Duration::from_millis(50);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = link.shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Resolves when the TLS material changes; never without TLS.
async fn rotated(rotations: &mut Option<watch::Receiver<u64>>) {
    match rotations {
        Some(r) => {
            if r.changed().await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
        None => futures::future::pending().await,
    }
}

/// True when nothing listens at `address` any more: a connection attempt is
/// refused at once. That is what a killed process leaves behind; a paused,
/// slow or partitioned one accepts (or times out) instead.
async fn refuses_connections(address: &str) -> bool {
    match tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

fn push_envelope(envelopes: &mut Vec<RaftEnvelope>, m: Message) {
    match m.write_to_bytes() {
        Ok(bytes) => envelopes.push(RaftEnvelope {
            group_id: GROUP_ID,
            message: bytes.into(),
        }),
        Err(e) => tracing::error!(error = %e, "cannot encode a raft message"),
    }
}

/// Decodes one received envelope.
pub fn decode_envelope(envelope: &RaftEnvelope) -> Option<Message> {
    if envelope.group_id != GROUP_ID {
        tracing::warn!(
            group = envelope.group_id,
            "message for an unknown raft group dropped"
        );
        return None;
    }
    match Message::parse_from_bytes(&envelope.message) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable raft message dropped");
            None
        }
    }
}

/// Accepted connections of `listener` with Nagle's algorithm off. tonic's
/// `tcp_nodelay` applies only to listeners it binds itself; without this a
/// stream of small messages (app events, raft batches) waits on delayed ACKs
/// for tens of milliseconds.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot disable Nagle on an accepted connection");
            }
        })
    })
}
