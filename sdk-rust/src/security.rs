//! What the SDK presents to a protected sidecar: the app token
//! (`RAFTORAL_APP_TOKEN` on the sidecar) and TLS settings for an app API
//! served over TLS (an `https://` URL).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raftoral_client::{AppToken, ClientTls, RaftoralClient, StreamOptions};
//! let options = StreamOptions {
//!     token: Some(AppToken::new(std::env::var("RAFTORAL_APP_TOKEN")?)?),
//!     tls: Some(ClientTls::from_files("ca.crt", None)?),
//!     ..StreamOptions::default()
//! };
//! let client = RaftoralClient::connect_with("https://sidecar.example:9001", options).await?;
//! # Ok(()) }
//! ```

use std::path::Path;

use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::ClientError;

/// The bearer token sent on every call. Its `Debug` hides the value.
#[derive(Clone)]
pub struct AppToken(AsciiMetadataValue);

impl AppToken {
    /// A token; fails when it is empty or not printable ASCII (it travels
    /// in an HTTP header).
    pub fn new(token: impl AsRef<str>) -> Result<AppToken, ClientError> {
        let token = token.as_ref();
        let bad = |reason: &str| ClientError::Usage(format!("app token: {reason}"));
        if token.is_empty() {
            return Err(bad("it is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("it must be printable ASCII without spaces"));
        }
        let mut value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|_| bad("it cannot be sent as a header"))?;
        value.set_sensitive(true);
        Ok(AppToken(value))
    }

    pub(crate) fn header(&self) -> &AsciiMetadataValue {
        &self.0
    }
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppToken(<redacted>)")
    }
}

/// TLS to the sidecar's app API: the CA that signed its certificate, and a
/// client certificate when the sidecar requires one (`RAFTORAL_APP_TLS_CA`
/// on the sidecar).
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl ClientTls {
    /// TLS trusting the CA in `ca_pem` (PEM, one or more certificates).
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> ClientTls {
        ClientTls {
            ca_pem: ca_pem.into(),
            identity: None,
            domain: None,
        }
    }

    /// Presents this client certificate and key (PEM).
    pub fn with_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Checks this name in the sidecar's certificate instead of the URL's
    /// host.
    pub fn with_domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Reads the CA file and, when given, the client certificate and key
    /// files `(cert, key)`.
    pub fn from_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, ClientError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                ClientError::Usage(format!("cannot read TLS file {}: {e}", path.display()))
            })
        };
        let mut tls = ClientTls::new(read(ca.as_ref())?);
        if let Some((cert, key)) = identity {
            tls = tls.with_identity(read(cert)?, read(key)?);
        }
        Ok(tls)
    }

    pub(crate) fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

/// Adds the token to every call of a channel.
#[derive(Clone, Default)]
pub(crate) struct AddToken(pub Option<AppToken>);

impl tonic::service::Interceptor for AddToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.header().clone());
        }
        Ok(request)
    }
}
