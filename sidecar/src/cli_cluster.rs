//! `raftoral cluster ...`: status and membership from the command line.

use anyhow::Context;
use clap::{Args, Subcommand};
use raftoral_proto::cluster::v1::{
    ClusterStatusRequest, Member, MemberRole, RemoveNodeRequest, TransferLeaderRequest,
    cluster_service_client::ClusterServiceClient,
};
use serde_json::json;

/// `raftoral cluster` arguments.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Node-to-node address of any member (host:port).
    #[arg(
        long,
        env = "RAFTORAL_CLUSTER_ADDR",
        default_value = "127.0.0.1:7001",
        global = true
    )]
    addr: String,
    #[command(flatten)]
    tls: crate::tls_args::NodeTlsArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Members, leader, term and log positions as the addressed node sees them.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a node from the membership (it never rejoins with that id).
    /// Refused when the live voters left would be fewer than a quorum;
    /// removing the leader hands leadership over first.
    Remove {
        /// Id of the node to remove.
        node_id: u64,
        /// Remove it even if the cluster then cannot commit until enough
        /// of the remaining voters are back.
        #[arg(long)]
        force: bool,
    },
    /// Move leadership to another voter, e.g. before taking the leader down
    /// (`raftoral serve` also does this by itself on SIGTERM).
    TransferLeader {
        /// The voter that should lead; omit it to let the leader pick its
        /// most caught-up follower (then --addr must be the leader's).
        node_id: Option<u64>,
    },
    /// Offline, after a quorum is lost for good: make the stopped node
    /// whose storage is given the only voter of its cluster, keeping every
    /// workflow its log holds (see docs/OPERATIONS.md for what it can lose).
    /// Without --yes, only says what it would do. Then start that node,
    /// wipe the others' storage and let them join it.
    Recover {
        /// The stopped node's storage directory (its --storage-path).
        #[arg(long)]
        storage_path: std::path::PathBuf,
        /// Do it.
        #[arg(long)]
        yes: bool,
    },
}

fn role(m: &Member) -> &'static str {
    match m.role() {
        MemberRole::Leader => "leader",
        MemberRole::Follower => "follower",
        MemberRole::Learner => "learner",
        MemberRole::Unspecified => "unknown",
    }
}

/// Runs one `raftoral cluster` command.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    if let ClusterCommand::Recover { storage_path, yes } = &args.command {
        return recover(storage_path, *yes);
    }
    // Over mutual TLS the command presents the same kind of certificate as
    // a node: admin calls need one signed by the cluster's CA.
    let tls = match args.tls.files()? {
        Some(files) => Some(raftoral::consensus::tls::Tls::load(files)?),
        None => None,
    };
    let endpoint = raftoral::consensus::tls::cluster_endpoint(tls.as_deref(), &args.addr)?;
    let mut client = ClusterServiceClient::connect(endpoint)
        .await
        .with_context(|| format!("cannot connect to the node at {}", args.addr))?;
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    match args.command {
        ClusterCommand::Status { json } => {
            let s = client
                .cluster_status(ClusterStatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if json {
                let members: Vec<_> = s
                    .members
                    .iter()
                    .map(|m| json!({"id": m.node_id, "address": m.address, "role": role(m)}))
                    .collect();
                println!(
                    "{}",
                    json!({
                        "node": s.node_id,
                        "cluster_id": s.cluster_id,
                        "leader": s.leader_id,
                        "term": s.term,
                        "commit_index": s.commit_index,
                        "applied_index": s.applied_index,
                        "snapshot_index": s.snapshot_index,
                        "first_index": s.first_index,
                        "log_disk_bytes": s.log_disk_bytes,
                        "members": members,
                    })
                );
            } else {
                println!(
                    "cluster {}  node {}  leader {}  term {}  commit {}  applied {}  snapshot {}  first index {}  log on disk {} B",
                    s.cluster_id,
                    s.node_id,
                    s.leader_id,
                    s.term,
                    s.commit_index,
                    s.applied_index,
                    s.snapshot_index,
                    s.first_index,
                    s.log_disk_bytes
                );
                println!("{:>6}  {:<24}  role", "id", "address");
                for m in &s.members {
                    println!("{:>6}  {:<24}  {}", m.node_id, m.address, role(m));
                }
            }
        }
        ClusterCommand::Remove { node_id, force } => {
            let r = client
                .remove_node(RemoveNodeRequest { node_id, force })
                .await
                .map_err(status)?
                .into_inner();
            let ids: Vec<u64> = r.members.iter().map(|m| m.node_id).collect();
            println!("{}", json!({"removed": node_id, "members": ids}));
        }
        ClusterCommand::Recover { .. } => unreachable!("handled above: it needs no node"),
        ClusterCommand::TransferLeader { node_id } => {
            let r = client
                .transfer_leader(TransferLeaderRequest {
                    node_id: node_id.unwrap_or(0),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", json!({"leader": r.leader_id}));
        }
    }
    Ok(())
}

/// `raftoral cluster recover`: offline, on a stopped node's storage.
fn recover(dir: &std::path::Path, yes: bool) -> anyhow::Result<()> {
    let plan = raftoral::consensus::recovery::recover_alone(dir, !yes)?;
    let report = json!({
        "node": plan.node_id,
        "committed_before": plan.committed_before,
        "last_index": plan.last_index,
        "last_term": plan.last_term,
        "removed": plan.removed,
        "done": yes,
    });
    println!("{report}");
    if !yes {
        anyhow::bail!(
            "nothing changed: node {} would become the only voter, entries {}..={} counted as committed, members {:?} removed; compare last_index and last_term with the other nodes' storage, then re-run with --yes on the most advanced one",
            plan.node_id,
            plan.committed_before + 1,
            plan.last_index,
            plan.removed
        );
    }
    eprintln!(
        "node {} is now the only voter; start it, wipe the other nodes' storage and let them join it",
        plan.node_id
    );
    Ok(())
}
