//! Certificates made in the test (rcgen): a CA, node certificates signed by
//! it (valid for `localhost` and 127.0.0.1, for server and client use, as
//! cert-manager issues them with both usages), and expired ones.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// One certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: String,
    /// Its private key (PEM, PKCS#8).
    pub key: String,
}

/// The files of one node as cert-manager lays out a Secret:
/// `tls.crt`, `tls.key` and `ca.crt` in one directory.
pub struct TlsDir {
    /// The directory.
    pub dir: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate (PEM), what goes in `ca.crt`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` valid now.
    pub fn issue(&self, name: &str) -> anyhow::Result<Issued> {
        self.make(name, false)
    }

    /// A certificate for `name` that expired in 2020.
    pub fn issue_expired(&self, name: &str) -> anyhow::Result<Issued> {
        self.make(name, true)
    }

    fn make(&self, name: &str, expired: bool) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

impl TlsDir {
    /// Writes `issued` and the CA bundle `ca_pem` into `dir`.
    pub fn write(dir: &Path, issued: &Issued, ca_pem: &str) -> anyhow::Result<TlsDir> {
        std::fs::create_dir_all(dir)?;
        let tls = TlsDir {
            dir: dir.to_owned(),
        };
        tls.replace(issued, ca_pem)?;
        Ok(tls)
    }

    /// Replaces the files, each atomically (write + rename), as a Secret
    /// update replaces them.
    pub fn replace(&self, issued: &Issued, ca_pem: &str) -> anyhow::Result<()> {
        for (name, body) in [
            ("ca.crt", ca_pem),
            ("tls.key", issued.key.as_str()),
            ("tls.crt", issued.cert.as_str()),
        ] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, self.dir.join(name))?;
        }
        Ok(())
    }

    /// The `raftoral` flags that use these files for node-to-node TLS.
    pub fn flags(&self) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).display().to_string();
        vec![
            "--tls-cert".into(),
            path("tls.crt"),
            "--tls-key".into(),
            path("tls.key"),
            "--tls-ca".into(),
            path("ca.crt"),
        ]
    }

    /// (cert, key, CA) file contents, for a client in the test.
    pub fn read(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        Ok((
            std::fs::read(self.dir.join("tls.crt"))?,
            std::fs::read(self.dir.join("tls.key"))?,
            std::fs::read(self.dir.join("ca.crt"))?,
        ))
    }
}
