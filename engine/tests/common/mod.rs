//! Helpers shared by the engine's integration tests.

use std::collections::BTreeMap;

use tokio::net::TcpListener;

/// Binds `n` loopback listeners on port 0 first, so every node's peer list
/// holds real addresses that are already taken: (listeners, peers by id).
pub async fn bound_peers(
    n: u64,
) -> anyhow::Result<(BTreeMap<u64, TcpListener>, BTreeMap<u64, String>)> {
    let mut listeners = BTreeMap::new();
    for id in 1..=n {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
    }
    let peers = listeners
        .iter()
        .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
        .collect::<anyhow::Result<_>>()?;
    Ok((listeners, peers))
}
