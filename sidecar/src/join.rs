//! `serve --join`: asks a member to add this node, retrying until the cluster
//! answers.

use std::time::Duration;

use anyhow::{Context, bail};
use raftoral::Node;
use raftoral_proto::cluster::v1::{
    JoinClusterRequest, cluster_service_client::ClusterServiceClient,
};

/// Longest time to keep asking.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

/// Asks `seed` to add this node; returns once the membership includes it.
pub async fn join_cluster(node: &Node, seed: &str, advertise: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let endpoint = node.transport().endpoint(seed)?;
            let mut client = ClusterServiceClient::connect(endpoint)
                .await
                .with_context(|| format!("cannot reach the join address {seed}"))?;
            client
                .join_cluster(JoinClusterRequest {
                    node_id: node.id(),
                    address: advertise.to_owned(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))
        };
        match attempt.await {
            Ok(response) => {
                let members: Vec<u64> = response
                    .into_inner()
                    .members
                    .iter()
                    .map(|m| m.node_id)
                    .collect();
                tracing::info!(seed, ?members, "joined the cluster");
                return Ok(());
            }
            Err(e) if e.to_string().starts_with("AlreadyExists") => bail!("{e:#}"),
            Err(e) if tokio::time::Instant::now() > deadline => {
                bail!("gave up joining through {seed} after {JOIN_DEADLINE:?}: {e:#}")
            }
            Err(e) => {
                tracing::info!(seed, error = %format!("{e:#}"), retry_in = ?delay, "join not accepted yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
