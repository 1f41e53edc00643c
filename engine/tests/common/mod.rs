//! Helpers shared by the engine's integration tests (each test crate uses
//! a subset, hence the allow).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

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

/// Polls `check` every 10 ms until it holds; panics after 30 s naming `what`.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tick.tick().await;
    }
}
