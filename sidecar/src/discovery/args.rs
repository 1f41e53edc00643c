//! The discovery flags of `raftoral serve` (`DiscoveryArgs`, part of
//! `ServeArgs`), kept apart from discovery itself so that the serve
//! configuration and discovery do not import each other.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Mode {
    /// RAFTORAL_PEERS (bootstrap) or RAFTORAL_JOIN.
    #[default]
    Static,
    /// The Kubernetes API: pods and EndpointSlices of a headless Service.
    Kubernetes,
}

/// Discovery settings of `raftoral serve` (a block of their own).
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// How peers are found: `static` (RAFTORAL_PEERS or --join) or
    /// `kubernetes` (the API server; needs RAFTORAL_SERVICE_NAME,
    /// RAFTORAL_POD_SELECTOR, RAFTORAL_BOOTSTRAP_EXPECT, POD_UID).
    #[arg(long, env = "RAFTORAL_DISCOVERY", value_enum, default_value_t = Mode::Static)]
    pub discovery: Mode,

    /// Headless Service (publishNotReadyAddresses: true) whose
    /// EndpointSlices give the peers' node-to-node addresses (its port
    /// named `raft`, or its first port).
    #[arg(long, env = "RAFTORAL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// Label selector of the pods that run raftoral (e.g.
    /// `app.kubernetes.io/name=ping-pong`): their UIDs and creation times
    /// decide identities and the bootstrap.
    #[arg(long, env = "RAFTORAL_POD_SELECTOR")]
    pub pod_selector: Option<String>,

    /// A member whose pod has been gone from the API this long is removed
    /// from the membership by the leader (never below quorum): `90s`,
    /// `5m`, `500ms`.
    #[arg(long, env = "RAFTORAL_REMOVE_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub remove_after: Duration,

    /// This pod's UID (downward API `metadata.uid`): the node id derives
    /// from it, so a replacement pod is a new member.
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,

    /// This pod's name (downward API `metadata.name`), for logs.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// This pod's IP (downward API `status.podIP`): the advertised host
    /// when listening on all interfaces.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<String>,

    /// Namespace to watch (downward API `metadata.namespace`); default:
    /// the service account's namespace file, then the kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
}

/// Parses `90s`, `5m`, `500ms`, `1h`.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{value}' has no unit: write e.g. 90s, 5m or 500ms"))?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{value}' does not start with a number: write e.g. 90s"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{value}': use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_millis(number.saturating_mul(millis)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("90").is_err());
        assert!(parse_duration("1d").is_err());
    }
}
