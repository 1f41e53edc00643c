//! The node-to-node TLS settings shared by `raftoral serve` and
//! `raftoral cluster ...`: the same flags and environment variables, so an
//! admin command run in a node's pod finds the node's certificate.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use raftoral::consensus::tls::TlsFiles;

/// Mutual TLS on the node-to-node port.
#[derive(Debug, Clone, Args)]
pub struct NodeTlsArgs {
    /// Certificate (PEM, chain with the leaf first) presented on the
    /// node-to-node port, to peers and by admin commands. With --tls-key and
    /// --tls-ca it turns on mutual TLS; the files are re-read when they
    /// change.
    #[arg(long, env = "RAFTORAL_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "RAFTORAL_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that must have signed every node's and admin's
    /// certificate; connections without one are refused at the handshake.
    #[arg(long, env = "RAFTORAL_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Name checked in the certificate of the node dialled, instead of the
    /// host of its address: set it when nodes are addressed by pod IP and
    /// their certificates carry a shared DNS name.
    #[arg(long, env = "RAFTORAL_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
}

impl NodeTlsArgs {
    /// The files, when TLS is on; an error when only some are set.
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: Some(ca.clone()),
                server_name: self.tls_server_name.clone(),
            })),
            _ => bail!(
                "node-to-node TLS needs all three of RAFTORAL_TLS_CERT, RAFTORAL_TLS_KEY and RAFTORAL_TLS_CA (--tls-cert, --tls-key, --tls-ca); only some are set"
            ),
        }
    }
}
