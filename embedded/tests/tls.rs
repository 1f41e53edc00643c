//! Embedded nodes over mutual TLS: the node-to-node server of
//! `EmbeddedNode` and the transport's outgoing streams both use
//! `NodeConfig::tls`; a client without a certificate gets nothing.

use std::time::Duration;

use raftoral::NodeConfig;
use raftoral::consensus::tls::TlsFiles;
use raftoral_client::{WorkflowError, checkpoint};
use raftoral_embedded::EmbeddedNode;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};

#[path = "../../engine/tests/common/mod.rs"]
mod common;
use common::until;

/// A CA and a certificate for 127.0.0.1 (server and client use), written
/// as `tls.crt`, `tls.key` and `ca.crt` in `dir`.
fn write_certs(dir: &std::path::Path) -> anyhow::Result<TlsFiles> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    std::fs::write(dir.join("tls.crt"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    std::fs::write(dir.join("ca.crt"), ca.pem())?;
    Ok(TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca: Some(dir.join("ca.crt")),
        server_name: None,
    })
}

#[tokio::test]
async fn embedded_nodes_over_mutual_tls_run_a_workflow_and_refuse_plaintext() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let files = write_certs(dir.path())?;
    let (listeners, peers) = common::bound_peers(3).await?;
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let config = NodeConfig {
            node_id: id,
            peers: peers.clone(),
            advertise: peers[&id].clone(),
            tls: Some(files.clone()),
            ..NodeConfig::default()
        };
        nodes.push(EmbeddedNode::start_on(config, Some(listener)).await?);
    }
    let first = nodes[0].node().clone();
    until("a leader over mTLS", || first.raft_status().leader_id != 0).await;

    let worker = nodes[1].client();
    worker.register_workflow("ping_pong", 1).await?;
    tokio::spawn(async move {
        worker
            .handle_workflows(|req| async move {
                let input: String = req.input()?;
                let ctx = req.context;
                let out: String = checkpoint!(ctx, "result", format!("{input}-pong"));
                Ok::<_, WorkflowError>(serde_json::to_vec(&out)?)
            })
            .await
    });
    let caller = nodes[2].client();
    let handle = caller.start_workflow("ping_pong", 1, "ping").await?;
    let out: String = tokio::time::timeout(Duration::from_secs(30), handle.result()).await??;
    assert_eq!(out, "ping-pong");

    // A plaintext client of the node-to-node port gets no answer.
    let plain =
        raftoral::proto::cluster::v1::cluster_service_client::ClusterServiceClient::connect(
            format!("http://{}", peers[&1]),
        )
        .await;
    let served = match plain {
        Err(_) => false,
        Ok(mut c) => c
            .cluster_status(raftoral::proto::cluster::v1::ClusterStatusRequest {})
            .await
            .is_ok(),
    };
    assert!(!served, "plaintext reached an mTLS node");
    // One with the cluster's certificate does.
    let tls = raftoral::consensus::tls::Tls::load(files)?;
    let mut admin =
        raftoral::proto::cluster::v1::cluster_service_client::ClusterServiceClient::connect(
            tls.endpoint(&peers[&1])?,
        )
        .await?;
    let status = admin
        .cluster_status(raftoral::proto::cluster::v1::ClusterStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.members.len(), 3);
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A node joining an mTLS cluster whose log was compacted gets the state
/// by a snapshot transfer, which runs over mutual TLS like every other
/// node-to-node call (a plaintext transfer would never reach it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_reaches_a_joining_node_over_mutual_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = write_certs(dir.path())?;
    let (mut listeners, peers) = common::bound_peers(2).await?;
    let config = |id: u64| NodeConfig {
        node_id: id,
        advertise: peers[&id].clone(),
        tick_interval: Duration::from_millis(20),
        storage_path: Some(dir.path().join(format!("node{id}"))),
        snapshot_entries: 50,
        snapshot_keep_entries: 10,
        snapshot_max_retained_entries: 10,
        tls: Some(files.clone()),
        ..NodeConfig::default()
    };
    let first = EmbeddedNode::start_on(
        NodeConfig {
            peers: peers
                .iter()
                .filter(|(id, _)| **id == 1)
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            ..config(1)
        },
        listeners.remove(&1),
    )
    .await?;
    let leader = first.node().clone();
    until("a leader over mTLS", || leader.raft_status().leader_id == 1).await;
    for i in 0..200 {
        leader
            .start_workflow(Some(format!("w{i}")), "nobody_runs_this", 1, "null".into())
            .await?;
    }
    until("the log compacted past the start", || {
        leader.raft_status().first_index > 1
    })
    .await;
    let joiner = EmbeddedNode::start_on(
        NodeConfig {
            join: true,
            ..config(2)
        },
        listeners.remove(&2),
    )
    .await?;
    leader.add_node(2, &peers[&2]).await?;
    let second = joiner.node().clone();
    until("the joiner to hold every workflow", || {
        second.read(|sm| sm.workflow_count() as usize) == 200
    })
    .await;
    assert!(
        second.snapshot_transfers().hooks().completed() >= 1,
        "the state came by a snapshot transfer"
    );
    joiner.shutdown().await;
    first.shutdown().await;
    Ok(())
}
