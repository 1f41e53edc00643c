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
    /// False when the pod's `Ready` condition says `False` or `Unknown`
    /// (its container stopped answering, or its node is lost); true
    /// otherwise, also before the kubelet set any condition.
    pub ready: bool,
}

/// Joins pods and slices: every pod of the Service that has a UID and has
/// not ended is a peer, with the address its slice gives
/// (publishNotReadyAddresses makes a starting pod visible before it is
/// ready). A pod whose phase is `Failed` (an evicted pod, among others) or
/// `Succeeded` runs no container any more and is never coming back: the API
/// keeps its object, but it is no peer, so its member is removed like a
/// pod that is gone. An endpoint with a hostname (a
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
        .filter(|pod| !has_ended(pod))
        .filter_map(|pod| {
            let uid = pod.metadata.uid.clone()?;
            Some(Peer {
                id: node_id_for_uid(&uid),
                name: pod.metadata.name.clone().unwrap_or_default(),
                created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
                address: addresses.get(&uid).cloned(),
                ready: !known_unready(pod),
                uid,
            })
        })
        .map(|p| (p.id, p))
        .collect()
}

/// True when the pod's `Ready` condition is there and not `True`.
fn known_unready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

/// True for a pod in a terminal phase (`Failed`, `Succeeded`).
fn has_ended(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Failed" | "Succeeded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn endpoint(uid: &str, ip: &str, hostname: Option<&str>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            hostname: hostname.map(Into::into),
            target_ref: Some(ObjectReference {
                uid: Some(uid.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        }
    }

    #[test]
    fn addresses_come_from_the_raft_port_and_prefer_stable_names() {
        let slice = EndpointSlice {
            endpoints: Some(vec![
                endpoint("u1", "10.0.0.1", None),
                endpoint("u2", "10.0.0.2", Some("app-2")),
                endpoint("u3", "fd00::3", None),
            ]),
            ports: Some(vec![
                EndpointPort {
                    name: Some("metrics".into()),
                    port: Some(9090),
                    ..EndpointPort::default()
                },
                EndpointPort {
                    name: Some(RAFT_PORT_NAME.into()),
                    port: Some(7001),
                    ..EndpointPort::default()
                },
            ]),
            ..EndpointSlice::default()
        };
        let pods = [
            pod("a", "u1"),
            pod("b", "u2"),
            pod("c", "u3"),
            pod("d", "u4"),
        ];
        let peers = peers(&pods, [&slice], "svc.ns.svc");
        let address = |uid: &str| peers[&node_id_for_uid(uid)].address.clone();
        assert_eq!(address("u1").as_deref(), Some("10.0.0.1:7001"));
        assert_eq!(address("u2").as_deref(), Some("app-2.svc.ns.svc:7001"));
        assert_eq!(address("u3").as_deref(), Some("[fd00::3]:7001"));
        // A pod not in any slice yet is a peer without an address.
        assert_eq!(address("u4"), None);
        assert_eq!(peers.len(), 4);
    }

    /// Issue 25, defect 3: an evicted pod (phase Failed) keeps its object
    /// in the API but is no peer; a running or pending one is.
    #[test]
    fn evicted_and_finished_pods_are_no_peers() {
        use k8s_openapi::api::core::v1::PodStatus;
        let with_phase = |name: &str, uid: &str, phase: &str, reason: Option<&str>| Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                ..PodStatus::default()
            }),
            ..pod(name, uid)
        };
        let pods = [
            with_phase("a", "u1", "Running", None),
            with_phase("b", "u2", "Failed", Some("Evicted")),
            with_phase("c", "u3", "Succeeded", None),
            with_phase("d", "u4", "Pending", None),
            pod("e", "u5"),
        ];
        let found = peers(&pods, [], "svc.ns.svc");
        let mut names: Vec<&str> = found.values().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "d", "e"]);
    }
}
