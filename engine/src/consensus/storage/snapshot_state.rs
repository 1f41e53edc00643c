//! The state bytes of a snapshot, kept apart from the Raft metadata: in a
//! file of their own (`snapshots/<index>-<term>.state`) on a durable node,
//! in memory otherwise. The raft-rs `Snapshot` (in `snapshot.bin`, in
//! memory, and in the MsgSnapshot the leader sends) carries only a
//! [`SnapshotRef`] naming them, so its size never depends on the state's.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;
use raftoral_proto::cluster::v1::SnapshotRef;

use super::{StorageError, wal};
use crate::consensus::pause::pause_point;

/// Prefix of a [`SnapshotRef`] inside a raft-rs snapshot's data. A
/// `StateSnapshot` (the inline state older nodes sent) never starts with a
/// zero byte: a protobuf tag is at least 1.
const REF_MARKER: &[u8; 4] = b"\0RSR";

/// The subdirectory of the storage directory that holds state files.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The data of a raft-rs snapshot that stands for `reference`.
pub fn encode_ref(reference: &SnapshotRef) -> Bytes {
    let mut data = REF_MARKER.to_vec();
    reference.encode(&mut data).expect("a Vec grows as needed");
    data.into()
}

/// The reference inside a raft-rs snapshot's data; `None` when the data is
/// inline state (from an older node) or undecodable.
pub fn decode_ref(data: &[u8]) -> Option<SnapshotRef> {
    let rest = data.strip_prefix(REF_MARKER)?;
    SnapshotRef::decode(rest).ok()
}

/// Where the state bytes of one snapshot are.
#[derive(Debug, Clone)]
pub enum SnapshotBlob {
    /// A file (fsynced before it was named here).
    File(PathBuf),
    /// In memory (a node without a storage directory).
    Memory(Bytes),
}

/// The state bytes of one snapshot and the reference that names them.
#[derive(Debug, Clone)]
pub struct SnapshotState {
    /// Index, term, size and checksum of the bytes.
    pub reference: SnapshotRef,
    /// Where they are.
    pub blob: SnapshotBlob,
}

impl SnapshotState {
    /// The whole state, checked against the reference's size and CRC.
    pub fn read_all(&self) -> Result<Vec<u8>, StorageError> {
        let data = match &self.blob {
            SnapshotBlob::Memory(bytes) => bytes.to_vec(),
            SnapshotBlob::File(path) => {
                fs::read(path).map_err(|e| StorageError::io("read", path, e))?
            }
        };
        if data.len() as u64 != self.reference.size
            || crc32fast::hash(&data) != self.reference.crc32
        {
            return Err(StorageError::Corrupt(format!(
                "the state of the snapshot at index {} fails its size or checksum; remove the node's storage and re-join it",
                self.reference.index
            )));
        }
        Ok(data)
    }

    /// A reader of all the bytes, once they are checked against the
    /// reference's size and CRC (a first pass over them, in chunks).
    pub fn verified_reader(&self) -> Result<Box<dyn std::io::Read + Send>, StorageError> {
        let mut reader = self.reader_at(0)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| {
                StorageError::Corrupt(format!(
                    "cannot read the state of the snapshot at index {}: {e}",
                    self.reference.index
                ))
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        if len != self.reference.size || hasher.finalize() != self.reference.crc32 {
            return Err(StorageError::Corrupt(format!(
                "the state of the snapshot at index {} fails its size or checksum; remove the node's storage and re-join it",
                self.reference.index
            )));
        }
        self.reader_at(0)
    }

    /// A reader of the bytes from `offset` on.
    pub fn reader_at(&self, offset: u64) -> Result<Box<dyn std::io::Read + Send>, StorageError> {
        match &self.blob {
            SnapshotBlob::Memory(bytes) => {
                let start = (offset as usize).min(bytes.len());
                Ok(Box::new(std::io::Cursor::new(bytes.slice(start..))))
            }
            SnapshotBlob::File(path) => {
                let mut file =
                    fs::File::open(path).map_err(|e| StorageError::io("open", path, e))?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| StorageError::io("seek in", path, e))?;
                Ok(Box::new(std::io::BufReader::with_capacity(
                    256 * 1024,
                    file,
                )))
            }
        }
    }
}

impl SnapshotState {
    /// The bytes held open for a transfer: a file stays readable through
    /// its open handle after a compaction removed its name, so a transfer
    /// that resumes (a reset stream) never finds its snapshot gone.
    pub fn open(&self) -> Result<OpenSnapshot, StorageError> {
        Ok(match &self.blob {
            SnapshotBlob::Memory(bytes) => OpenSnapshot::Memory(bytes.clone()),
            SnapshotBlob::File(path) => OpenSnapshot::File(std::sync::Arc::new(
                fs::File::open(path).map_err(|e| StorageError::io("open", path, e))?,
            )),
        })
    }
}

/// A snapshot's state held open (see [`SnapshotState::open`]). Clones
/// share the handle; readers read at their own positions.
#[derive(Debug, Clone)]
pub enum OpenSnapshot {
    /// An open file.
    File(std::sync::Arc<fs::File>),
    /// In memory.
    Memory(Bytes),
}

impl OpenSnapshot {
    /// A reader of the bytes from `offset` on. Positional reads: two
    /// readers of one handle (a stream's and its retry's) never move each
    /// other's position.
    pub fn reader_at(&self, offset: u64) -> Box<dyn std::io::Read + Send> {
        match self {
            OpenSnapshot::Memory(bytes) => {
                let start = (offset as usize).min(bytes.len());
                Box::new(std::io::Cursor::new(bytes.slice(start..)))
            }
            OpenSnapshot::File(file) => Box::new(std::io::BufReader::with_capacity(
                256 * 1024,
                PositionalReader {
                    file: file.clone(),
                    at: offset,
                },
            )),
        }
    }
}

/// Reads a shared file handle from its own position.
struct PositionalReader {
    file: std::sync::Arc<fs::File>,
    at: u64,
}

impl std::io::Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.at)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&*self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The file name of the state taken (or installed) at (index, term).
pub fn state_file(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(SNAPSHOT_DIR).join(format!("{index}-{term}.state"))
}

/// Bytes a state file is written in before they are made durable.
const SYNC_EVERY: usize = 4 * 1024 * 1024;

/// A file that makes every [`SYNC_EVERY`] bytes durable as they are
/// written, so a state file of any size never piles up dirty pages: on ext4
/// (data=ordered) the log's next `fdatasync`, which every step waits for,
/// would wait for all of them (RocksDB's `bytes_per_sync`, for the same
/// reason).
struct PacedFile {
    file: fs::File,
    unsynced: usize,
}

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Counts bytes and their CRC on their way to a writer.
pub struct HashingWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// The writer, the number of bytes written and their CRC.
    pub fn finish(self) -> (W, u64, u32) {
        (self.inner, self.len, self.hasher.finalize())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the state that `encode` produces for (index, term): into
/// `dir/snapshots/<index>-<term>.state` (temp file, fsync, rename, fsync of
/// the directory) when there is a directory, in memory otherwise. Runs off
/// the Raft loop: encoding a large state takes a while.
pub fn write_state(
    dir: Option<&Path>,
    index: u64,
    term: u64,
    encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<SnapshotState, StorageError> {
    let Some(dir) = dir else {
        let mut out = HashingWriter::new(Vec::new());
        encode(&mut out).map_err(|e| StorageError::Encode(e.to_string()))?;
        let (data, size, crc32) = out.finish();
        return Ok(SnapshotState {
            reference: SnapshotRef {
                index,
                term,
                size,
                crc32,
            },
            blob: SnapshotBlob::Memory(data.into()),
        });
    };
    let snapshots = dir.join(SNAPSHOT_DIR);
    fs::create_dir_all(&snapshots)
        .map_err(|e| StorageError::io("create the snapshot directory", &snapshots, e))?;
    let path = state_file(dir, index, term);
    let tmp = path.with_extension("tmp");
    let file = fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    let paced = PacedFile { file, unsynced: 0 };
    let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, paced));
    encode(&mut out).map_err(|e| StorageError::io("write", &tmp, e))?;
    let (buffered, size, crc32) = out.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| StorageError::io("write", &tmp, e.into_error()))?
        .file;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    pause_point("state encoded, not in place");
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename into place", &path, e))?;
    wal::sync_dir(&snapshots)?;
    Ok(SnapshotState {
        reference: SnapshotRef {
            index,
            term,
            size,
            crc32,
        },
        blob: SnapshotBlob::File(path),
    })
}

/// Which temp files (states being encoded) [`remove_older`] may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temps {
    /// Those older than the index: the caller is the flush thread, which
    /// runs the encodes in order, so an older one is a crash's leftover.
    Older,
    /// None: the caller is the Raft loop (installing a snapshot), and the
    /// flush thread may be encoding a state at any index meanwhile.
    Keep,
}

/// Removes state files older than `index`, snapshots received or being
/// received (`incoming-<index>-...`) older than it, and (per `temps`)
/// leftovers of interrupted encodes. Files at `index` or later may be a
/// snapshot on its way in and stay.
pub fn remove_older(dir: &Path, index: u64, temps: Temps) {
    let snapshots = dir.join(SNAPSHOT_DIR);
    let Ok(entries) = fs::read_dir(&snapshots) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // A `.tmp` is a state being encoded on the flush thread: it has
        // one owner, its writer. Only that thread removes one, when it is
        // older than `index` (left over from a crash).
        let temp = name.strip_suffix(".tmp").filter(|_| temps == Temps::Older);
        let stale = if let Some(stem) = name
            .strip_suffix(".state")
            .or(temp)
            .or_else(|| name.strip_suffix(".ready"))
            .or_else(|| name.strip_suffix(".part"))
        {
            let stem = stem.strip_prefix("incoming-").unwrap_or(stem);
            stem.split('-')
                .next()
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i < index)
        } else {
            false
        };
        if stale && let Err(e) = fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an old snapshot file");
        }
    }
}
