//! Model-based recovery test: random sequences of what the Raft loop does to
//! its log (appends, suffix truncation, hard states, commit indexes without
//! fsync, snapshot installs, compaction), crashes, torn writes and flipped
//! bytes, checked against a simple in-memory model of the log the node
//! acknowledged. After every reopen recovery must give exactly the model;
//! damage to acknowledged records must stop the open instead.
//!
//! `PROPTEST_CASES` sets the number of sequences (48 by default, CI-sized);
//! docs/TESTING.md has the long run.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

const SEGMENT_BYTES: u64 = 1024;

/// One step of a sequence. Numbers are raw choices, fitted to the current
/// state when the step runs so that every sequence is one Raft could make.
#[derive(Debug, Clone)]
enum Op {
    /// Appends `n` entries at the current term, starting `back` entries
    /// before the end (a conflicting append truncates the suffix), never at
    /// or below the commit index; then fsyncs.
    Append { back: u8, n: u8, size: u8 },
    /// A new hard state (maybe a new term and vote, a higher commit index);
    /// then fsyncs.
    HardState {
        new_term: bool,
        vote: u8,
        commit: u8,
    },
    /// A higher commit index alone, written without its own fsync (it rides
    /// on the next one, as the Raft loop does).
    Commit { raise: u8 },
    /// Installs a leader's snapshot above the commit index (maybe beyond
    /// the log, maybe at a newer term than the local entry there).
    Install { ahead: u8, new_term: bool },
    /// Snapshots at a committed index and compacts, keeping `keep` entries.
    Compact { at: u8, keep: u8 },
    /// Compacts in memory at a committed index (a flush point), then
    /// crashes before the compaction's files are persisted: the log comes
    /// back whole from the previous point.
    CompactCrash { at: u8, keep: u8 },
    /// A clean restart.
    Reopen,
    /// Writes entries and a new term without fsync, then crashes: the
    /// buffered records are lost.
    CrashUnsynced { n: u8 },
    /// Writes a batch without fsync, damages it on disk, crashes: recovery
    /// keeps a prefix of the batch.
    TornBatch { n: u8, at: u16, tear: Tear },
    /// A crash right after a leader's snapshot was stored, before the log
    /// recorded its install.
    InstallCrash { ahead: u8, new_term: bool },
    /// Flips a byte of an acknowledged batch that a later batch follows:
    /// the open must fail.
    MidFlip { at: u16, old_segment: bool },
}

/// How a torn batch is damaged.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Nothing from a point on reached the disk.
    ZeroToEnd,
    /// A page in the middle did not reach the disk; later ones did.
    ZeroRange,
    /// A byte reached the disk wrong.
    Flip,
}

fn op() -> impl Strategy<Value = Op> {
    let tear = prop_oneof![
        Just(Tear::ZeroToEnd),
        Just(Tear::ZeroRange),
        Just(Tear::Flip)
    ];
    prop_oneof![
        8 => (0u8..6, 1u8..8, any::<u8>()).prop_map(|(back, n, size)| Op::Append { back, n, size }),
        4 => (any::<bool>(), 0u8..4, any::<u8>())
            .prop_map(|(new_term, vote, commit)| Op::HardState { new_term, vote, commit }),
        2 => any::<u8>().prop_map(|raise| Op::Commit { raise }),
        2 => (0u8..8, any::<bool>()).prop_map(|(ahead, new_term)| Op::Install { ahead, new_term }),
        2 => (any::<u8>(), 0u8..6).prop_map(|(at, keep)| Op::Compact { at, keep }),
        1 => (any::<u8>(), 0u8..6).prop_map(|(at, keep)| Op::CompactCrash { at, keep }),
        2 => Just(Op::Reopen),
        1 => (1u8..6).prop_map(|n| Op::CrashUnsynced { n }),
        2 => (1u8..10, any::<u16>(), tear).prop_map(|(n, at, tear)| Op::TornBatch { n, at, tear }),
        1 => (0u8..8, any::<bool>()).prop_map(|(ahead, new_term)| Op::InstallCrash { ahead, new_term }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(at, old_segment)| Op::MidFlip { at, old_segment }),
    ]
}

/// The acknowledged log: what recovery must rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    /// Latest snapshot: index, term, data.
    snapshot: (u64, u64, String),
    /// Entries after the snapshot, contiguous: (index, term, data).
    entries: Vec<(u64, u64, String)>,
    /// Term, vote, commit.
    hard_state: (u64, u64, u64),
}

impl Model {
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.0, |e| e.0)
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.0 {
            return Some(self.snapshot.1);
        }
        self.entries.iter().find(|e| e.0 == index).map(|e| e.1)
    }

    /// Raft's append: an entry at index i replaces i and everything after.
    fn append(&mut self, entries: &[(u64, u64, String)]) {
        let Some(first) = entries.first() else { return };
        self.entries.retain(|e| e.0 < first.0);
        self.entries.extend_from_slice(entries);
    }

    fn install(&mut self, index: u64, term: u64, data: String) {
        self.snapshot = (index, term, data);
        self.entries.clear();
        self.hard_state.0 = self.hard_state.0.max(term);
        self.hard_state.2 = self.hard_state.2.max(index);
    }

    fn hs(&self) -> HardState {
        let (term, vote, commit) = self.hard_state;
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    /// The model as the store shows it.
    fn observe(store: &RaftStore) -> Model {
        let core = store.rl();
        let meta = core.snapshot.get_metadata();
        let snapshot = (
            meta.index,
            meta.term,
            core.state
                .as_ref()
                .map(|s| String::from_utf8(s.read_all().unwrap()).unwrap())
                .unwrap_or_default(),
        );
        let entries = core
            .entries
            .iter()
            .filter(|e| e.index > meta.index)
            .map(|e| (e.index, e.term, String::from_utf8(e.data.to_vec()).unwrap()))
            .collect();
        let hs = &core.hard_state;
        Model {
            snapshot,
            entries,
            hard_state: (hs.term, hs.vote, hs.commit),
        }
    }
}

fn new_entries(at: u64, n: u8, term: u64, size: u8) -> Vec<(u64, u64, String)> {
    (0..u64::from(n))
        .map(|i| {
            let index = at + i;
            // Sizes from a few bytes to a few hundred: records cross the
            // 1 KiB segments at every offset.
            let filler = "abcdefghij".repeat(usize::from(size) / 10);
            (index, term, format!("e{index}t{term}{filler}"))
        })
        .collect()
}

fn to_entries(entries: &[(u64, u64, String)]) -> Vec<Entry> {
    entries
        .iter()
        .map(|(index, term, data)| Entry {
            index: *index,
            term: *term,
            data: data.as_bytes().to_vec().into(),
            ..Default::default()
        })
        .collect()
}

fn snapshot(index: u64, term: u64, data: &str) -> Snapshot {
    let mut snapshot = Snapshot {
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(ConfState::from((vec![1], vec![])));
    snapshot
}

fn open(dir: &Path) -> Result<RaftStore, StorageError> {
    let options = StorageOptions {
        segment_bytes: SEGMENT_BYTES,
    };
    RaftStore::open(dir, 1, ConfState::from((vec![1], vec![])), &options).map(|(s, _)| s)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn flip(path: &Path, at: usize) {
    let mut data = fs::read(path).unwrap();
    data[at] ^= 0x41;
    fs::write(path, data).unwrap();
}

/// Runs one sequence. Ends early (passing) once damage to acknowledged
/// records was refused, as it must be.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut store = open(dir).unwrap();
    store
        .bootstrap(ConfState::from((vec![1], vec![])), b"boot".to_vec())
        .unwrap();
    let mut model = Model {
        snapshot: (1, 1, "boot".into()),
        entries: Vec::new(),
        hard_state: (1, 0, 1),
    };
    store.set_hard_state(&model.hs()).unwrap();
    store.sync().unwrap();
    // Where the last fsynced batch began: bytes before it were acknowledged
    // before it was written. A batch begins at the first write after an
    // fsync, which may be a step before the one that syncs it.
    let mut last_batch: Option<(PathBuf, u64)> = None;
    let mut unsynced_from: Option<(PathBuf, u64)> = None;
    for (step, op) in ops.iter().enumerate() {
        let before = store.flush_unsynced();
        let (term, _, commit) = model.hard_state;
        let last = model.last_index();
        match op {
            Op::Append { back, n, size } => {
                let at = (last + 1).saturating_sub(u64::from(*back)).max(commit + 1);
                let entries = new_entries(at, *n, term, *size);
                store.append(&to_entries(&entries)).unwrap();
                store.sync().unwrap();
                model.append(&entries);
                last_batch = Some(unsynced_from.take().unwrap_or(before));
            }
            Op::HardState {
                new_term,
                vote,
                commit: raise,
            } => {
                if *new_term {
                    model.hard_state = (term + 1, u64::from(*vote), commit);
                }
                model.hard_state.2 = commit + (last - commit) * u64::from(*raise) / 255;
                store.set_hard_state(&model.hs()).unwrap();
                store.sync().unwrap();
                last_batch = Some(unsynced_from.take().unwrap_or(before));
            }
            Op::Commit { raise } => {
                // Every step begins with a flush, so a crash keeps the
                // record unless it is lost with its step's own writes.
                model.hard_state.2 = commit + (last - commit) * u64::from(*raise) / 255;
                store.set_commit(model.hard_state.2).unwrap();
                unsynced_from.get_or_insert(before);
            }
            Op::Install { ahead, new_term } => {
                let index = commit + 1 + u64::from(*ahead);
                let snap_term = term + u64::from(*new_term);
                let data = format!("leader@{index}");
                store
                    .apply_snapshot(snapshot(index, snap_term, &data))
                    .unwrap();
                model.install(index, snap_term, data);
                store.set_hard_state(&model.hs()).unwrap();
                store.sync().unwrap();
                last_batch = None;
                unsynced_from = None;
            }
            Op::Compact { at, keep } => {
                let base = model.snapshot.0;
                if commit > base {
                    let index = base + 1 + (commit - base - 1) * u64::from(*at) / 255;
                    let data = format!("local@{index}");
                    let term = model.term_at(index).unwrap();
                    store
                        .compact(index, data.clone().into_bytes(), u64::from(*keep))
                        .unwrap();
                    model.snapshot = (index, term, data);
                    model.entries.retain(|e| e.0 > index);
                }
            }
            Op::CompactCrash { at, keep } => {
                let base = model.snapshot.0;
                if commit > base {
                    let index = base + 1 + (commit - base - 1) * u64::from(*at) / 255;
                    let term = model.term_at(index).unwrap();
                    let conf = store.conf_state();
                    let files = store
                        .compact_to(index, term, conf, None, u64::from(*keep))
                        .unwrap();
                    drop(files);
                    drop(store);
                    store = open(dir).unwrap();
                    unsynced_from = None;
                }
            }
            Op::Reopen => {
                drop(store);
                store = open(dir).unwrap();
                // Opening fsyncs what is on disk.
                unsynced_from = None;
            }
            Op::CrashUnsynced { n } => {
                let entries = new_entries(last + 1, *n, term, 8);
                store.append(&to_entries(&entries)).unwrap();
                let mut hs = model.hs();
                hs.term += 1;
                store.set_hard_state(&hs).unwrap();
                store.crash();
                store = open(dir).unwrap();
                unsynced_from = None;
            }
            Op::TornBatch { n, at, tear } => {
                let from = (last + 1).saturating_sub(2).max(commit + 1);
                let batch = new_entries(from, *n, term, 40);
                store.append(&to_entries(&batch)).unwrap();
                let (path, end) = store.flush_unsynced();
                prop_assert_eq!(&path, &before.0, "a batch stays in one segment");
                store.crash();
                let start = before.1;
                let offset = (start + u64::from(*at) % (end - start)) as usize;
                let mut data = fs::read(&path).unwrap();
                match tear {
                    Tear::ZeroToEnd => data[offset..end as usize].fill(0),
                    Tear::ZeroRange => {
                        let stop = (offset + 64).min(end as usize);
                        data[offset..stop].fill(0);
                    }
                    Tear::Flip => data[offset] ^= 0x41,
                }
                fs::write(&path, data).unwrap();
                store = open(dir).map_err(|e| {
                    TestCaseError::fail(format!("step {step}: a torn batch refused: {e}"))
                })?;
                let got = Model::observe(&store);
                let kept = (0..=batch.len()).find(|&j| {
                    let mut expected = model.clone();
                    expected.append(&batch[..j]);
                    expected == got
                });
                prop_assert!(
                    kept.is_some(),
                    "step {}: recovery is not the model plus a prefix of the torn batch\nmodel {:?}\ngot {:?}",
                    step,
                    model,
                    got
                );
                model.append(&batch[..kept.unwrap()]);
                // The cut re-synced the segment: its data is acknowledged.
                last_batch = None;
                unsynced_from = None;
            }
            Op::InstallCrash { ahead, new_term } => {
                let index = commit + 1 + u64::from(*ahead);
                let snap_term = term + u64::from(*new_term);
                let data = format!("lost-record@{index}");
                write_snapshot(dir, &snapshot(index, snap_term, &data)).unwrap();
                store.crash();
                store = open(dir).unwrap();
                if model.term_at(index) == Some(snap_term) {
                    // The log matches it: it compacts the log, and what it
                    // holds is committed.
                    model.snapshot = (index, snap_term, data);
                    model.entries.retain(|e| e.0 > index);
                    model.hard_state.2 = model.hard_state.2.max(index);
                } else {
                    model.install(index, snap_term, data);
                }
                last_batch = None;
                unsynced_from = None;
            }
            Op::MidFlip { at, old_segment } => {
                let files = segment_files(dir);
                let target = if *old_segment && files.len() > 1 {
                    let path = files[0].clone();
                    let len = fs::metadata(&path).unwrap().len();
                    Some((path, u64::from(*at) % len))
                } else {
                    match &last_batch {
                        Some((path, start)) if *path == before.0 && *start > 0 => {
                            Some((path.clone(), u64::from(*at) % start))
                        }
                        _ => None,
                    }
                };
                if let Some((path, offset)) = target {
                    drop(store);
                    flip(&path, offset as usize);
                    let opened = open(dir);
                    prop_assert!(
                        matches!(opened, Err(StorageError::Corrupt(_))),
                        "step {}: a flipped byte at {} of {:?} before a later batch was not refused",
                        step,
                        offset,
                        path
                    );
                    return Ok(());
                }
            }
        }
        let got = Model::observe(&store);
        prop_assert_eq!(&got, &model, "step {} ({:?}): live store differs", step, op);
        if matches!(
            op,
            Op::Reopen
                | Op::CrashUnsynced { .. }
                | Op::InstallCrash { .. }
                | Op::CompactCrash { .. }
        ) {
            prop_assert_eq!(store.last_index().unwrap(), model.last_index());
        }
    }
    drop(store);
    let got = Model::observe(&open(dir).unwrap());
    prop_assert_eq!(got, model, "final reopen differs");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn recovery_rebuilds_exactly_the_acknowledged_log(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
