//! The write-ahead log: Raft entries, hard states and conf states appended to
//! segment files, one fsync per Ready (group commit).
//!
//! Record layout: `[len: u32 LE][crc32: u32 LE][kind: u8][payload]`, where
//! `len` counts kind + payload and the CRC covers them. A torn or corrupt
//! record at the tail of the last segment (a crash mid-write) is cut off at
//! open: everything before it was fsynced and is kept. Corruption anywhere
//! else is an error, never silently skipped.
//!
//! Segments are preallocated to their full size when created (as etcd does
//! with its WAL): an append then writes inside the file instead of growing it,
//! so its fdatasync does not also commit a file-size change to the
//! filesystem journal. On ext4 here that takes an fsync from ~140 µs to
//! ~95 µs, and every step of a workflow waits for one. The unused end of a
//! segment reads as zeros, which is where reading stops.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};

use super::StorageError;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const HEADER: usize = 9;
/// Largest record accepted when reading; anything above is corruption.
const MAX_RECORD: usize = 512 * 1024 * 1024;

/// One record read back from the log.
pub(crate) enum Record {
    Entry(Entry),
    HardState(HardState),
    ConfState(ConfState),
}

struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written to this segment (0 when none).
    max_index: u64,
}

/// Appends records to the newest segment; older segments are deleted once a
/// snapshot covers every entry in them.
pub(crate) struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    writer: BufWriter<File>,
    written: u64,
    segment_bytes: u64,
    dirty: bool,
    /// fdatasync calls on records so far (the cost that group commit shares).
    fsyncs: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and returns every valid record in
    /// write order.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<Record>), StorageError> {
        fs::create_dir_all(dir)
            .map_err(|e| StorageError::io("create the log directory", dir, e))?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| StorageError::io("list the log directory", dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let mut records = Vec::new();
        let mut segments = Vec::new();
        let mut active_len = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, *seq);
            let last = i + 1 == seqs.len();
            let (mut recs, valid_len, tail) = read_segment(&path)?;
            if tail == Tail::Garbage {
                if !last {
                    return Err(StorageError::Corrupt(format!(
                        "{} is damaged at byte {valid_len} but is not the last segment; restore the node from a snapshot or remove its storage and re-join it",
                        path.display()
                    )));
                }
                tracing::warn!(path = %path.display(), kept = valid_len, "torn write at the log tail cut off; recovering to the last fsynced record");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| StorageError::io("open the log segment", &path, e))?;
                // Cut, then preallocate again: the freed end reads as zeros.
                f.set_len(valid_len)
                    .and_then(|_| preallocate(&f, segment_bytes))
                    .and_then(|_| f.sync_all())
                    .map_err(|e| StorageError::io("truncate the torn log tail", &path, e))?;
            }
            if last {
                active_len = valid_len;
            }
            let max_index = recs
                .iter()
                .filter_map(|r| match r {
                    Record::Entry(e) => Some(e.index),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            records.append(&mut recs);
            segments.push(Segment {
                seq: *seq,
                path,
                max_index,
            });
        }
        if segments.is_empty() {
            let path = segment_path(dir, 1);
            segments.push(Segment {
                seq: 1,
                path,
                max_index: 0,
            });
        }
        let active = segments.last().expect("one segment");
        let file = open_segment(&active.path, active_len, segment_bytes)?;
        sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segments,
                writer: BufWriter::with_capacity(256 * 1024, file),
                written: active_len,
                segment_bytes,
                dirty: false,
                fsyncs: 0,
            },
            records,
        ))
    }

    /// Appends entries (not yet durable: see [`Wal::sync`]).
    pub(crate) fn append_entries(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        for e in entries {
            let bytes = e.write_to_bytes().map_err(StorageError::encode)?;
            self.write_record(KIND_ENTRY, &bytes)?;
            let active = self.segments.last_mut().expect("one segment");
            active.max_index = active.max_index.max(e.index);
        }
        Ok(())
    }

    /// Appends a hard state.
    pub(crate) fn append_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        let bytes = hs.write_to_bytes().map_err(StorageError::encode)?;
        self.write_record(KIND_HARD_STATE, &bytes)
    }

    /// Appends a conf state.
    pub(crate) fn append_conf_state(&mut self, cs: &ConfState) -> Result<(), StorageError> {
        let bytes = cs.write_to_bytes().map_err(StorageError::encode)?;
        self.write_record(KIND_CONF_STATE, &bytes)
    }

    fn write_record(&mut self, kind: u8, payload: &[u8]) -> Result<(), StorageError> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(payload);
        let len = (payload.len() + 1) as u32;
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        header[8] = kind;
        let path = &self.segments.last().expect("one segment").path;
        self.writer
            .write_all(&header)
            .and_then(|_| self.writer.write_all(payload))
            .map_err(|e| StorageError::io("append to the log", path, e))?;
        self.written += (HEADER + payload.len()) as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync). One call per
    /// Ready: this is the group commit.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.segments.last().expect("one segment").path.clone();
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_data())
            .map_err(|e| StorageError::io("fsync the log", &path, e))?;
        self.dirty = false;
        self.fsyncs += 1;
        Ok(())
    }

    /// fdatasync calls on records since the log was opened.
    pub(crate) fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// True when the active segment is over its size budget.
    pub(crate) fn wants_rotation(&self) -> bool {
        self.written >= self.segment_bytes
    }

    /// Starts a new segment beginning with the current hard and conf state,
    /// so older segments hold nothing that is needed once a snapshot covers
    /// their entries.
    pub(crate) fn rotate(&mut self, hs: &HardState, cs: &ConfState) -> Result<(), StorageError> {
        self.sync()?;
        let seq = self.segments.last().expect("one segment").seq + 1;
        let path = segment_path(&self.dir, seq);
        let file = open_segment(&path, 0, self.segment_bytes)?;
        self.writer = BufWriter::with_capacity(256 * 1024, file);
        self.written = 0;
        self.segments.push(Segment {
            seq,
            path,
            max_index: 0,
        });
        self.append_hard_state(hs)?;
        self.append_conf_state(cs)?;
        self.sync()?;
        sync_dir(&self.dir)
    }

    /// Deletes segments (never the active one) whose entries are all at or
    /// below `index`, which a durable snapshot covers.
    pub(crate) fn purge_to(&mut self, index: u64) -> Result<usize, StorageError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_index <= index {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path).map_err(|e| {
                StorageError::io("delete a compacted log segment", &segment.path, e)
            })?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Total bytes of the segment files (preallocated space included).
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|s| fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Opens a segment for appending at `len` (creating it if needed) and
/// preallocates it to `segment_bytes`.
fn open_segment(path: &Path, len: u64, segment_bytes: u64) -> Result<File, StorageError> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io("open a log segment", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io("read the size of a log segment", path, e))?
        .len();
    if size < segment_bytes {
        // The new size must be durable before records rely on it; this runs
        // once per segment, not per append.
        preallocate(&file, segment_bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| StorageError::io("preallocate a log segment", path, e))?;
    }
    file.seek(SeekFrom::Start(len))
        .map_err(|e| StorageError::io("seek in a log segment", path, e))?;
    Ok(file)
}

/// Reserves `len` bytes for the file (its size becomes at least `len`, the
/// new part reads as zeros). Where the filesystem cannot, the log still
/// works, only with slower fsyncs: appends then grow the file.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(file, FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = (file, len);
    tracing::debug!("the filesystem cannot preallocate; log segments grow as they are written");
    Ok(())
}

/// What follows the last valid record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing, or zeros: the end of the data (a preallocated segment).
    Clean,
    /// Bytes that are no valid record: a torn write, or corruption.
    Garbage,
}

/// Reads the valid records of a segment: (records, valid length, tail).
fn read_segment(path: &Path) -> Result<(Vec<Record>, u64, Tail), StorageError> {
    let mut file = File::open(path).map_err(|e| StorageError::io("open a log segment", path, e))?;
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut data))
        .map_err(|e| StorageError::io("read a log segment", path, e))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD || pos + 8 + len > data.len() {
            break;
        }
        let body = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let (kind, payload) = (body[0], &body[1..]);
        let record = match kind {
            KIND_ENTRY => Entry::parse_from_bytes(payload).map(Record::Entry),
            KIND_HARD_STATE => HardState::parse_from_bytes(payload).map(Record::HardState),
            KIND_CONF_STATE => ConfState::parse_from_bytes(payload).map(Record::ConfState),
            _ => break,
        };
        match record {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    let tail = if data[pos..].iter().all(|b| *b == 0) {
        Tail::Clean
    } else {
        Tail::Garbage
    };
    Ok((records, pos as u64, tail))
}

/// fsync of a directory: makes file creations, renames and deletions in it
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync the directory", dir, e))
}
