//! The bootstrap rule: which pods form a new cluster.
//!
//! Every pod derives the initial members the same way: the first
//! `RAFTORAL_BOOTSTRAP_EXPECT` pods in the order the API server created
//! them (creation time, then UID). Only those pods bootstrap, all with that
//! same member list (and so the same cluster id, a hash of the list); every
//! other pod only ever joins a cluster it has seen answer. Two clusters
//! would need two different lists, and the list is a function of the pod
//! set that every pod reads from the one API server. The settle time covers
//! the one gap: creation times have one-second resolution, so a pod created
//! in the same second as the last member could sort before it while not yet
//! listed; after a second of the same list, any such pod would be listed.

use std::time::Duration;

use super::view::Peer;

/// How long the derived list must stay the same before a pod acts on it:
/// above the one-second resolution of creation times.
pub const SETTLE: Duration = Duration::from_millis(1500);

/// The initial members, ordered, once `expect` pods with addresses are
/// visible; `None` while fewer are, or while one of the first `expect` has
/// no address yet.
pub fn initial_members<'a>(
    peers: impl IntoIterator<Item = &'a Peer>,
    expect: usize,
) -> Option<Vec<Peer>> {
    let mut all: Vec<&Peer> = peers.into_iter().collect();
    if expect == 0 || all.len() < expect {
        return None;
    }
    all.sort_by(|a, b| (a.created, &a.uid).cmp(&(b.created, &b.uid)));
    let first: Vec<Peer> = all.into_iter().take(expect).cloned().collect();
    first.iter().all(|p| p.address.is_some()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn peer(uid: &str, second: i64) -> Peer {
        Peer {
            id: super::super::identity::node_id_for_uid(uid),
            uid: uid.into(),
            name: uid.into(),
            created: Some(Timestamp::from_second(second).expect("time")),
            address: Some(format!("{uid}:7001")),
            ready: true,
        }
    }

    #[test]
    fn every_order_of_arrival_derives_the_same_members() {
        let pods = [peer("c", 10), peer("a", 11), peer("b", 10), peer("d", 12)];
        let expected: Vec<String> = ["b", "c", "a"].map(String::from).to_vec();
        for rotation in 0..pods.len() {
            let mut seen = pods.to_vec();
            seen.rotate_left(rotation);
            let members = initial_members(&seen, 3).expect("three visible");
            let uids: Vec<String> = members.into_iter().map(|p| p.uid).collect();
            assert_eq!(uids, expected);
        }
        assert_eq!(initial_members(&pods[..2], 3), None);
        let mut no_address = pods.to_vec();
        no_address[2].address = None;
        assert_eq!(initial_members(&no_address, 3), None);
    }
}
