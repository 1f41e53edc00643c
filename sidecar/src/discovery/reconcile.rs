//! The membership reconciler, on every node: the leader removes members
//! whose pod is gone, and a pod that joined opens its readiness gate
//! (`gate.rs`) when the membership allows it.
//!
//! When a member goes missing from the view, the watches list again first:
//! absence counts only from a list made after the member was missed, never
//! from a watch that may have stalled (a member that joined after the
//! leader's watch went silent would otherwise look gone). Then:
//! - a member seen with its own pod that is now deleted, whose address is
//!   not a stable DNS name (a Deployment's pod: it never comes back under
//!   the same identity), is removed at once;
//! - any other member is removed once gone for RAFTORAL_REMOVE_AFTER (a
//!   StatefulSet pod is recreated under its name and resumes as its
//!   member, and a pod that vanished without a trace may be an API
//!   problem).
//!
//! Absence is only counted while discovery is live: when the API server is
//! unreachable or a watch fails or stalls, every count restarts, so an
//! outage of the API never removes anyone. The engine refuses a removal
//! that would leave fewer live voters than a quorum; the reconciler logs
//! that and tries again later. New pods add themselves (they join as
//! learners and are promoted once caught up), so the reconciler never adds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raftoral::Node;
use tokio::time::Instant;

use super::Kubernetes;
use super::gate::{JoinGate, verdict};
use super::view::Peer;

/// How often the leader compares the membership with the pods.
const PERIOD: Duration = Duration::from_millis(500);

/// A member missing from the view.
struct Missing {
    /// Lists made when it was first missed; absence counts after a later one.
    lists: u64,
    /// When a list made after the miss confirmed it gone.
    confirmed: Option<Instant>,
}

/// Runs until the node shuts down.
pub async fn reconcile(mut discovery: Kubernetes, node: Node, gate: Option<JoinGate>) {
    let mut stop = node.shutdown_signal();
    let mut missing: BTreeMap<u64, Missing> = BTreeMap::new();
    // Members seen with a pod of their own id in a live view.
    let mut seen: BTreeSet<u64> = BTreeSet::new();
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
        let members: Vec<u64> = status
            .voters
            .iter()
            .chain(status.learners.iter())
            .copied()
            .collect();
        let addresses: BTreeMap<u64, String> = node
            .members()
            .into_iter()
            .map(|m| (m.node_id, m.address))
            .collect();
        let presence = Presence::new(&peers, &members, &addresses, &discovery.dns_suffix);
        seen.extend(members.iter().filter(|id| peers.contains_key(id)));
        if let Some(gate) = &gate {
            gate.update(verdict(node.id(), &status.voters, |v| presence.live(v)));
        }
        if status.leader_id != node.id() {
            missing.clear();
            continue;
        }
        missing.retain(|id, _| members.contains(id) && !presence.present(*id));
        seen.retain(|id| members.contains(id));
        let lists = discovery.lists();
        let now = Instant::now();
        for id in members {
            if presence.present(id) {
                continue;
            }
            let miss = missing.entry(id).or_insert_with(|| {
                tracing::info!(member = id, remove_after = ?discovery.remove_after, "member's pod is missing from the view; listing again to confirm");
                discovery.request_relist();
                Missing {
                    lists,
                    confirmed: None,
                }
            });
            if lists <= miss.lists {
                continue;
            }
            let confirmed = *miss.confirmed.get_or_insert_with(|| {
                tracing::info!(
                    member = id,
                    "a fresh list confirms the member's pod is gone"
                );
                now
            });
            let deleted = seen.contains(&id) && !presence.stable(id);
            if !deleted && now.duration_since(confirmed) < discovery.remove_after {
                continue;
            }
            match node.remove_node(id, false).await {
                Ok(members) => {
                    let ids: Vec<u64> = members.iter().map(|m| m.node_id).collect();
                    let why = if deleted {
                        "its pod was deleted"
                    } else {
                        "its pod is gone"
                    };
                    tracing::info!(member = id, gone_for = ?now.duration_since(confirmed), members = ?ids, "removed a member: {why}");
                    missing.remove(&id);
                    seen.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(member = id, error = %e, "did not remove the member whose pod is gone; trying again later");
                }
            }
        }
    }
}

/// Which members have a pod, as one view shows it.
struct Presence<'a> {
    peers: &'a BTreeMap<u64, Peer>,
    addresses: &'a BTreeMap<u64, String>,
    dns_suffix: &'a str,
    /// Stable DNS names that pods in the view have.
    names: BTreeSet<&'a str>,
    /// Addresses of members present with a pod of their own id.
    claimed: BTreeSet<&'a str>,
}

impl<'a> Presence<'a> {
    fn new(
        peers: &'a BTreeMap<u64, Peer>,
        members: &[u64],
        addresses: &'a BTreeMap<u64, String>,
        dns_suffix: &'a str,
    ) -> Presence<'a> {
        // Only DNS names count: a pod IP can be given to another pod.
        let names = peers
            .values()
            .filter_map(|p| p.address.as_deref())
            .filter(|a| a.contains(dns_suffix))
            .collect();
        let claimed = members
            .iter()
            .filter(|id| peers.contains_key(id))
            .filter_map(|id| addresses.get(id).map(String::as_str))
            .collect();
        Presence {
            peers,
            addresses,
            dns_suffix,
            names,
            claimed,
        }
    }

    /// The member's pod is in the view: one with its id, or (a StatefulSet
    /// pod recreated with a new UID, resuming from its disk) one at its
    /// stable name that no other member has its own pod at (a pod
    /// recreated with an empty volume is a new member at the old name).
    fn present(&self, id: u64) -> bool {
        self.peers.contains_key(&id)
            || self.addresses.get(&id).is_some_and(|a| {
                self.names.contains(a.as_str()) && !self.claimed.contains(a.as_str())
            })
    }

    /// Present with a pod not known to be unready.
    fn live(&self, id: u64) -> bool {
        match self.peers.get(&id) {
            Some(peer) => peer.ready,
            None => self.present(id),
        }
    }

    /// The member's address is a stable DNS name (a StatefulSet pod).
    fn stable(&self, id: u64) -> bool {
        self.addresses
            .get(&id)
            .is_some_and(|a| a.contains(self.dns_suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, address: &str) -> (u64, Peer) {
        (
            id,
            Peer {
                id,
                uid: format!("u{id}"),
                name: format!("p{id}"),
                created: None,
                address: Some(address.into()),
                ready: true,
            },
        )
    }

    #[test]
    fn a_pod_recreated_at_a_stable_name_with_an_empty_volume_is_not_its_old_member() {
        let suffix = "raftoral.ns.svc";
        let name = "app-0.raftoral.ns.svc:7001";
        // Member 1 was app-0; app-0 came back with a new UID (id 9).
        let peers: BTreeMap<u64, Peer> = [peer(9, name)].into();
        let mut addresses: BTreeMap<u64, String> = [(1, name.to_owned())].into();
        // Resumed from its volume: the pod's new id is no member; 1 is
        // present at its name.
        let presence = Presence::new(&peers, &[1], &addresses, suffix);
        assert!(presence.present(1));
        assert!(presence.stable(1));
        // Recreated empty: it joined as member 9 at the same name; 1 is
        // gone.
        addresses.insert(9, name.to_owned());
        let presence = Presence::new(&peers, &[1, 9], &addresses, suffix);
        assert!(presence.present(9));
        assert!(!presence.present(1));
    }

    #[test]
    fn a_deployment_pod_is_stable_by_nothing_and_unready_is_not_live() {
        let peers: BTreeMap<u64, Peer> = [peer(2, "10.0.0.2:7001")].into();
        let addresses: BTreeMap<u64, String> = [(2, "10.0.0.2:7001".to_owned())].into();
        let presence = Presence::new(&peers, &[2], &addresses, "raftoral.ns.svc");
        assert!(presence.present(2) && presence.live(2) && !presence.stable(2));
        let mut unready = peers.clone();
        unready.get_mut(&2).expect("peer").ready = false;
        let presence = Presence::new(&unready, &[2], &addresses, "raftoral.ns.svc");
        assert!(presence.present(2) && !presence.live(2));
    }
}
