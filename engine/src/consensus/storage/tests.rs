use super::snapshot_state::Temps;
use super::*;

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry {
        index,
        term,
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState::from((ids.to_vec(), vec![]))
}

fn open(dir: &Path) -> RaftStore {
    RaftStore::open(
        dir,
        1,
        voters(&[1]),
        &StorageOptions {
            segment_bytes: 4096,
        },
    )
    .expect("open")
    .0
}

fn all(store: &RaftStore) -> Vec<(u64, u64, String)> {
    let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
    store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .unwrap()
        .into_iter()
        .map(|e| (e.index, e.term, String::from_utf8(e.data.to_vec()).unwrap()))
        .collect()
}

/// End of the written data in a segment: its preallocated rest is zeros.
fn data_end(segment: &[u8]) -> usize {
    segment.iter().rposition(|b| *b != 0).expect("some data") + 1
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// Rewrites the newest segment after `damage` (given the data and where the
/// written data ends) changed it.
fn damage_the_last_record(dir: &Path, damage: impl FnOnce(&mut Vec<u8>, usize)) {
    let segment = segments(dir).pop().expect("a segment");
    let mut data = fs::read(&segment).unwrap();
    let end = data_end(&data);
    damage(&mut data, end);
    fs::write(&segment, data).unwrap();
}

/// 40 synced records of 300 bytes: several 4 KiB segments.
fn fill_segments(dir: &Path) {
    let store = open(dir);
    let payload = "x".repeat(300);
    for i in 1..=40u64 {
        store.append(&[entry(i, 1, &payload)]).unwrap();
        store.sync().unwrap();
    }
}

#[test]
fn segments_are_preallocated_and_their_zero_ends_are_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fill_segments(dir.path());
    let paths = segments(dir.path());
    assert!(
        paths.len() >= 3,
        "40 records of 300 bytes fill several 4 KiB segments"
    );
    if cfg!(target_os = "linux") {
        // Appends write into reserved space; the file does not grow.
        for path in &paths {
            assert!(
                fs::metadata(path).unwrap().len() >= 4096,
                "{path:?} not preallocated"
            );
        }
        let active = fs::read(paths.last().unwrap()).unwrap();
        assert!(
            data_end(&active) < active.len(),
            "the active segment has a zero end"
        );
    }
    // Every segment, including earlier ones that end in zeros, reads back;
    // appends after a reopen continue at the end of the data.
    let store = open(dir.path());
    assert_eq!(all(&store).len(), 40);
    store.append(&[entry(41, 1, "after")]).unwrap();
    store.sync().unwrap();
    drop(store);
    let all = all(&open(dir.path()));
    assert_eq!(all.len(), 41);
    assert_eq!(all[40], (41, 1, "after".to_string()));
}

#[test]
fn garbage_after_the_data_of_an_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fill_segments(dir.path());
    let first = segments(dir.path())[0].clone();
    let mut data = fs::read(&first).unwrap();
    let end = data_end(&data);
    data.resize(data.len().max(end + 8), 0);
    data[end + 4] = 0x5a;
    fs::write(&first, data).unwrap();
    let err = RaftStore::open(
        dir.path(),
        1,
        voters(&[1]),
        &StorageOptions {
            segment_bytes: 4096,
        },
    )
    .err()
    .expect("damage before the last segment must not be skipped");
    assert!(matches!(err, StorageError::Corrupt(_)), "{err}");
}

#[test]
fn entries_and_hard_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "a"), entry(2, 1, "b")]).unwrap();
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 2,
        ..Default::default()
    };
    store.set_hard_state(&hs).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(all(&store), vec![(1, 1, "a".into()), (2, 1, "b".into())]);
    let state = store.initial_state().unwrap();
    assert_eq!(
        (
            state.hard_state.term,
            state.hard_state.vote,
            state.hard_state.commit
        ),
        (1, 1, 2)
    );
    assert_eq!(state.conf_state.voters, vec![1]);
}

#[test]
fn a_conflicting_append_truncates_the_tail_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")])
        .unwrap();
    store.append(&[entry(2, 2, "B")]).unwrap();
    store.sync().unwrap();
    let expected = vec![(1, 1, "a".to_string()), (2, 2, "B".to_string())];
    assert_eq!(all(&store), expected);
    drop(store);
    assert_eq!(all(&open(dir.path())), expected);
}

#[test]
fn a_torn_tail_is_cut_off_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "a"), entry(2, 1, "b")]).unwrap();
    store.sync().unwrap();
    store
        .append(&[entry(3, 1, "the last record, torn by a crash")])
        .unwrap();
    store.sync().unwrap();
    drop(store);
    // A crash mid-write leaves the record's end unwritten: zeros, as the
    // segment is preallocated.
    damage_the_last_record(dir.path(), |data, end| data[end - 5..end].fill(0));
    let store = open(dir.path());
    assert_eq!(all(&store), vec![(1, 1, "a".into()), (2, 1, "b".into())]);
    // The log is writable again at the cut.
    store.append(&[entry(3, 1, "c")]).unwrap();
    store.sync().unwrap();
    drop(store);
    assert_eq!(all(&open(dir.path())).len(), 3);
}

#[test]
fn flipped_bits_in_the_tail_are_detected_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&[entry(1, 1, "a"), entry(2, 1, "bbbbbbbb")])
        .unwrap();
    store.sync().unwrap();
    drop(store);
    damage_the_last_record(dir.path(), |data, end| data[end - 3] ^= 0xff);
    assert_eq!(all(&open(dir.path())), vec![(1, 1, "a".into())]);
}

#[test]
fn compaction_bounds_the_disk_and_a_reopen_starts_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let payload = "x".repeat(200);
    for i in 1..=2000u64 {
        store.append(&[entry(i, 1, &payload)]).unwrap();
        store.sync().unwrap();
        if i % 100 == 0 {
            store
                .compact(i, format!("state@{i}").into_bytes(), 10)
                .unwrap();
        }
    }
    // 2000 entries of ~220 bytes would be ~440 KB; segments are 4 KB.
    assert!(
        store.disk_bytes() < 64 * 1024,
        "log not compacted: {} bytes",
        store.disk_bytes()
    );
    assert_eq!(store.snapshot_index(), 2000);
    assert_eq!(store.first_index().unwrap(), 1991);
    assert_eq!(store.term(1990).unwrap(), 1);
    assert!(matches!(
        store.term(5),
        Err(raft::Error::Store(RaftStorageError::Compacted))
    ));
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.snapshot_data().unwrap(),
        Some((2000, b"state@2000".to_vec()))
    );
    assert_eq!(store.last_index().unwrap(), 2000);
    assert!(store.snapshot(2000, 1).is_ok());
    // Too old for the request, or taken before the receiver was a member:
    // refused for now, and a fresh snapshot is asked for.
    assert!(store.snapshot(2001, 1).is_err());
    assert!(store.take_snapshot_wanted());
    assert!(store.snapshot(2000, 7).is_err());
    assert!(store.take_snapshot_wanted());
    assert!(!store.take_snapshot_wanted());
}

#[test]
fn a_directory_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let err = RaftStore::open(dir.path(), 2, voters(&[2]), &StorageOptions::default())
        .err()
        .expect("node 2 must not open node 1's storage");
    assert!(
        matches!(
            err,
            StorageError::WrongNode {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("holds the data of node 1"));
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn snapshot_at(index: u64, term: u64, data: &str) -> Snapshot {
    let mut snapshot = Snapshot {
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(voters(&[1, 2, 3]));
    snapshot
}

fn open_err(dir: &Path) -> StorageError {
    RaftStore::open(
        dir,
        1,
        voters(&[1]),
        &StorageOptions {
            segment_bytes: 4096,
        },
    )
    .err()
    .expect("the open must fail")
}

/// A follower of a deposed leader: entries 1..=300, 101..=300 at term 3,
/// all synced, spread over several segments.
fn deposed_follower(dir: &Path) -> RaftStore {
    let store = open(dir);
    let payload = "y".repeat(40);
    for i in 1..=300u64 {
        let term = if i <= 100 { 2 } else { 3 };
        store.append(&[entry(i, term, &payload)]).unwrap();
    }
    store.set_hard_state(&hard_state(3, 2, 100)).unwrap();
    store.sync().unwrap();
    assert!(segments(dir).len() > 1, "the log spans several segments");
    store
}

#[test]
fn entries_after_an_installed_snapshot_do_not_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = deposed_follower(dir.path());
    // The new leader's snapshot at 250, term 4; the node restarts before
    // appending 251.
    store
        .apply_snapshot(snapshot_at(250, 4, "state@250"))
        .unwrap();
    store.set_hard_state(&hard_state(4, 0, 250)).unwrap();
    store.sync().unwrap();
    assert_eq!(store.last_index().unwrap(), 250);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.last_index().unwrap(),
        250,
        "the old 251..=300 came back"
    );
    assert_eq!(store.term(250).unwrap(), 4);
    assert_eq!(store.first_index().unwrap(), 251);
    assert_eq!(
        store.snapshot_data().unwrap(),
        Some((250, b"state@250".to_vec()))
    );
    // What the node appends after the snapshot survives, and only that.
    store.append(&[entry(251, 4, "new")]).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(all(&store), vec![(251, 4, "new".into())]);
    assert_eq!(store.initial_state().unwrap().hard_state.term, 4);
    assert_eq!(store.conf_state().voters, vec![1, 2, 3]);
}

#[test]
fn a_snapshot_whose_install_record_was_lost_still_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = deposed_follower(dir.path());
    drop(store);
    // A crash after snapshot.bin was replaced but before the log recorded
    // the install: the snapshot (term 4 at 250) does not match the log's
    // entry 250 (term 3), so none of the log's entries after it is kept.
    write_snapshot(dir.path(), &snapshot_at(250, 4, "state@250")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.last_index().unwrap(), 250);
    assert_eq!(store.term(250).unwrap(), 4);
}

#[test]
fn install_deletes_the_segments_of_the_replaced_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = deposed_follower(dir.path());
    store
        .apply_snapshot(snapshot_at(250, 4, "state@250"))
        .unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the new segment is left"
    );
}

#[test]
fn damage_followed_by_a_later_fsynced_batch_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 1..=3u64 {
        store.append(&[entry(i, 1, "some entry")]).unwrap();
        store.sync().unwrap();
    }
    drop(store);
    // A flipped bit in entry 2: entry 3 was written after entry 2's fsync
    // returned, so entry 2 was acknowledged; cutting there would lose it.
    let segment = segments(dir.path()).pop().unwrap();
    let mut data = fs::read(&segment).unwrap();
    let at = data.windows(3).position(|w| w == b"som").unwrap() + 20 + 30;
    data[at] ^= 0x10;
    fs::write(&segment, data).unwrap();
    let err = open_err(dir.path());
    let message = err.to_string();
    assert!(matches!(err, StorageError::Corrupt(_)), "{message}");
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(message.contains("damaged at byte"), "{message}");
    assert!(message.contains("join it again"), "{message}");
}

#[test]
fn a_torn_batch_with_later_pages_written_is_cut_at_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "synced")]).unwrap();
    store.sync().unwrap();
    let (_, start) = store.flush_unsynced();
    // One batch, never fsynced: the crash wrote its later pages but not a
    // page in its middle (write-back order is not write order).
    let batch: Vec<Entry> = (2..=20u64).map(|i| entry(i, 1, &"z".repeat(100))).collect();
    store.append(&batch).unwrap();
    let (segment, end) = store.flush_unsynced();
    store.crash();
    let mut data = fs::read(&segment).unwrap();
    let middle = (start + (end - start) / 2) as usize;
    data[middle..middle + 64].fill(0);
    fs::write(&segment, data).unwrap();
    let store = open(dir.path());
    let entries = all(&store);
    assert_eq!(entries[0], (1, 1, "synced".into()));
    assert!(
        entries.len() > 1 && entries.len() < 20,
        "the batch is kept up to the damage: {} entries",
        entries.len()
    );
}

#[test]
fn a_record_of_unknown_kind_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "a")]).unwrap();
    store.sync().unwrap();
    let (segment, end) = store.flush_unsynced();
    drop(store);
    // A well-formed record of a kind this version does not know (a newer
    // format): cutting it would silently drop whatever it holds.
    let payload = b"from the future";
    let mut data = fs::read(&segment).unwrap();
    let mut record = wal::record_header(42, payload).to_vec();
    record.extend_from_slice(payload);
    data[end as usize..end as usize + record.len()].copy_from_slice(&record);
    fs::write(&segment, data).unwrap();
    let message = open_err(dir.path()).to_string();
    assert!(message.contains("kind 42 is unknown"), "{message}");
    assert!(message.contains(&format!("byte {end}")), "{message}");
}

#[test]
fn a_failed_fsync_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "a")]).unwrap();
    store.sync().unwrap();
    store.append(&[entry(2, 1, "b")]).unwrap();
    store.fail_next_sync();
    assert!(matches!(store.sync(), Err(StorageError::Io { .. })));
    // Never retried: a second fsync could report success without the
    // pages the first one lost.
    assert!(matches!(store.sync(), Err(StorageError::Failed(_))));
    let err = store.append(&[entry(3, 1, "c")]).unwrap_err();
    assert!(err.to_string().contains("restart the node"), "{err}");
}

#[test]
fn a_crash_loses_only_what_was_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&[entry(1, 1, "a")]).unwrap();
    store.set_hard_state(&hard_state(1, 1, 1)).unwrap();
    store.sync().unwrap();
    store.append(&[entry(2, 1, "b")]).unwrap();
    store.set_hard_state(&hard_state(2, 0, 1)).unwrap();
    store.crash();
    let store = open(dir.path());
    assert_eq!(all(&store), vec![(1, 1, "a".into())]);
    assert_eq!(store.initial_state().unwrap().hard_state.term, 1);
}

#[test]
fn the_install_record_holds_when_a_crash_left_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = deposed_follower(dir.path());
    let old: Vec<_> = segments(dir.path())
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    store
        .apply_snapshot(snapshot_at(250, 4, "state@250"))
        .unwrap();
    store.append(&[entry(251, 4, "new")]).unwrap();
    store.sync().unwrap();
    drop(store);
    // A crash between recording the install and deleting the old segments.
    for (path, data) in old {
        fs::write(path, data).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(all(&store), vec![(251, 4, "new".into())]);
    assert_eq!(store.term(250).unwrap(), 4);
}

#[test]
fn snapshot_state_lives_in_its_own_file_and_only_the_latest_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 1..=30u64 {
        store.append(&[entry(i, 1, "x")]).unwrap();
    }
    store.sync().unwrap();
    store.compact(10, b"state@10".to_vec(), 2).unwrap();
    store.compact(20, b"state@20".to_vec(), 2).unwrap();
    let states = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(states(dir.path()), vec!["20-1.state".to_owned()]);
    // The raft-rs snapshot carries a reference, not the state.
    let snapshot = store.snapshot(0, 1).unwrap();
    let reference = snapshot_state::decode_ref(&snapshot.data).expect("a reference");
    assert_eq!((reference.index, reference.size), (20, 8));
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.snapshot_data().unwrap(),
        Some((20, b"state@20".to_vec()))
    );
    drop(store);
    // A damaged state file is found when it is read, not used.
    let path = dir.path().join("snapshots/20-1.state");
    let mut data = fs::read(&path).unwrap();
    data[0] ^= 0xff;
    fs::write(&path, data).unwrap();
    let store = open(dir.path());
    assert!(matches!(
        store.snapshot_data(),
        Err(StorageError::Corrupt(_))
    ));
}

#[test]
fn a_snapshot_bin_with_inline_state_from_an_older_version_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut snapshot = Snapshot {
        data: b"old inline state".to_vec().into(),
        ..Default::default()
    };
    snapshot.mut_metadata().index = 5;
    snapshot.mut_metadata().term = 2;
    snapshot.mut_metadata().set_conf_state(voters(&[1]));
    fs::write(dir.path().join("node.id"), "1\n").unwrap();
    files::write_snapshot(dir.path(), &snapshot).unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.snapshot_data().unwrap(),
        Some((5, b"old inline state".to_vec()))
    );
    let sent = store.snapshot(0, 1).unwrap();
    assert!(snapshot_state::decode_ref(&sent.data).is_some());
}

#[test]
fn a_flush_point_reaches_the_disk_only_when_its_compaction_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    fill_segments(dir.path());
    let store = open(dir.path());
    let before = segments(dir.path());
    assert!(before.len() > 3, "{before:?}");
    let files = store
        .compact_to(30, 1, voters(&[1]), None, 2)
        .unwrap()
        .expect("files to persist");
    assert_eq!(store.first_index().unwrap(), 29, "compacted in memory");
    assert_eq!(segments(dir.path()), before, "nothing deleted yet");
    // A crash now restarts from the old point, with every entry.
    let crashed = tempfile::tempdir().unwrap();
    for path in &before {
        fs::create_dir_all(crashed.path().join("wal")).unwrap();
        fs::copy(
            path,
            crashed.path().join("wal").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    fs::copy(dir.path().join("node.id"), crashed.path().join("node.id")).unwrap();
    let reopened = open(crashed.path());
    assert_eq!(reopened.first_index().unwrap(), 1);
    assert_eq!(reopened.last_index().unwrap(), 40);

    files.persist().unwrap();
    let after = segments(dir.path());
    assert!(after.len() < before.len(), "{after:?}");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.snapshot_index(), 30);
    assert_eq!(store.first_index().unwrap(), 31);
    assert_eq!(all(&store).last().map(|e| e.0), Some(40));
}

#[test]
fn a_late_compaction_never_writes_over_a_newer_installed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    fill_segments(dir.path());
    let store = open(dir.path());
    let files = store
        .compact_to(30, 1, voters(&[1]), None, 2)
        .unwrap()
        .expect("files to persist");
    store
        .apply_snapshot(snapshot_at(50, 2, "state@50"))
        .unwrap();
    files.persist().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.snapshot_index(), 50);
    assert_eq!(
        store.snapshot_data().unwrap(),
        Some((50, b"state@50".to_vec()))
    );
}

/// Issue 24, defect 3: a snapshot state being encoded (`.tmp`, written by
/// the flush thread) for an index at or past a compaction is not removed
/// by that compaction; a leftover of an older one is.
#[test]
fn compaction_leaves_a_state_being_encoded_to_its_writer() {
    let left = snapshot_files_left(
        &["50-1.tmp", "50-1.state", "100-2.tmp", "120-2.state"],
        100,
        Temps::Older,
    );
    assert_eq!(left, ["100-2.tmp", "120-2.state"]);
}

/// The snapshot files of `names` that `remove_older(index, temps)` leaves,
/// sorted.
fn snapshot_files_left(names: &[&str], index: u64, temps: Temps) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    for name in names {
        std::fs::write(snapshots.join(name), b"x").unwrap();
    }
    super::snapshot_state::remove_older(dir.path(), index, temps);
    let mut left: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    left
}

/// An install on the Raft loop removes older states but no temp file: the
/// flush thread may be encoding one at an older index (a leader that
/// stepped down mid-encode and now installs its successor's snapshot),
/// and its rename would fail and stop the node. The encode's own stale
/// result is dropped by the compaction it reaches.
#[test]
fn an_install_leaves_every_state_being_encoded_to_its_writer() {
    let left = snapshot_files_left(
        &[
            "50-1.tmp",
            "50-1.state",
            "incoming-60-1.ready",
            "120-2.state",
        ],
        100,
        Temps::Keep,
    );
    assert_eq!(left, ["120-2.state", "50-1.tmp"]);
}

/// Issue 24, defect 3 (fourth race): a transfer holds its snapshot open;
/// a compaction that removes the file meanwhile does not take the bytes
/// from a stream that resumes at an offset.
#[test]
fn an_open_snapshot_reads_on_after_its_file_is_removed() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let state = super::snapshot_state::write_state(Some(dir.path()), 7, 2, |out| {
        out.write_all(&(0..=255u8).cycle().take(10_000).collect::<Vec<_>>())
    })
    .unwrap();
    let open = state.open().unwrap();
    super::snapshot_state::remove_older(dir.path(), 8, Temps::Older);
    assert!(state.reader_at(0).is_err(), "the name is gone");
    let mut first = open.reader_at(0);
    let mut resumed = open.reader_at(4_000);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    resumed.read_to_end(&mut b).unwrap();
    first.read_to_end(&mut a).unwrap();
    assert_eq!(a.len(), 10_000);
    assert_eq!(b, a[4_000..]);
}
