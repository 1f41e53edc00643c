//! The membership reconciler: on the leader, members whose pod has been
//! gone from the API longer than RAFTORAL_REMOVE_AFTER are removed.
//!
//! Absence is only counted while discovery is live: when the API server is
//! unreachable or a watch fails, every count restarts, so an outage of the
//! API never removes anyone. The engine refuses a removal that would leave
//! fewer live voters than a quorum; the reconciler logs that and tries again
//! later. New pods add themselves (they join as learners and are promoted
//! once caught up), so the reconciler never adds.

use std::collections::BTreeMap;
use std::time::Duration;

use raftoral::Node;
use tokio::time::Instant;

use super::Kubernetes;

/// How often the leader compares the membership with the pods.
const PERIOD: Duration = Duration::from_millis(500);

/// Runs until the node shuts down.
pub async fn reconcile(mut discovery: Kubernetes, node: Node) {
    let mut stop = node.shutdown_signal();
    // Member id → when it was first missed while discovery was live.
    let mut missing: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut was_live = true;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = discovery.changed(PERIOD) => {}
        }
        let (peers, live) = discovery.view();
        if !live {
            if was_live && !missing.is_empty() {
                tracing::warn!(pending = ?missing.keys().collect::<Vec<_>>(), "discovery is not live: no member is removed until it is, and absence counts start again");
            } else if was_live {
                tracing::warn!(
                    "discovery is not live: the membership stays as it is until the API answers again"
                );
            }
            missing.clear();
            was_live = false;
            continue;
        }
        if !was_live {
            tracing::info!(pods = peers.len(), "discovery is live again");
            was_live = true;
        }
        let status = node.raft_status();
        if status.leader_id != node.id() {
            missing.clear();
            continue;
        }
        let members: Vec<u64> = status
            .voters
            .iter()
            .chain(status.learners.iter())
            .copied()
            .collect();
        // A member is present when a pod with its id is, or (a StatefulSet
        // pod recreated with a new UID, resuming from its disk) a pod with
        // its stable address.
        // Only DNS names count: a pod IP can be given to another pod.
        let addresses: std::collections::BTreeSet<String> = peers
            .values()
            .filter_map(|p| p.address.clone())
            .filter(|a| a.contains(&discovery.dns_suffix))
            .collect();
        let member_addresses: BTreeMap<u64, String> = node
            .members()
            .into_iter()
            .map(|m| (m.node_id, m.address))
            .collect();
        let present = |id: &u64| {
            peers.contains_key(id)
                || member_addresses
                    .get(id)
                    .is_some_and(|a| addresses.contains(a))
        };
        missing.retain(|id, _| members.contains(id) && !present(id));
        let now = Instant::now();
        for id in members {
            if present(&id) {
                continue;
            }
            let since = *missing.entry(id).or_insert_with(|| {
                tracing::info!(member = id, remove_after = ?discovery.remove_after, "member's pod is gone from the API; removing it if it stays gone");
                now
            });
            if now.duration_since(since) < discovery.remove_after {
                continue;
            }
            match node.remove_node(id, false).await {
                Ok(members) => {
                    let ids: Vec<u64> = members.iter().map(|m| m.node_id).collect();
                    tracing::info!(member = id, gone_for = ?now.duration_since(since), members = ?ids, "removed a member whose pod is gone");
                    missing.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(member = id, error = %e, "did not remove the member whose pod is gone; trying again later");
                }
            }
        }
    }
}
