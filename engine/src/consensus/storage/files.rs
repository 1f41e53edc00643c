//! The small files of the storage directory: `node.id` and `snapshot.bin`,
//! each replaced atomically.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use protobuf::Message as _;
use raft::prelude::Snapshot;

use super::{StorageError, wal};

/// The node id recorded in `dir`, if any.
pub(super) fn stored_node_id(dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = dir.join("node.id");
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            StorageError::Corrupt(format!("{} does not hold a node id", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read", &path, e)),
    }
}

pub(super) fn check_node_id(dir: &Path, node_id: u64) -> Result<(), StorageError> {
    let path = dir.join("node.id");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found: u64 = text.trim().parse().map_err(|_| {
                StorageError::Corrupt(format!("{} does not hold a node id", path.display()))
            })?;
            if found != node_id {
                return Err(StorageError::WrongNode {
                    path: dir.to_path_buf(),
                    found,
                    expected: node_id,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(dir, "node.id", format!("{node_id}\n").as_bytes())
        }
        Err(e) => Err(StorageError::io("read", &path, e)),
    }
}

pub(super) fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), StorageError> {
    let body = snapshot.write_to_bytes().map_err(StorageError::encode)?;
    let mut data = crc32fast::hash(&body).to_le_bytes().to_vec();
    data.extend_from_slice(&body);
    write_atomically(dir, "snapshot.bin", &data)
}

pub(super) fn read_snapshot(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let path = dir.join("snapshot.bin");
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", &path, e)),
    };
    if data.len() < 4 || crc32fast::hash(&data[4..]).to_le_bytes() != data[..4] {
        return Err(StorageError::Corrupt(format!(
            "{} fails its checksum; remove the node's storage and re-join it",
            path.display()
        )));
    }
    Snapshot::parse_from_bytes(&data[4..])
        .map(Some)
        .map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display())))
}

/// Writes a file so that it is either the old or the new content after a
/// crash: temp file, fsync, rename, fsync of the directory.
fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename into place", &path, e))?;
    wal::sync_dir(dir)
}
