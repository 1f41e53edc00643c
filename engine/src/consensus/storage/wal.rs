//! The write-ahead log: Raft entries, hard states and conf states appended to
//! segment files, one fsync per Ready (group commit).
//!
//! Record layout: `[len: u32 LE][crc32: u32 LE][kind: u8][payload]`, where
//! `len` counts kind + payload and the CRC covers them.
//!
//! Every batch of records written between two fsyncs starts with a batch
//! mark carrying a sequence number that grows across segments. That is what
//! tells a torn write from corruption at open: damage that no later batch
//! follows lies in the last, unsynced batch (a crash mid-write; the batch was
//! never acknowledged) and is cut off. Damage followed by a later batch was
//! fsynced before that batch was written, so acknowledged data is at stake:
//! the log refuses to open. A record whose checksum holds but whose kind or
//! content cannot be read is never a torn write either (a newer version's
//! format, or a bug) and also stops the open.
//!
//! fsync failures ("fsyncgate"): after a failed write or fsync the log takes
//! no more writes, and the node stops. On Linux the pages whose write-back
//! failed are then marked clean, so a later read through the page cache
//! could show records that never reached the disk. Opening the log therefore
//! fsyncs each segment (data a crashed process left dirty becomes durable, or
//! the open fails) and drops its cached pages before reading it, so recovery
//! sees what is on the disk and verifies every checksum there.
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
use raft::prelude::{ConfState, Entry, HardState, SnapshotMetadata};

use super::StorageError;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_BATCH: u8 = 5;
const HEADER: usize = 9;
/// A batch mark is a full record: header, then its u64 sequence number.
const BATCH_RECORD: usize = HEADER + 8;
/// Largest record accepted when reading; anything above is corruption.
const MAX_RECORD: usize = 512 * 1024 * 1024;

/// One record read back from the log.
pub(crate) enum Record {
    Entry(Entry),
    HardState(HardState),
    ConfState(ConfState),
    /// A snapshot from the leader was installed here: every entry before this
    /// record is gone, and the log goes on after the snapshot's index.
    Snapshot(SnapshotMetadata),
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
    /// Where the active segment's data known to be durable ends (the
    /// simulation's power loss keeps no more than this for sure).
    synced: u64,
    segment_bytes: u64,
    dirty: bool,
    /// Sequence number of the latest batch mark written or read.
    batch: u64,
    /// True after an fsync: the next record opens a new batch.
    batch_due: bool,
    /// Set by a failed write or fsync: nothing written afterwards could be
    /// trusted to be durable, so the log refuses every later write.
    failed: Option<String>,
    /// fdatasync calls on records so far (the cost that group commit shares).
    fsyncs: u64,
    /// Test hook: the next fsync fails as a disk error would.
    fail_next_sync: bool,
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
        let mut batch = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, *seq);
            let last = i + 1 == seqs.len();
            let mut scan = read_segment(&path, batch)?;
            batch = scan.batch;
            if let Some(offset) = scan.damage {
                if !last {
                    return Err(StorageError::Corrupt(format!(
                        "{} is damaged at byte {offset} but is not the last segment, so the damage is not a torn write; restore the node: remove its storage directory and join it again under a new id",
                        path.display()
                    )));
                }
                tracing::warn!(path = %path.display(), offset, "torn write at the log tail cut off: it lies in the last batch, which no fsync acknowledged");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| StorageError::io("open the log segment", &path, e))?;
                // Cut, then preallocate again: the freed end reads as zeros.
                f.set_len(offset)
                    .and_then(|_| preallocate(&f, segment_bytes))
                    .and_then(|_| f.sync_all())
                    .map_err(|e| StorageError::io("truncate the torn log tail", &path, e))?;
            }
            if last {
                active_len = scan.valid_len;
            }
            let max_index = scan
                .records
                .iter()
                .filter_map(|r| match r {
                    Record::Entry(e) => Some(e.index),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            records.append(&mut scan.records);
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
                synced: active_len,
                segment_bytes,
                dirty: false,
                batch,
                batch_due: true,
                failed: None,
                fsyncs: 0,
                fail_next_sync: false,
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

    /// Records that a snapshot was installed: replay drops every entry
    /// before this record.
    pub(crate) fn append_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<(), StorageError> {
        let bytes = meta.write_to_bytes().map_err(StorageError::encode)?;
        self.write_record(KIND_SNAPSHOT, &bytes)
    }

    fn write_record(&mut self, kind: u8, payload: &[u8]) -> Result<(), StorageError> {
        self.check_usable()?;
        if self.batch_due {
            self.batch_due = false;
            self.batch += 1;
            let seq = self.batch.to_le_bytes();
            self.write_raw(KIND_BATCH, &seq)?;
        }
        self.write_raw(kind, payload)
    }

    fn write_raw(&mut self, kind: u8, payload: &[u8]) -> Result<(), StorageError> {
        let header = record_header(kind, payload);
        let path = &self.segments.last().expect("one segment").path;
        let written = self
            .writer
            .write_all(&header)
            .and_then(|_| self.writer.write_all(payload));
        if let Err(e) = written {
            // Part of the record may be in the buffer or the file: anything
            // appended after it would follow a hole.
            let e = StorageError::io("append to the log", path, e);
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.written += (HEADER + payload.len()) as u64;
        self.dirty = true;
        Ok(())
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(reason) => Err(StorageError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Makes everything appended so far durable (fdatasync). One call per
    /// Ready: this is the group commit. A failure is final: it is never
    /// retried (a retry could succeed without the lost pages, see the module
    /// docs), and every later call fails too.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        if !self.dirty {
            return Ok(());
        }
        let path = self.segments.last().expect("one segment").path.clone();
        let injected = std::mem::take(&mut self.fail_next_sync);
        let synced = self.writer.flush().and_then(|_| {
            if injected {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            self.writer.get_ref().sync_data()
        });
        if let Err(e) = synced {
            let e = StorageError::io("fsync the log", &path, e);
            tracing::error!(error = %e, "fsync failed; the log takes no more writes");
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.dirty = false;
        self.synced = self.written;
        self.batch_due = true;
        self.fsyncs += 1;
        Ok(())
    }

    /// Test hook: makes the next fsync fail.
    pub(crate) fn fail_next_sync(&mut self) {
        self.fail_next_sync = true;
    }

    /// Test hook: writes buffered records to the file without an fsync, and
    /// says where the written data of the active segment ends.
    #[cfg(test)]
    pub(crate) fn flush_unsynced(&mut self) -> (PathBuf, u64) {
        self.writer.flush().expect("flush the log buffer");
        let path = self.segments.last().expect("one segment").path.clone();
        (path, self.written)
    }

    /// Test hook: a crash. Buffered records that no flush or fsync wrote are
    /// lost, as the memory of a killed process is.
    #[cfg(test)]
    pub(crate) fn crash(self) {
        let (_file, _lost) = self.writer.into_parts();
    }

    /// Test hook: a power loss. Of the bytes appended since the last fsync,
    /// only the first `keep(unsynced)` reach the disk (0: all lost; a cut
    /// inside a record: a torn write); the rest of the active segment reads
    /// as the zeros it was preallocated with.
    #[cfg(test)]
    pub(crate) fn power_loss(mut self, keep: impl FnOnce(u64) -> u64) {
        let unsynced = self.written - self.synced;
        let from = self.synced + keep(unsynced).min(unsynced);
        let path = self.segments.last().expect("one segment").path.clone();
        self.writer.flush().expect("flush the log buffer");
        let file = self.writer.get_mut();
        file.seek(SeekFrom::Start(from)).expect("seek the log");
        let zeros = vec![0u8; (self.written - from) as usize];
        file.write_all(&zeros).expect("zero the lost bytes");
        file.sync_data()
            .unwrap_or_else(|e| panic!("sync {}: {e}", path.display()));
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
        self.check_usable()?;
        let seq = self.segments.last().expect("one segment").seq + 1;
        let path = segment_path(&self.dir, seq);
        let file = open_segment(&path, 0, self.segment_bytes)?;
        self.writer = BufWriter::with_capacity(256 * 1024, file);
        self.written = 0;
        self.synced = 0;
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

    /// Takes out of the log the segments (never the active one) whose
    /// entries are all at or below `index` and returns their paths: they
    /// are deleted once a snapshot point at `index` is durable
    /// ([`delete_segments`]), off the Raft loop.
    pub(crate) fn detach_to(&mut self, index: u64) -> Vec<PathBuf> {
        let mut detached = Vec::new();
        while self.segments.len() > 1 && self.segments[0].max_index <= index {
            detached.push(self.segments.remove(0).path);
        }
        detached
    }

    /// Deletes every segment but the active one: after a snapshot install
    /// (recorded in the active segment) nothing in them is needed.
    pub(crate) fn purge_inactive(&mut self) -> Result<usize, StorageError> {
        self.purge_while(|_| true)
    }

    fn purge_while(&mut self, purge: impl Fn(&Segment) -> bool) -> Result<usize, StorageError> {
        let mut removed = 0;
        while self.segments.len() > 1 && purge(&self.segments[0]) {
            let segment = self.segments.remove(0);
            delete_segment(&segment.path)?;
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

/// Deletes segments taken out of the log by [`Wal::detach_to`]. Without
/// an fsync of the directory: a deletion lost in a crash leaves a segment
/// whose entries are all behind the durable snapshot point, skipped when
/// the log is read again and deleted at the next compaction.
pub(crate) fn delete_segments(paths: &[PathBuf]) -> Result<(), StorageError> {
    paths.iter().try_for_each(|path| delete_segment(path))
}

fn delete_segment(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::io("delete a compacted log segment", path, e))
        }
        _ => Ok(()),
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

pub(super) fn record_header(kind: u8, payload: &[u8]) -> [u8; HEADER] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(payload);
    let len = (payload.len() + 1) as u32;
    let mut header = [0u8; HEADER];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    header[8] = kind;
    header
}

/// What a segment holds.
struct Scan {
    /// The valid records, in order.
    records: Vec<Record>,
    /// End of the last valid record.
    valid_len: u64,
    /// Highest batch mark read so far (this segment and earlier ones).
    batch: u64,
    /// Where damage that no later batch follows begins (a torn write, if
    /// this is the last segment).
    damage: Option<u64>,
}

/// Reads a segment from the disk. `batch` is the highest batch mark of the
/// earlier segments.
fn read_segment(path: &Path, mut batch: u64) -> Result<Scan, StorageError> {
    let data = read_from_disk(path)?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    let damaged = loop {
        let Some(header) = data.get(pos..pos + HEADER) else {
            break data[pos..].iter().any(|b| *b != 0);
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len == 0 {
            // The end of the data, unless written bytes follow: then the
            // start of a batch is missing (pages written out of order).
            break data[pos..].iter().any(|b| *b != 0);
        }
        if len > MAX_RECORD || pos + 8 + len > data.len() {
            break true;
        }
        let body = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != crc {
            break true;
        }
        let (kind, payload) = (body[0], &body[1..]);
        let unreadable = |what: &str| {
            StorageError::Corrupt(format!(
                "{} holds a record at byte {pos} whose checksum is right but {what}: it was written by another version of Raftoral, or the disk returned other data; run the version that wrote the log, or remove the node's storage and join it again under a new id",
                path.display()
            ))
        };
        let record = match kind {
            KIND_ENTRY => Entry::parse_from_bytes(payload).map(Record::Entry),
            KIND_HARD_STATE => HardState::parse_from_bytes(payload).map(Record::HardState),
            KIND_CONF_STATE => ConfState::parse_from_bytes(payload).map(Record::ConfState),
            KIND_SNAPSHOT => SnapshotMetadata::parse_from_bytes(payload).map(Record::Snapshot),
            KIND_BATCH => {
                let seq: [u8; 8] = payload
                    .try_into()
                    .map_err(|_| unreadable("its batch mark is malformed"))?;
                batch = batch.max(u64::from_le_bytes(seq));
                pos += 8 + len;
                continue;
            }
            other => return Err(unreadable(&format!("its kind {other} is unknown"))),
        };
        records.push(record.map_err(|e| unreadable(&format!("it cannot be decoded ({e})")))?);
        pos += 8 + len;
    };
    if damaged && let Some(later) = later_batch(&data[pos + 1..], batch) {
        return Err(StorageError::Corrupt(format!(
            "{} is damaged at byte {pos}, and a batch written after an fsync follows at byte {}: acknowledged records are lost, this is no torn write; remove the node's storage and join it again under a new id (the other members hold the data)",
            path.display(),
            pos + 1 + later
        )));
    }
    Ok(Scan {
        records,
        valid_len: pos as u64,
        batch,
        damage: damaged.then_some(pos as u64),
    })
}

/// Offset in `data` of a valid batch mark numbered above `batch`, if any:
/// proof that the data before it was fsynced (a batch starts only after the
/// previous one's fsync returned).
fn later_batch(data: &[u8], batch: u64) -> Option<usize> {
    let len = 9u32.to_le_bytes();
    (0..data.len().saturating_sub(BATCH_RECORD - 1)).find(|&q| {
        let record = &data[q..q + BATCH_RECORD];
        record[0..4] == len
            && record[8] == KIND_BATCH
            && crc32fast::hash(&record[8..]).to_le_bytes() == record[4..8]
            && u64::from_le_bytes(record[9..].try_into().expect("8 bytes")) > batch
    })
}

/// Reads a whole segment as the disk holds it. The fsync makes durable what
/// a crashed process left in the page cache (or fails the open); dropping
/// the cached pages then makes the read come from the disk, so pages whose
/// write-back failed before (the kernel marks them clean) are not believed.
fn read_from_disk(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut file = File::open(path).map_err(|e| StorageError::io("open a log segment", path, e))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync a log segment before reading it", path, e))?;
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{Advice, fadvise};
        // Advisory: a filesystem without it still has its checksums checked.
        if let Err(e) = fadvise(&file, 0, None, Advice::DontNeed) {
            tracing::debug!(path = %path.display(), error = %e, "cannot drop the cached pages of a log segment");
        }
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| StorageError::io("read a log segment", path, e))?;
    Ok(data)
}

/// fsync of a directory: makes file creations, renames and deletions in it
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync the directory", dir, e))
}
