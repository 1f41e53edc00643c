//! The follower's side of a snapshot transfer.

use std::fs;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use raft::prelude::Message;
use raftoral_proto::cluster::v1::{SendSnapshotRequest, SendSnapshotResponse, SnapshotRef};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{Prepared, SnapshotTransfers};
use crate::consensus::pause::pause_point;
use crate::consensus::storage::snapshot_state::{self, SnapshotBlob, SnapshotState};
use crate::workflows::state_machine::{Archive, NodeId, StateMachine};

/// The part of a snapshot received so far from one sender.
pub(crate) struct Partial {
    reference: SnapshotRef,
    received: u64,
    hasher: crc32fast::Hasher,
    sink: Sink,
}

enum Sink {
    File { path: PathBuf, file: fs::File },
    Memory(Vec<u8>),
}

/// What the responses of a transfer stream are.
pub(crate) type Acks = ReceiverStream<Result<SendSnapshotResponse, Status>>;

impl SnapshotTransfers {
    /// Receives the snapshot `reference` from `from` on `stream` (its
    /// header already read and checked), continuing a partial transfer of
    /// the same snapshot. Once complete and checked, the state is decoded
    /// and `step` hands `message` to the Raft loop.
    pub(crate) fn receive(
        self: &Arc<Self>,
        from: NodeId,
        message: Message,
        reference: SnapshotRef,
        mut stream: Streaming<SendSnapshotRequest>,
        step: impl FnOnce(Message) + Send + 'static,
    ) -> Result<Acks, Status> {
        let mut partial = self.partial_for(from, &reference)?;
        if partial.received > 0 {
            self.hooks.resumed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                from,
                index = reference.index,
                offset = partial.received,
                "snapshot transfer resumes"
            );
        }
        let (acks, rx) = mpsc::channel(4);
        acks.try_send(Ok(SendSnapshotResponse {
            received: partial.received,
            complete: false,
        }))
        .expect("a new channel has room");
        let this = self.clone();
        tokio::spawn(async move {
            let cut = this.hooks.take_cut();
            let mut in_stream = 0u64;
            let outcome: Result<(), Status> = async {
                while let Some(chunk) = stream.message().await? {
                    this.hooks.chunks_received.fetch_add(1, Ordering::Relaxed);
                    partial.write(&chunk)?;
                    in_stream += chunk.data.len() as u64;
                    if cut.is_some_and(|at| in_stream >= at) {
                        return Err(Status::unavailable("snapshot stream cut by a test"));
                    }
                }
                Ok(())
            }
            .await;
            if let Err(status) = outcome {
                // Kept for a resumed stream, unless a newer one replaced it.
                tracing::debug!(from, received = partial.received, %status, "snapshot stream ended early");
                this.keep_partial(from, partial);
                let _ = acks.send(Err(status)).await;
                return;
            }
            match this.complete(from, partial).await {
                Ok(prepared) => {
                    this.prepare(prepared);
                    this.hooks.completed.fetch_add(1, Ordering::Relaxed);
                    step(message);
                    let _ = acks
                        .send(Ok(SendSnapshotResponse {
                            received: reference.size,
                            complete: true,
                        }))
                        .await;
                }
                Err(status) => {
                    tracing::warn!(from, index = reference.index, %status, "received snapshot refused");
                    let _ = acks.send(Err(status)).await;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// The partial transfer of `reference` from `from`, or a new one.
    fn partial_for(&self, from: NodeId, reference: &SnapshotRef) -> Result<Partial, Status> {
        if let Some(p) = self.partials.lock().expect("partials lock").remove(&from)
            && p.reference == *reference
        {
            return Ok(p);
        }
        let sink = match &self.dir {
            None => Sink::Memory(Vec::new()),
            Some(dir) => {
                let snapshots = dir.join(snapshot_state::SNAPSHOT_DIR);
                fs::create_dir_all(&snapshots).map_err(|e| io_status("create", &snapshots, e))?;
                // A name of its own per partial: a stream that outlives its
                // sender's attempt never writes into a newer partial's file.
                let n = self.hooks.partials_started.fetch_add(1, Ordering::Relaxed);
                let path = snapshots.join(format!(
                    "incoming-{}-{}-{from}-{n}.part",
                    reference.index, reference.term
                ));
                let file = fs::File::create(&path).map_err(|e| io_status("create", &path, e))?;
                Sink::File { path, file }
            }
        };
        Ok(Partial {
            reference: *reference,
            received: 0,
            hasher: crc32fast::Hasher::new(),
            sink,
        })
    }

    fn keep_partial(&self, from: NodeId, mut partial: Partial) {
        // A failed write may have left part of a chunk behind: the file
        // ends where the counted bytes end, or the partial is dropped.
        if let Sink::File { file, .. } = &mut partial.sink {
            let received = partial.received;
            if file
                .set_len(received)
                .and_then(|()| file.seek(SeekFrom::Start(received)))
                .is_err()
            {
                return;
            }
        }
        let mut partials = self.partials.lock().expect("partials lock");
        partials.entry(from).or_insert(partial);
    }

    /// Checks size and CRC, makes the file durable under its final name
    /// and decodes the state on a blocking thread.
    async fn complete(&self, from: NodeId, partial: Partial) -> Result<Prepared, Status> {
        let reference = partial.reference;
        if partial.received != reference.size {
            let received = partial.received;
            self.keep_partial(from, partial);
            return Err(Status::invalid_argument(format!(
                "the snapshot stream ended at byte {received} of {}; send the rest",
                reference.size
            )));
        }
        if partial.hasher.clone().finalize() != reference.crc32 {
            return Err(Status::invalid_argument(
                "the received snapshot fails its checksum; send it again",
            ));
        }
        let blob = match partial.sink {
            Sink::Memory(data) => SnapshotBlob::Memory(data.into()),
            Sink::File { path, file } => {
                file.sync_all().map_err(|e| io_status("fsync", &path, e))?;
                let ready = path.with_file_name(format!(
                    "incoming-{}-{}.ready",
                    reference.index, reference.term
                ));
                fs::rename(&path, &ready).map_err(|e| io_status("rename", &ready, e))?;
                SnapshotBlob::File(ready)
            }
        };
        let snapshot = SnapshotState { reference, blob };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || decode(dir.as_deref(), snapshot))
            .await
            .map_err(|e| Status::internal(format!("snapshot decoding stopped: {e}")))?
            .map_err(|e| {
                Status::invalid_argument(format!("the received snapshot does not decode: {e}"))
            })
    }
}

/// Decodes a received snapshot's state into a store of its own (in `dir`),
/// made the node's at the install; the finished workflows go to disk as
/// they are read. Blocking.
pub(crate) fn decode(
    dir: Option<&std::path::Path>,
    snapshot: SnapshotState,
) -> Result<Prepared, String> {
    let index = snapshot.reference.index;
    let reader = snapshot.verified_reader().map_err(|e| e.to_string())?;
    let archive = Archive::create_for_snapshot(dir, index).map_err(|e| e.to_string())?;
    let state = StateMachine::restore_into(reader, index, archive).map_err(|e| e.to_string())?;
    pause_point("snapshot restored, not prepared");
    Ok(Prepared {
        reference: snapshot.reference,
        state,
        snapshot,
    })
}

impl Partial {
    /// Appends one chunk, which must start where the received bytes end.
    fn write(&mut self, chunk: &SendSnapshotRequest) -> Result<(), Status> {
        if chunk.offset != self.received {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} but {} bytes were received; resume from there",
                chunk.offset, self.received
            )));
        }
        if self.received + chunk.data.len() as u64 > self.reference.size {
            return Err(Status::invalid_argument(
                "snapshot data past the size its reference announced",
            ));
        }
        match &mut self.sink {
            Sink::Memory(data) => data.extend_from_slice(&chunk.data),
            Sink::File { path, file } => file
                .write_all(&chunk.data)
                .map_err(|e| io_status("write", path, e))?,
        }
        self.hasher.update(&chunk.data);
        self.received += chunk.data.len() as u64;
        Ok(())
    }
}

fn io_status(what: &str, path: &std::path::Path, e: std::io::Error) -> Status {
    tracing::error!(path = %path.display(), error = %e, "snapshot file operation failed");
    Status::unavailable(format!(
        "cannot {what} {} on the receiving node: {e}; check its storage path's permissions and free space",
        path.display()
    ))
}
