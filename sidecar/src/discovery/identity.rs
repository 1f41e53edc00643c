//! A node's identity under Kubernetes discovery: its Raft id comes from its
//! pod's UID, which Kubernetes never gives to another pod.

/// Ids stay below 2^53 so they are exact in JSON numbers read by
/// JavaScript (the Node SDK, dashboards).
const ID_MASK: u64 = (1 << 53) - 1;

/// The Raft node id of the pod with this UID: FNV-1a (64 bit) of the UID
/// text, kept to 53 bits, never 0. A replacement pod has a new UID and so a
/// new id; the engine refuses to reuse an id that was ever removed, so a
/// (vanishingly unlikely) collision fails loudly at join instead of mixing
/// two nodes.
///
/// ```ignore
/// assert_eq!(node_id_for_uid("a"), node_id_for_uid("a"));
/// ```
pub fn node_id_for_uid(uid: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash & ID_MASK).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_json_safe() {
        let a = node_id_for_uid("2f6b4c1e-6f0e-4f7a-9a55-0b7e6e1d2c3a");
        assert_eq!(a, node_id_for_uid("2f6b4c1e-6f0e-4f7a-9a55-0b7e6e1d2c3a"));
        assert_ne!(a, node_id_for_uid("2f6b4c1e-6f0e-4f7a-9a55-0b7e6e1d2c3b"));
        let ids: std::collections::BTreeSet<u64> = (0..10_000)
            .map(|i| node_id_for_uid(&format!("uid-{i}")))
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| *id >= 1 && *id <= ID_MASK));
    }
}
