//! The peers discovery sees: pods (identity, creation time) joined with the
//! EndpointSlices of the headless Service (node-to-node addresses).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

use super::identity::node_id_for_uid;

/// Name of the Service port that carries node-to-node traffic; a slice
/// without it uses its first port.
pub const RAFT_PORT_NAME: &str = "raft";

/// One pod that may be a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Raft node id (from the pod UID).
    pub id: u64,
    /// Pod UID.
    pub uid: String,
    /// Pod name, for logs.
    pub name: String,
    /// When the API server created the pod (orders the bootstrap).
    pub created: Option<Timestamp>,
    /// `HOST:PORT` for node-to-node traffic, once an EndpointSlice lists it.
    pub address: Option<String>,
}

/// Joins pods and slices: every pod of the Service that has a UID is a
/// peer, with the address its slice gives (publishNotReadyAddresses makes a
/// starting pod visible before it is ready). An endpoint with a hostname (a
/// StatefulSet pod) is addressed by its stable DNS name
/// `HOSTNAME.{dns_suffix}`, other endpoints by IP. Keyed by node id.
pub fn peers<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    dns_suffix: &str,
) -> BTreeMap<u64, Peer> {
    let mut addresses: BTreeMap<String, String> = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some(RAFT_PORT_NAME))
            .or_else(|| ports.first())
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in slice.endpoints.iter().flatten() {
            let uid = endpoint.target_ref.as_ref().and_then(|r| r.uid.clone());
            if let (Some(uid), Some(host)) = (uid, endpoint.addresses.first()) {
                let host = if let Some(name) = &endpoint.hostname {
                    format!("{name}.{dns_suffix}")
                } else if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                addresses.insert(uid, format!("{host}:{port}"));
            }
        }
    }
    pods.into_iter()
        .filter_map(|pod| {
            let uid = pod.metadata.uid.clone()?;
            Some(Peer {
                id: node_id_for_uid(&uid),
                name: pod.metadata.name.clone().unwrap_or_default(),
                created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
                address: addresses.get(&uid).cloned(),
                uid,
            })
        })
        .map(|p| (p.id, p))
        .collect()
}
