//! The archive: the state machine as of its last flush, in an embedded
//! transactional store (redb), and where finished workflows live once
//! flushed. Memory keeps only what running work needs (pending and running
//! workflows, the registry, the members) and the workflows finished since
//! the last flush.
//!
//! A flush writes, in one transaction, the workflows finished since the
//! previous one, every active workflow, the small rest of the state and the
//! index it was all applied to; the Raft log is compacted behind that
//! index only once the transaction is durable. A restart reads the active
//! workflows and the rest back (nothing proportional to finished work), and
//! the log replays from the stored index. A snapshot for a follower is
//! encoded from a read transaction (a point-in-time view) of the store.
//!
//! Files: `<storage>/state/<index>.redb`, where `<index>` is where the file
//! started (0 for a node's own, a snapshot's index for one rebuilt from a
//! snapshot). One built from a snapshot is `<index>.redb.tmp` until the
//! snapshot is installed, so a crash before the install leaves the old one
//! in charge.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prost::Message as _;
use raftoral_proto::cluster::v1::{StateSnapshot, WorkflowRecord};
use redb::backends::InMemoryBackend;
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase as _, ReadableTable as _, TableDefinition,
};

use super::record::{record, workflow};
use super::workflow::Workflow;

/// Finished workflows: id → `WorkflowRecord`.
const FINISHED: TableDefinition<&str, &[u8]> = TableDefinition::new("finished");
/// Pending and running workflows at the flush: id → `WorkflowRecord`.
const ACTIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("active");
/// (last change ms, id) → status byte then name, for retention.
const BY_TIME: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("finished_by_time");
/// (name, id) → status, for lists filtered by name.
const BY_NAME: TableDefinition<(&str, &str), u8> = TableDefinition::new("finished_by_name");
/// (status, id), for lists filtered by status.
const BY_STATUS: TableDefinition<(u8, &str), ()> = TableDefinition::new("finished_by_status");
/// `applied` (u64 LE), `rest` (a `StateSnapshot` without workflows),
/// `counts` (finished workflows by status: u32 status, u64 count, LE).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Memory redb may use for its page cache. The pages flushes write (the
/// ends of the indexes, with time-ordered ids) and the inner pages of every
/// table stay cached: the growth bench held its throughput to 1 M finished
/// workflows at 93 MiB of RSS with 64 MiB, lost a quarter of it with 16 MiB,
/// and used 293 MiB with 256 MiB for no gain (docs/PERFORMANCE.md).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Records per transaction while a snapshot is loaded into a new store
/// (bounds the dirty pages held in memory).
const RESTORE_BATCH: usize = 50_000;

/// Finished workflows by status number.
pub(super) type Counts = std::collections::BTreeMap<i32, u64>;

/// A failure of the archive's store. The node stops, as for any storage
/// failure: the state on disk is what the log was applied to.
#[derive(Debug, thiserror::Error)]
#[error(
    "the workflow store {place}: cannot {what}: {source}; check the storage path's free space and permissions, or remove the node's storage and re-join it"
)]
pub struct ArchiveError {
    place: String,
    what: &'static str,
    #[source]
    source: Box<redb::Error>,
}

/// What a flush writes: the state at `index`, less the finished workflows
/// already flushed (taken on the Raft loop in O(1) for the workflow table).
pub struct Flush {
    /// The applied index the batch is the state of.
    pub index: u64,
    pub(super) workflows: imbl::OrdMap<String, Arc<Workflow>>,
    pub(super) rest: StateSnapshot,
    pub(super) counts: Counts,
}

/// A finished workflow a flush wrote: which record, so memory drops that
/// one and not a newer record under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The workflow's id.
    pub id: String,
    /// When the written record was created.
    pub created_at_ms: u64,
    /// When the written record last changed.
    pub updated_at_ms: u64,
}

/// What a restart reads back from the store.
pub(super) struct Loaded {
    pub applied: u64,
    pub rest: StateSnapshot,
    pub counts: Counts,
    pub active: Vec<Workflow>,
}

/// The store, and the tables as of its last commit for reads.
pub struct Archive {
    db: Arc<Database>,
    place: Arc<str>,
    faults: Arc<Faults>,
    /// `Some(path)` for a file; a `.tmp` path until promoted.
    path: Option<PathBuf>,
    view: Option<View>,
}

struct View {
    finished: ReadOnlyTable<&'static str, &'static [u8]>,
    by_time: ReadOnlyTable<(u64, &'static str), &'static [u8]>,
    by_name: ReadOnlyTable<(&'static str, &'static str), u8>,
    by_status: ReadOnlyTable<(u8, &'static str), ()>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("place", &self.place)
            .finish()
    }
}

impl Default for Archive {
    fn default() -> Self {
        Archive::in_memory()
    }
}

/// The subdirectory of the storage directory that holds the store.
pub const STATE_DIR: &str = "state";

impl Archive {
    /// A store in memory (a node without a storage directory, tests).
    pub fn in_memory() -> Archive {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("an in-memory store opens");
        let mut archive = Archive {
            db: Arc::new(db),
            place: "in memory".into(),
            faults: Arc::default(),
            path: None,
            view: None,
        };
        archive.init().expect("an in-memory store takes writes");
        archive
    }

    /// The node's store in `dir` (the storage directory): the newest file
    /// there, or a new one. Files of a snapshot never installed go.
    pub fn open_dir(dir: &Path) -> Result<Archive, ArchiveError> {
        let state = dir.join(STATE_DIR);
        let fail = |what, e: std::io::Error| ArchiveError {
            place: state.display().to_string(),
            what,
            source: Box::new(redb::Error::Io(e)),
        };
        fs::create_dir_all(&state).map_err(|e| fail("create the directory", e))?;
        let mut newest: Option<(u64, PathBuf)> = None;
        for entry in fs::read_dir(&state).map_err(|e| fail("list the directory", e))? {
            let path = entry.map_err(|e| fail("list the directory", e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else if let Some(index) = name
                .strip_suffix(".redb")
                .and_then(|i| i.parse::<u64>().ok())
                && newest.as_ref().is_none_or(|(n, _)| index > *n)
            {
                newest = Some((index, path));
            }
        }
        let path = newest.map_or_else(|| state.join("0.redb"), |(_, p)| p);
        Archive::open_file(path)
    }

    /// A new, empty store for the state of a snapshot at `index`, to be
    /// [promoted](Self::promote) when the snapshot is installed; in memory
    /// without a directory.
    pub fn create_for_snapshot(dir: Option<&Path>, index: u64) -> Result<Archive, ArchiveError> {
        let Some(dir) = dir else {
            return Ok(Archive::in_memory());
        };
        let path = dir.join(STATE_DIR).join(format!("{index}.redb.tmp"));
        let _ = fs::create_dir_all(dir.join(STATE_DIR));
        let _ = fs::remove_file(&path);
        Archive::open_file(path)
    }

    fn open_file(path: PathBuf) -> Result<Archive, ArchiveError> {
        let place: Arc<str> = path.display().to_string().into();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| ArchiveError {
                place: place.to_string(),
                what: "open",
                source: Box::new(e.into()),
            })?;
        let mut archive = Archive {
            db: Arc::new(db),
            place,
            faults: Arc::default(),
            path: Some(path),
            view: None,
        };
        archive.init()?;
        Ok(archive)
    }

    fn err(&self, what: &'static str) -> impl Fn(redb::Error) -> ArchiveError + '_ {
        failure(&self.place, what)
    }

    /// Creates the tables (a no-op when they exist) and reads them.
    fn init(&mut self) -> Result<(), ArchiveError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| self.err("write")(e.into()))?;
        {
            let e = self.err("create its tables");
            tx.open_table(FINISHED).map_err(|x| e(x.into()))?;
            tx.open_table(ACTIVE).map_err(|x| e(x.into()))?;
            tx.open_table(BY_TIME).map_err(|x| e(x.into()))?;
            tx.open_table(BY_NAME).map_err(|x| e(x.into()))?;
            tx.open_table(BY_STATUS).map_err(|x| e(x.into()))?;
            tx.open_table(META).map_err(|x| e(x.into()))?;
        }
        tx.commit().map_err(|e| self.err("commit")(e.into()))?;
        self.refresh()
    }

    /// Reads the tables as of the last commit (after a flush).
    pub fn refresh(&mut self) -> Result<(), ArchiveError> {
        let place = self.place.clone();
        let e = move |source| ArchiveError {
            place: place.to_string(),
            what: "read",
            source: Box::new(source),
        };
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        self.view = Some(View {
            finished: tx.open_table(FINISHED).map_err(|x| e(x.into()))?,
            by_time: tx.open_table(BY_TIME).map_err(|x| e(x.into()))?,
            by_name: tx.open_table(BY_NAME).map_err(|x| e(x.into()))?,
            by_status: tx.open_table(BY_STATUS).map_err(|x| e(x.into()))?,
        });
        Ok(())
    }

    fn view(&self) -> &View {
        self.view.as_ref().expect("the view is read at open")
    }

    /// Test hook: the next flush written fails.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.faults.write.store(true, Ordering::SeqCst);
    }

    /// Test hook: the next read of a workflow fails.
    #[cfg(test)]
    pub(crate) fn fail_next_read(&self) {
        self.faults.read.store(true, Ordering::SeqCst);
    }

    /// A handle for flushing from another thread.
    pub fn writer(&self) -> ArchiveWriter {
        ArchiveWriter {
            db: self.db.clone(),
            place: self.place.clone(),
            faults: self.faults.clone(),
        }
    }

    /// Makes a store built for a snapshot the node's store: renamed to its
    /// final name (durably), older files removed. A no-op in memory.
    pub fn promote(&mut self) -> Result<(), ArchiveError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let Some(final_path) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".tmp"))
            .map(PathBuf::from)
        else {
            return Ok(());
        };
        let fail = |what, e: std::io::Error| ArchiveError {
            place: path.display().to_string(),
            what,
            source: Box::new(redb::Error::Io(e)),
        };
        fs::rename(&path, &final_path).map_err(|e| fail("rename into place", e))?;
        let dir = final_path.parent().expect("a file in the state directory");
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("sync the directory", e))?;
        // Older stores go; a newer one (`<n>.redb.tmp`, a restore of a
        // later snapshot under way) belongs to its restore and stays.
        let index_of = |p: &Path| {
            let name = p.file_name()?.to_str()?;
            let stem = name.strip_suffix(".tmp").unwrap_or(name);
            stem.strip_suffix(".redb")?.parse::<u64>().ok()
        };
        let own = index_of(&final_path);
        for entry in fs::read_dir(dir).map_err(|e| fail("list the directory", e))? {
            let other = entry.map_err(|e| fail("list the directory", e))?.path();
            let older = match (index_of(&other), own) {
                (Some(theirs), Some(own)) => theirs < own,
                _ => true,
            };
            if other != final_path && older {
                let _ = fs::remove_file(other);
            }
        }
        self.place = final_path.display().to_string().into();
        self.path = Some(final_path);
        Ok(())
    }

    /// A finished workflow as of the last flush.
    pub(super) fn get(&self, id: &str) -> Result<Option<Workflow>, ArchiveError> {
        Faults::check(&self.faults.read, &self.place, "read a workflow")?;
        let e = self.err("read a workflow");
        let Some(bytes) = self.view().finished.get(id).map_err(|x| e(x.into()))? else {
            return Ok(None);
        };
        decode(bytes.value()).map(Some).map_err(e)
    }

    /// The last-change time of the oldest finished workflow at or after
    /// `from_ms` (older ones were purged).
    pub(super) fn oldest_from(&self, from_ms: u64) -> Result<Option<u64>, ArchiveError> {
        let e = self.err("read");
        let mut range = self
            .view()
            .by_time
            .range((from_ms, "")..)
            .map_err(|x| e(x.into()))?;
        match range.next() {
            Some(item) => Ok(Some(item.map_err(|x| e(x.into()))?.0.value().0)),
            None => Ok(None),
        }
    }

    /// The last-change times of the `n` oldest finished workflows at or
    /// after `from_ms`, oldest first (a walk of `n` index entries).
    pub(super) fn oldest_times_from(
        &self,
        from_ms: u64,
        n: usize,
    ) -> Result<Vec<u64>, ArchiveError> {
        let e = self.err("read");
        let mut out = Vec::with_capacity(n.min(1024));
        for item in self
            .view()
            .by_time
            .range((from_ms, "")..)
            .map_err(|x| e(x.into()))?
            .take(n)
        {
            out.push(item.map_err(|x| e(x.into()))?.0.value().0);
        }
        Ok(out)
    }

    /// Finished workflows with last change in `[from_ms, before_ms)`: their
    /// ids and statuses (what a retention purge removes).
    pub(super) fn finished_between(
        &self,
        from_ms: u64,
        before_ms: u64,
    ) -> Result<Vec<(String, i32)>, ArchiveError> {
        let e = self.err("read");
        let mut out = Vec::new();
        if before_ms <= from_ms {
            return Ok(out);
        }
        for item in self
            .view()
            .by_time
            .range((from_ms, "")..(before_ms, ""))
            .map_err(|x| e(x.into()))?
        {
            let (key, value) = item.map_err(|x| e(x.into()))?;
            let status = value.value().first().copied().unwrap_or_default();
            out.push((key.value().1.to_owned(), i32::from(status)));
        }
        Ok(out)
    }

    /// Up to `limit` ids of finished workflows after `after`, in id order,
    /// with the given name and status when those are set (an index each).
    pub(super) fn ids_after(
        &self,
        after: &str,
        name: Option<&str>,
        status: Option<i32>,
        limit: usize,
    ) -> Result<Vec<String>, ArchiveError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let e = self.err("list workflows");
        let view = self.view();
        let mut out = Vec::new();
        match (name, status) {
            (Some(name), status) => {
                for item in view
                    .by_name
                    .range::<(&str, &str)>((Excluded((name, after)), Unbounded))
                    .map_err(|x| e(x.into()))?
                {
                    let (key, value) = item.map_err(|x| e(x.into()))?;
                    let (n, id) = key.value();
                    if n != name || out.len() == limit {
                        break;
                    }
                    if status.is_none_or(|s| i32::from(value.value()) == s) {
                        out.push(id.to_owned());
                    }
                }
            }
            (None, Some(status)) => {
                let status = status as u8;
                for item in view
                    .by_status
                    .range::<(u8, &str)>((Excluded((status, after)), Unbounded))
                    .map_err(|x| e(x.into()))?
                {
                    let (key, _) = item.map_err(|x| e(x.into()))?;
                    let (s, id) = key.value();
                    if s != status || out.len() == limit {
                        break;
                    }
                    out.push(id.to_owned());
                }
            }
            (None, None) => {
                for item in view
                    .finished
                    .range::<&str>((Excluded(after), Unbounded))
                    .map_err(|x| e(x.into()))?
                {
                    if out.len() == limit {
                        break;
                    }
                    out.push(item.map_err(|x| e(x.into()))?.0.value().to_owned());
                }
            }
        }
        Ok(out)
    }

    /// What a restart needs, when the store holds a flushed state.
    pub(super) fn load(&self) -> Result<Option<Loaded>, ArchiveError> {
        let e = self.err("read");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = tx.open_table(META).map_err(|x| e(x.into()))?;
        let Some(applied) = meta.get("applied").map_err(|x| e(x.into()))? else {
            return Ok(None);
        };
        let applied = u64_at(applied.value(), 0);
        let rest = match meta.get("rest").map_err(|x| e(x.into()))? {
            Some(bytes) => StateSnapshot::decode(bytes.value()).map_err(|x| e(corrupt(x)))?,
            None => StateSnapshot::default(),
        };
        let mut counts = Counts::new();
        if let Some(bytes) = meta.get("counts").map_err(|x| e(x.into()))? {
            for pair in bytes.value().chunks_exact(12) {
                let status = u32::from_le_bytes(pair[..4].try_into().expect("4 bytes"));
                counts.insert(status as i32, u64_at(pair, 4));
            }
        }
        let mut active = Vec::new();
        for item in tx
            .open_table(ACTIVE)
            .map_err(|x| e(x.into()))?
            .iter()
            .map_err(|x| e(x.into()))?
        {
            let (_, value) = item.map_err(|x| e(x.into()))?;
            active.push(decode(value.value()).map_err(&e)?);
        }
        Ok(Some(Loaded {
            applied,
            rest,
            counts,
            active,
        }))
    }
}

/// Writes flushes and encodes snapshots, off the Raft loop.
#[derive(Clone)]
pub struct ArchiveWriter {
    db: Arc<Database>,
    place: Arc<str>,
    faults: Arc<Faults>,
}

/// Test hooks: the next flush or read of the store fails as a disk error
/// would (the check compiles away outside tests).
#[derive(Default)]
struct Faults {
    write: AtomicBool,
    read: AtomicBool,
}

impl Faults {
    fn check(flag: &AtomicBool, place: &str, what: &'static str) -> Result<(), ArchiveError> {
        if cfg!(test) && flag.swap(false, Ordering::SeqCst) {
            return Err(failure(place, what)(redb::Error::Io(
                std::io::Error::other("injected store failure"),
            )));
        }
        Ok(())
    }
}

impl ArchiveWriter {
    fn err(&self, what: &'static str) -> impl Fn(redb::Error) -> ArchiveError + '_ {
        failure(&self.place, what)
    }

    /// Writes `flush` in one durable transaction: the finished workflows
    /// in it join the archive, the active ones replace the previous
    /// flush's, retention removes what the state says it purged, and the
    /// applied index is recorded. Returns the finished workflows written
    /// (memory may drop them once the view is refreshed).
    pub fn write(&self, flush: &Flush) -> Result<Vec<Archived>, ArchiveError> {
        Faults::check(&self.faults.write, &self.place, "write a flush")?;
        let e = self.err("write a flush");
        let mut tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|x| e(redb::Error::Corrupted(x.to_string())))?;
        let mut finished_ids = Vec::new();
        {
            let mut active = tx.open_table(ACTIVE).map_err(|x| e(x.into()))?;
            active.retain(|_, _| false).map_err(|x| e(x.into()))?;
            let mut tables = Tables::open(&tx).map_err(&e)?;
            // Retention first: a purged id started again and finished since
            // is written after, not removed with the old record.
            tables
                .purge_before(flush.rest.purged_before_ms)
                .map_err(&e)?;
            let mut buf = Vec::with_capacity(1024);
            for w in flush.workflows.values() {
                buf.clear();
                record(w).encode(&mut buf).expect("a Vec grows as needed");
                if w.is_terminal() {
                    tables
                        .insert(&w.id, &w.name, w.status as i32, w.updated_at_ms, &buf)
                        .map_err(&e)?;
                    finished_ids.push(Archived {
                        id: w.id.clone(),
                        created_at_ms: w.created_at_ms,
                        updated_at_ms: w.updated_at_ms,
                    });
                } else {
                    active
                        .insert(w.id.as_str(), buf.as_slice())
                        .map_err(|x| e(x.into()))?;
                }
            }
            let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
            write_meta(&mut meta, flush.index, &flush.rest, &flush.counts).map_err(&e)?;
        }
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(finished_ids)
    }

    /// Writes the store's state as of its last commit as a `StateSnapshot`
    /// encoding, one record at a time (never whole in memory). Returns the
    /// applied index it is the state of.
    pub fn encode_to(&self, out: &mut dyn Write) -> Result<u64, ArchiveError> {
        let e = self.err("read for a snapshot");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = tx.open_table(META).map_err(|x| e(x.into()))?;
        let applied = meta
            .get("applied")
            .map_err(|x| e(x.into()))?
            .map_or(0, |b| u64_at(b.value(), 0));
        let io = |x: std::io::Error| e(redb::Error::Io(x));
        for table in [ACTIVE, FINISHED] {
            for item in tx
                .open_table(table)
                .map_err(|x| e(x.into()))?
                .iter()
                .map_err(|x| e(x.into()))?
            {
                let (_, value) = item.map_err(|x| e(x.into()))?;
                let mut head = Vec::with_capacity(8);
                prost::encoding::encode_key(
                    1,
                    prost::encoding::WireType::LengthDelimited,
                    &mut head,
                );
                prost::encoding::encode_varint(value.value().len() as u64, &mut head);
                out.write_all(&head).map_err(io)?;
                out.write_all(value.value()).map_err(io)?;
            }
        }
        if let Some(rest) = meta.get("rest").map_err(|x| e(x.into()))? {
            out.write_all(rest.value()).map_err(io)?;
        }
        Ok(applied)
    }
}

/// The finished-workflow tables of a write transaction.
struct Tables<'t> {
    finished: redb::Table<'t, &'static str, &'static [u8]>,
    by_time: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    by_name: redb::Table<'t, (&'static str, &'static str), u8>,
    by_status: redb::Table<'t, (u8, &'static str), ()>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Tables<'t>, redb::Error> {
        Ok(Tables {
            finished: tx.open_table(FINISHED)?,
            by_time: tx.open_table(BY_TIME)?,
            by_name: tx.open_table(BY_NAME)?,
            by_status: tx.open_table(BY_STATUS)?,
        })
    }

    fn insert(
        &mut self,
        id: &str,
        name: &str,
        status: i32,
        at_ms: u64,
        record: &[u8],
    ) -> Result<(), redb::Error> {
        let status = status as u8;
        let mut tag = Vec::with_capacity(1 + name.len());
        tag.push(status);
        tag.extend_from_slice(name.as_bytes());
        self.finished.insert(id, record)?;
        self.by_time.insert((at_ms, id), tag.as_slice())?;
        self.by_name.insert((name, id), status)?;
        self.by_status.insert((status, id), ())?;
        Ok(())
    }

    /// Removes the finished workflows last changed before `before_ms`.
    fn purge_before(&mut self, before_ms: u64) -> Result<(), redb::Error> {
        if before_ms == 0 {
            return Ok(());
        }
        let mut gone = Vec::new();
        for item in self.by_time.range((0, "")..(before_ms, ""))? {
            let (key, value) = item?;
            let (at, id) = key.value();
            let tag = value.value();
            let name = String::from_utf8_lossy(tag.get(1..).unwrap_or_default()).into_owned();
            gone.push((
                at,
                id.to_owned(),
                tag.first().copied().unwrap_or_default(),
                name,
            ));
        }
        for (at, id, status, name) in gone {
            self.by_time.remove((at, id.as_str()))?;
            self.finished.remove(id.as_str())?;
            self.by_name.remove((name.as_str(), id.as_str()))?;
            self.by_status.remove((status, id.as_str()))?;
        }
        Ok(())
    }
}

fn write_meta(
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    applied: u64,
    rest: &StateSnapshot,
    counts: &Counts,
) -> Result<(), redb::Error> {
    meta.insert("applied", applied.to_le_bytes().as_slice())?;
    meta.insert("rest", rest.encode_to_vec().as_slice())?;
    let counts: Vec<u8> = counts
        .iter()
        .flat_map(|(status, n)| {
            let mut pair = (*status as u32).to_le_bytes().to_vec();
            pair.extend_from_slice(&n.to_le_bytes());
            pair
        })
        .collect();
    meta.insert("counts", counts.as_slice())?;
    Ok(())
}

/// Loads the state of a snapshot into an empty store, in transactions of
/// [`RESTORE_BATCH`] records; the last one records `applied` and is
/// durable. `active` receives the pending and running workflows.
pub(super) struct Restorer<'a> {
    writer: &'a ArchiveWriter,
    batch: Vec<WorkflowRecord>,
}

impl<'a> Restorer<'a> {
    pub fn new(writer: &'a ArchiveWriter) -> Self {
        Restorer {
            writer,
            batch: Vec::new(),
        }
    }

    /// Adds a finished workflow.
    pub fn push(&mut self, record: WorkflowRecord) -> Result<(), ArchiveError> {
        self.batch.push(record);
        if self.batch.len() >= RESTORE_BATCH {
            self.write(None)?;
        }
        Ok(())
    }

    /// Writes what is left and the rest of the state, durably.
    pub fn finish(
        mut self,
        applied: u64,
        rest: &StateSnapshot,
        counts: &Counts,
        active: &[Workflow],
    ) -> Result<(), ArchiveError> {
        self.write(Some((applied, rest, counts, active)))
    }

    fn write(
        &mut self,
        last: Option<(u64, &StateSnapshot, &Counts, &[Workflow])>,
    ) -> Result<(), ArchiveError> {
        let e = self.writer.err("load a snapshot");
        let mut tx = self.writer.db.begin_write().map_err(|x| e(x.into()))?;
        let durability = if last.is_some() {
            Durability::Immediate
        } else {
            Durability::None
        };
        tx.set_durability(durability)
            .map_err(|x| e(redb::Error::Corrupted(x.to_string())))?;
        {
            let mut tables = Tables::open(&tx).map_err(&e)?;
            for r in self.batch.drain(..) {
                let bytes = r.encode_to_vec();
                tables
                    .insert(
                        &r.workflow_id,
                        &r.workflow_name,
                        r.status,
                        r.updated_at_ms,
                        &bytes,
                    )
                    .map_err(&e)?;
            }
            if let Some((applied, rest, counts, active)) = last {
                let mut table = tx.open_table(ACTIVE).map_err(|x| e(x.into()))?;
                for w in active {
                    let bytes = record(w).encode_to_vec();
                    table
                        .insert(w.id.as_str(), bytes.as_slice())
                        .map_err(|x| e(x.into()))?;
                }
                let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
                write_meta(&mut meta, applied, rest, counts).map_err(&e)?;
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }
}

/// Turns a redb error into one that names the store and the operation.
fn failure<'a>(place: &'a str, what: &'static str) -> impl Fn(redb::Error) -> ArchiveError + 'a {
    move |source| ArchiveError {
        place: place.to_owned(),
        what,
        source: Box::new(source),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn corrupt(e: prost::DecodeError) -> redb::Error {
    redb::Error::Corrupted(format!("a stored record does not decode: {e}"))
}

fn decode(bytes: &[u8]) -> Result<Workflow, redb::Error> {
    WorkflowRecord::decode(bytes).map(workflow).map_err(corrupt)
}
