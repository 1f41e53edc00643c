//! TLS for the node-to-node port (mutual TLS) and the app API: the
//! certificate, key and CA files, re-read when they change, and the rustls
//! configurations built from them.
//!
//! The server side runs its own acceptor ([`incoming`]) instead of tonic's
//! fixed TLS settings, for two reasons: a rotated certificate must apply to
//! the next connection without a restart, and every refused handshake (no
//! certificate, another CA, expired) must be logged on the refusing node
//! with the reason. The client side builds a tonic endpoint from the current
//! files at each connection ([`Tls::endpoint`]), so reconnects pick up a
//! rotation too. rustls uses the ring provider; nothing links OpenSSL.
//!
//! Imports nothing of the engine: the transport, the API servers and
//! embedded mode use it.

mod incoming;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

pub use incoming::incoming;

/// How often the files are checked for a change by default. Reading three
/// small files costs nothing next to a connection; a Kubernetes Secret
/// update reaches the pod's volume within a minute anyway.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Where the TLS material lives (PEM files, as cert-manager writes them to
/// a mounted Secret: `tls.crt`, `tls.key`, `ca.crt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA bundle peers' certificates must chain to. Required for the
    /// node-to-node port (every peer presents a certificate signed by it);
    /// optional for the app API, where it makes client certificates
    /// mandatory.
    pub ca: Option<PathBuf>,
    /// The name checked in the certificate of a node this one connects to.
    /// `None` checks the host of the address (a DNS name or an IP address
    /// that must appear in the peer's certificate); set it when nodes are
    /// addressed by pod IP and their certificates carry a shared DNS name.
    pub server_name: Option<String>,
}

/// Why TLS material could not be used. The node keeps the last good
/// material when a rotated file is bad, and says so in the log.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {}: {source}; check the path and its permissions", path.display())]
    Read {
        /// certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("the TLS {what} file {} is not usable: {reason}", path.display())]
    Parse {
        /// certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The pieces do not make a TLS configuration (e.g. the key does not
    /// belong to the certificate).
    #[error("the TLS certificate {} and key {} cannot be used together: {reason}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' explanation.
        reason: String,
    },
    /// An address a TLS connection cannot be made to.
    #[error("invalid address '{address}' for a TLS connection: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
}

/// One consistent set of loaded files and what was built from them.
struct Material {
    /// The raw file contents, to tell a change from a re-read.
    raw: [Vec<u8>; 3],
    server: Arc<rustls::ServerConfig>,
}

/// TLS material that follows its files: [`Tls::reload`] (or the task of
/// [`Tls::watch`]) swaps in new material when a file changed, and every
/// connection made afterwards uses it. Connections already open keep the
/// material they were made with, as TLS does.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Material>>,
    /// Bumped at each rotation: outgoing peer streams reconnect on it.
    rotations: watch::Sender<u64>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the files; fails with the file and the reason when one is
    /// missing or unusable.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let material = build(&files, read_all(&files)?)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(material)),
            rotations: watch::channel(0).0,
        }))
    }

    /// The files this material comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads the files; returns `Ok(true)` when they changed and the new
    /// material is in use, `Ok(false)` when nothing changed. On an error the
    /// previous material stays in use (a half-written rotation is retried
    /// at the next check).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let raw = read_all(&self.files)?;
        if self.material().raw == raw {
            return Ok(false);
        }
        let material = build(&self.files, raw)?;
        *self.current.write().expect("tls lock") = Arc::new(material);
        self.rotations.send_modify(|n| *n += 1);
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed; new connections use them");
        Ok(true)
    }

    /// Checks the files every `every` until `shutdown` turns true.
    pub fn watch(self: &Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let Some(tls) = tls.upgrade() else { return };
                if let Err(e) = tls.reload() {
                    tracing::warn!(error = %e, "rotated TLS files not usable yet; still serving the previous certificate");
                }
            }
        });
    }

    /// Changes each time new material is taken into use.
    pub fn rotations(&self) -> watch::Receiver<u64> {
        self.rotations.subscribe()
    }

    /// The rustls server configuration for the next accepted connection.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.material().server.clone()
    }

    /// A tonic endpoint for `address` (`host:port`) over TLS with the
    /// current files: this node's certificate as client identity, the CA
    /// bundle to check the server. Build one per connection attempt so that
    /// a rotation applies to reconnects.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, TlsError> {
        let material = self.material();
        let [cert, key, ca] = &material.raw;
        let mut config = ClientTlsConfig::new().identity(Identity::from_pem(cert, key));
        if self.files.ca.is_some() {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some(name) = &self.files.server_name {
            config = config.domain_name(name.clone());
        }
        let invalid = |reason: String| TlsError::Address {
            address: address.to_owned(),
            reason,
        };
        Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| invalid(e.to_string()))?
            .tls_config(config)
            .map_err(|e| invalid(e.to_string()))
    }

    fn material(&self) -> Arc<Material> {
        self.current.read().expect("tls lock").clone()
    }
}

/// A tonic endpoint for a node's node-to-node `address`: over mutual TLS
/// when `tls` is set, plain HTTP/2 otherwise.
pub fn cluster_endpoint(tls: Option<&Tls>, address: &str) -> Result<Endpoint, TlsError> {
    match tls {
        Some(tls) => tls.endpoint(address),
        None => Endpoint::from_shared(format!("http://{address}")).map_err(|e| TlsError::Address {
            address: address.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn read_all(files: &TlsFiles) -> Result<[Vec<u8>; 3], TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert = read("certificate", &files.cert)?;
    let key = read("key", &files.key)?;
    let ca = match &files.ca {
        Some(path) => read("CA", path)?,
        None => Vec::new(),
    };
    Ok([cert, key, ca])
}

fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let parse = |reason: String| TlsError::Parse {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(e.to_string()))?;
    if certs.is_empty() {
        return Err(parse("it holds no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn build(files: &TlsFiles, raw: [Vec<u8>; 3]) -> Result<Material, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("certificate", &files.cert, &raw[0])?;
    let key = PrivateKeyDer::from_pem_slice(&raw[1]).map_err(|e| TlsError::Parse {
        what: "key",
        path: files.key.clone(),
        reason: format!("{e} (expected a PEM PRIVATE KEY block)"),
    })?;
    let config_error = |reason: String| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?;
    let builder = match &files.ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("CA", path, &raw[2])? {
                roots.add(ca).map_err(|e| TlsError::Parse {
                    what: "CA",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Parse {
                    what: "CA",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| config_error(e.to_string()))?;
    // gRPC needs HTTP/2; a client that cannot speak it fails the handshake.
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Material {
        raw,
        server: Arc::new(server),
    })
}
