use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

use super::*;

/// A CA and one certificate for `localhost` signed by it, as PEM.
fn ca_and_cert() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, (ca, cert, key): &(String, String, String)) -> TlsFiles {
    std::fs::write(dir.join("ca.crt"), ca).expect("write");
    std::fs::write(dir.join("tls.crt"), cert).expect("write");
    std::fs::write(dir.join("tls.key"), key).expect("write");
    TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca: Some(dir.join("ca.crt")),
        server_name: None,
    }
}

#[test]
fn missing_or_garbled_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("dir");
    let files = write(dir.path(), &ca_and_cert());
    let missing = TlsFiles {
        key: dir.path().join("nope.key"),
        ..files.clone()
    };
    let e = Tls::load(missing).expect_err("missing key").to_string();
    assert!(
        e.contains("cannot read the TLS key file") && e.contains("nope.key"),
        "{e}"
    );

    std::fs::write(&files.cert, "not a certificate").expect("write");
    let e = Tls::load(files.clone())
        .expect_err("garbled cert")
        .to_string();
    assert!(e.contains("no PEM CERTIFICATE block"), "{e}");

    // A key that does not belong to the certificate.
    let other = ca_and_cert();
    let files = write(dir.path(), &ca_and_cert());
    std::fs::write(&files.key, &other.2).expect("write");
    let e = Tls::load(files).expect_err("foreign key").to_string();
    assert!(e.contains("cannot be used together"), "{e}");
}

#[test]
fn a_reload_takes_changed_files_and_keeps_the_last_good_ones_on_error() {
    let dir = tempfile::tempdir().expect("dir");
    let files = write(dir.path(), &ca_and_cert());
    let tls = Tls::load(files.clone()).expect("load");
    let rotations = tls.rotations();
    let before = tls.server_config();
    assert!(!tls.reload().expect("unchanged"), "nothing changed");
    assert!(Arc::ptr_eq(&before, &tls.server_config()));

    write(dir.path(), &ca_and_cert());
    assert!(tls.reload().expect("rotated"));
    assert!(!Arc::ptr_eq(&before, &tls.server_config()));
    assert_eq!(*rotations.borrow(), 1);

    // Half a rotation (a broken key): an error, the previous material stays.
    let current = tls.server_config();
    std::fs::write(&files.key, "garbage").expect("write");
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&current, &tls.server_config()));
    assert_eq!(*rotations.borrow(), 1);
}

#[test]
fn node_to_node_tls_requires_a_ca() {
    let config = crate::NodeConfig {
        tls: Some(TlsFiles {
            cert: "tls.crt".into(),
            key: "tls.key".into(),
            ca: None,
            server_name: None,
        }),
        ..crate::NodeConfig::default()
    };
    let e = config.validate().expect_err("no CA").to_string();
    assert!(e.contains("RAFTORAL_TLS_CA"), "{e}");
}
