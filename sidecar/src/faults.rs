//! Fault injection for tests of network partitions between real processes:
//! with `RAFTORAL_FAULT_FILE` set, the node drops all Raft traffic to and from
//! the peer ids listed in that file (whitespace or comma separated), re-read
//! every 50 ms. Unset (the default), nothing here runs.

use std::path::PathBuf;
use std::time::Duration;

use raftoral::Node;

/// Polls `path` and applies its peer list to the node's transport.
pub fn watch_fault_file(node: Node, path: PathBuf) {
    tracing::warn!(path = %path.display(), "fault injection enabled (RAFTORAL_FAULT_FILE): for tests only");
    tokio::spawn(async move {
        let mut stop = node.shutdown_signal();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut current = String::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == current {
                continue;
            }
            let blocked: Vec<u64> = text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter_map(|t| t.parse().ok())
                .collect();
            tracing::warn!(
                ?blocked,
                "fault injection: dropping traffic with these peers"
            );
            node.transport().faults().block(blocked);
            if text.contains("crash-raft-loop") {
                tracing::warn!("fault injection: the Raft loop panics at its next tick");
                node.transport().faults().crash_raft_loop();
            }
            current = text;
        }
    });
}
