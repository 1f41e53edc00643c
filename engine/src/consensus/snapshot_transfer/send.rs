//! The leader's side of a snapshot transfer.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::Message;
use raftoral_proto::cluster::v1::{
    RaftEnvelope, SendSnapshotRequest, SnapshotHeader, cluster_service_client::ClusterServiceClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::SnapshotTransfers;
use crate::consensus::storage::snapshot_state::{OpenSnapshot, SnapshotState};
use crate::consensus::transport::{GROUP_ID, Transport};
use crate::workflows::state_machine::NodeId;

/// Streams tried for one transfer before it is reported lost (raft-rs then
/// sends a new MsgSnapshot, and the transfer starts again).
const ATTEMPTS: u32 = 5;
/// Chunks queued ahead of the stream.
const AHEAD: usize = 4;

/// The bytes one transfer sends, over however many streams it takes.
#[derive(Clone)]
pub(crate) struct Transfer {
    bytes: OpenSnapshot,
}

impl Transfer {
    /// Opens the state once for the whole transfer: a compaction may
    /// remove the file's name meanwhile, and a resumed stream still reads
    /// it (the file has one owner at a time; from here, the transfer).
    pub(crate) fn begin(state: &SnapshotState) -> Result<Transfer, String> {
        Ok(Transfer {
            bytes: state.open().map_err(|e| e.to_string())?,
        })
    }

    /// What one stream reads: the bytes from `offset` (where the receiver
    /// stands) on. The simulation resumes its transfers through here.
    pub(crate) fn read_from(&self, offset: u64) -> Box<dyn std::io::Read + Send> {
        self.bytes.reader_at(offset)
    }
}

impl SnapshotTransfers {
    /// Starts sending `message` (a MsgSnapshot) with its state to the
    /// peer, unless a transfer to that peer is under way already (its
    /// outcome answers raft-rs for both). The outcome goes to `reports`:
    /// raft-rs keeps the follower waiting for a snapshot until it is told.
    pub(crate) fn send(
        self: &Arc<Self>,
        transport: &Arc<Transport>,
        message: Message,
        state: SnapshotState,
        reports: mpsc::Sender<(NodeId, bool)>,
        shutdown: watch::Receiver<bool>,
    ) {
        let to = message.to;
        if !self.sending.lock().expect("sending lock").insert(to) {
            tracing::debug!(
                peer = to,
                "a snapshot transfer to the peer is under way already"
            );
            return;
        }
        let this = self.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let index = state.reference.index;
            let size = state.reference.size;
            let started = std::time::Instant::now();
            let delivered = this.transfer(&transport, message, state, shutdown).await;
            this.sending.lock().expect("sending lock").remove(&to);
            if delivered {
                tracing::info!(
                    peer = to,
                    index,
                    size,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "snapshot sent"
                );
            } else {
                tracing::warn!(
                    peer = to,
                    index,
                    size,
                    "snapshot transfer failed; raft sends a new one"
                );
            }
            let _ = reports.send((to, delivered)).await;
        });
    }

    async fn transfer(
        &self,
        transport: &Transport,
        message: Message,
        state: SnapshotState,
        mut shutdown: watch::Receiver<bool>,
    ) -> bool {
        let to = message.to;
        let Some(address) = transport.addresses().get(&to).cloned() else {
            tracing::debug!(peer = to, "no address for the peer; snapshot not sent");
            return false;
        };
        // The transport's endpoint: with mutual TLS on, the snapshot stream
        // presents this node's certificate like every other peer call.
        let endpoint = match transport.endpoint(&address) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                tracing::warn!(peer = to, error = %e, "no endpoint for the peer; snapshot not sent");
                return false;
            }
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let header = SnapshotHeader {
            from_node_id: message.from,
            from_address: transport.advertise().to_owned(),
            cluster_id: transport.cluster_id(),
            message: Some(RaftEnvelope {
                group_id: GROUP_ID,
                message: match message.write_to_bytes() {
                    Ok(bytes) => bytes.into(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a snapshot message");
                        return false;
                    }
                },
            }),
        };
        let bytes = match Transfer::begin(&state) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(peer = to, error = %e, "the snapshot's state is gone; raft sends a newer one");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=ATTEMPTS {
            let outcome = tokio::select! {
                outcome = self.attempt(&endpoint, &header, &state.reference, &bytes) => outcome,
                _ = crate::shutdown::stopped(&mut shutdown) => return false,
            };
            match outcome {
                Ok(()) => return true,
                Err(reason) => {
                    tracing::info!(peer = to, attempt, %reason, "snapshot stream ended early; it resumes");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        false
    }

    /// One stream: the header, then the chunks from where the receiver
    /// stands, then the wait for its `complete`.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        header: &SnapshotHeader,
        reference: &raftoral_proto::cluster::v1::SnapshotRef,
        bytes: &Transfer,
    ) -> Result<(), String> {
        let mut client = ClusterServiceClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(self.max_frame)
            .max_decoding_message_size(self.max_frame);
        let (requests, rx) = mpsc::channel(AHEAD);
        requests
            .send(SendSnapshotRequest {
                header: Some(header.clone()),
                offset: 0,
                data: Bytes::new(),
            })
            .await
            .map_err(|_| "stream closed".to_owned())?;
        let mut responses = client
            .send_snapshot(ReceiverStream::new(rx))
            .await
            .map_err(|s| s.to_string())?
            .into_inner();
        let first = responses
            .message()
            .await
            .map_err(|s| s.to_string())?
            .ok_or("the receiver closed the stream")?;
        let from = first.received.min(reference.size);
        // File reads block: they run on a blocking thread that feeds the
        // stream; dropping `requests` there ends the stream (the receiver
        // then checks what it got).
        let bytes = bytes.clone();
        let chunk = self.chunk_bytes;
        let producer = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut reader = bytes.read_from(from);
            let mut offset = from;
            loop {
                let mut data = vec![0; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match reader.read(&mut data[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                data.truncate(filled);
                let request = SendSnapshotRequest {
                    header: None,
                    offset,
                    data: data.into(),
                };
                if requests.blocking_send(request).is_err() {
                    return Err("the stream ended".into());
                }
                offset += filled as u64;
            }
        });
        loop {
            match responses.message().await {
                Ok(Some(r)) if r.complete => {
                    producer.abort();
                    return Ok(());
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the receiver ended the stream before completing".into()),
                Err(status) => return Err(status.to_string()),
            }
        }
    }
}
