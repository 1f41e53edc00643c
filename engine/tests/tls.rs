//! Embedded nodes over mutual TLS: the node-to-node server of
//! `EmbeddedNode` and the transport's outgoing streams both use
//! `NodeConfig::tls`; a client without a certificate gets nothing.

use std::time::Duration;

use raftoral::NodeConfig;
use raftoral::embedded::EmbeddedNode;
use raftoral::tls::TlsFiles;
use raftoral_client::{WorkflowError, checkpoint};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};

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
    let tls = raftoral::tls::Tls::load(files)?;
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
