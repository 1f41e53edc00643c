//! Readable status values (`STATUS_SET` entries): the code sets a small
//! value under a key; clients read the latest value of each key from the
//! history on any node. Nothing is kept beside the history, so a status
//! lives as long as the history (snapshots, the archive, until retention).

use raftoral_proto::sidecar::v1::{HistoryEntryKind, StatusValue};

use super::workflow::Workflow;

/// The command level of status values (`STATUS_SET` entries) and of
/// signal-with-start (`StartWorkflow.signal`).
pub const STATUS_LEVEL: u32 = 6;

/// Largest status value: a status is read often and kept in the history,
/// so it is meant for a small summary ("shipped", a progress count), not
/// for data (which belongs in a step's value).
pub const MAX_STATUS_BYTES: usize = 64 * 1024;

impl Workflow {
    /// The latest value of each key in `keys` the code set (every key
    /// when `keys` is empty), ordered by key.
    ///
    /// One pass over the history: reads are rare next to steps, and
    /// keeping no second copy keeps snapshots and the archive unchanged.
    pub fn status_values(&self, keys: &[String]) -> Vec<StatusValue> {
        let mut latest = std::collections::BTreeMap::new();
        for (index, entry) in self.checkpoints.iter().enumerate() {
            if entry.kind != HistoryEntryKind::StatusSet
                || !(keys.is_empty() || keys.contains(&entry.name))
            {
                continue;
            }
            latest.insert(
                entry.name.as_str(),
                StatusValue {
                    key: entry.name.clone(),
                    value: entry.value.clone(),
                    set_at_ms: entry.committed_at_ms,
                    history_index: index as u64,
                },
            );
        }
        latest.into_values().collect()
    }
}
