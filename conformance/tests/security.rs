//! Security scenarios with real processes and certificates made in the test:
//! mutual TLS between nodes (strangers refused at the handshake, each
//! refusal logged by the refusing node), certificate rotation without a
//! restart, the app token, and the app listener's loopback rule.

use std::path::Path;

use raftoral_client::proto::cluster::v1::{
    ClusterStatusRequest, ClusterStatusResponse, RaftEnvelope, RaftRequest,
    cluster_service_client::ClusterServiceClient,
};
use raftoral_client::proto::sidecar::v1::{
    ListWorkflowsRequest, StartWorkflowRequest, WorkflowStreamRequest,
    app_service_client::AppServiceClient, workflow_service_client::WorkflowServiceClient,
};
use raftoral_client::{AppToken, ClientTls, RaftoralClient, StreamOptions, WorkflowError};
use raftoral_conformance::apps::{Apps, client};
use raftoral_conformance::certs::{Issued, TestCa, TlsDir};
use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::{DEADLINE, Sidecar, StepsInput, bin_dir, eventually, steps_sum};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Node flags: per-node certificate files (`{id}` is the node id), a plain
/// probe port, quick rotation checks and failover timeouts for tests.
fn tls_flags(base: &Path) -> Vec<String> {
    let file = |name: &str| base.join("tls{id}").join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file("tls.crt"),
        "--tls-key".into(),
        file("tls.key"),
        "--tls-ca".into(),
        file("ca.crt"),
        "--probe-listen".into(),
        "127.0.0.1:0".into(),
        "--tls-reload-ms".into(),
        "100".into(),
        "--owner-timeout-ms".into(),
        "1000".into(),
        "--app-timeout-ms".into(),
        "1000".into(),
    ]
}

/// A TLS client trusting `ca_pem`, presenting `identity` when given.
fn client_tls(ca_pem: &str, identity: Option<&Issued>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    match identity {
        Some(i) => config.identity(Identity::from_pem(&i.cert, &i.key)),
        None => config,
    }
}

/// ClusterStatus over TLS on a fresh connection; the error text on failure.
async fn status_over(addr: &str, tls: ClientTlsConfig) -> Result<ClusterStatusResponse, String> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(tls))
        .map_err(|e| e.to_string())?;
    let mut client = ClusterServiceClient::connect(endpoint)
        .await
        .map_err(|e| format!("{e:?}"))?;
    client
        .cluster_status(ClusterStatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{s:?}"))
}

/// `raftoral cluster ...` with `tls` files; (success, stdout + stderr).
async fn cluster_cli(addr: &str, tls: &TlsDir, command: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = tokio::process::Command::new(bin_dir().join("raftoral"))
        .args(["cluster", "--addr", addr])
        .args(tls.flags())
        .args(command)
        .env("RUST_LOG", "off")
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Waits until node `id` has logged a refused handshake whose line holds
/// `reason`.
async fn refusal_logged(cluster: &Cluster, id: u64, reason: &str) -> anyhow::Result<()> {
    eventually(
        DEADLINE,
        &format!("node {id} to log a refusal with '{reason}'"),
        || {
            cluster.log(id).lines().any(|l| {
                l.contains("connection refused at the TLS handshake") && l.contains(reason)
            })
        },
    )
    .await
}

#[tokio::test]
async fn an_mtls_cluster_runs_workflows_and_refuses_every_stranger() -> anyhow::Result<()> {
    let ca = TestCa::new("raftoral cluster")?;
    let other = TestCa::new("another cluster")?;
    let certs = tempfile::tempdir()?;
    for id in 1..=3 {
        TlsDir::write(
            &certs.path().join(format!("tls{id}")),
            &ca.issue(&format!("node{id}"))?,
            &ca.pem(),
        )?;
    }
    // Node 4 trusts the cluster's CA, but its own certificate comes from
    // another CA: the members must refuse it.
    TlsDir::write(
        &certs.path().join("tls4"),
        &other.issue("node4")?,
        &ca.pem(),
    )?;
    let admin = ca.issue("admin")?;
    let admin_dir = TlsDir::write(&certs.path().join("admin"), &admin, &ca.pem())?;
    let stranger = TlsDir::write(
        &certs.path().join("stranger"),
        &other.issue("x")?,
        &ca.pem(),
    )?;
    let expired = TlsDir::write(
        &certs.path().join("expired"),
        &ca.issue_expired("old-admin")?,
        &ca.pem(),
    )?;

    let flags = tls_flags(certs.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(3, false, &flags).await?;
    cluster.admin_tls = Some(client_tls(&ca.pem(), Some(&admin)));
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;

    // Workflows run across the mTLS cluster.
    let _apps = Apps::start(&cluster, &[]).await?;
    for node in 1..=3 {
        let c = client(&cluster, node).await?;
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(5, 0))
            .await?;
        let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
        assert_eq!(sum, steps_sum(5));
    }
    // Probes and metrics answer on the plain port, without a certificate.
    let probe = cluster.nodes[&1].probe_addr.clone().expect("probe address");
    let (code, body) = raftoral_conformance::http::http(&probe, "GET", "/ready").await?;
    assert_eq!(code, 200, "{body}");
    let leader_metric = raftoral_conformance::http::metric(&probe, "raftoral_node_ready").await?;
    assert!(leader_metric.is_some(), "metrics served on the probe port");

    let addr1 = cluster.nodes[&1].raft_addr.clone();
    // An admin with a certificate of the cluster's CA is let in...
    let (ok, out) = cluster_cli(&addr1, &admin_dir, &["status", "--json"]).await?;
    assert!(ok, "{out}");
    // ...one from another CA cannot remove a node or move leadership.
    let (ok, out) = cluster_cli(&addr1, &stranger, &["remove", "3", "--force"]).await?;
    assert!(!ok, "a stranger removed a node: {out}");
    let (ok, out) = cluster_cli(&addr1, &stranger, &["transfer-leader", "2"]).await?;
    assert!(!ok, "a stranger moved leadership: {out}");
    refusal_logged(&cluster, 1, "UnknownIssuer").await?;
    // Nor can an expired certificate of the right CA.
    let (ok, out) = cluster_cli(&addr1, &expired, &["status"]).await?;
    assert!(!ok, "an expired certificate was accepted: {out}");
    refusal_logged(&cluster, 1, "expired").await?;
    // Nor a client with no certificate, or one speaking plaintext.
    let err = status_over(&addr1, client_tls(&ca.pem(), None))
        .await
        .expect_err("a client without a certificate was served");
    assert!(!err.is_empty());
    refusal_logged(&cluster, 1, "peer sent no certificates").await?;
    let plain = ClusterServiceClient::connect(format!("http://{addr1}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.cluster_status(ClusterStatusRequest {}).await.is_err(),
    };
    assert!(refused, "a plaintext client was served");

    // A stranger cannot send Raft messages: the stream never opens.
    let (cert, key, _) = stranger.read()?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .identity(Identity::from_pem(cert, key));
    let endpoint = Endpoint::from_shared(format!("https://{addr1}"))?.tls_config(tls)?;
    let sent = match ClusterServiceClient::connect(endpoint).await {
        Err(_) => false,
        Ok(mut c) => {
            let batch = RaftRequest {
                from_node_id: 9,
                messages: vec![RaftEnvelope {
                    group_id: 0,
                    message: vec![].into(),
                }],
                from_address: "127.0.0.1:1".into(),
                cluster_id: String::new(),
            };
            c.raft(tokio_stream::iter(vec![batch])).await.is_ok()
        }
    };
    assert!(!sent, "a stranger opened a Raft stream");

    // Node 4 (another CA) cannot join: the seed refuses it at the handshake,
    // and the membership stays as it was.
    let unknown_issuer = |cluster: &Cluster| {
        cluster
            .log(1)
            .lines()
            .filter(|l| {
                l.contains("connection refused at the TLS handshake") && l.contains("UnknownIssuer")
            })
            .count()
    };
    let before = unknown_issuer(&cluster);
    cluster.join(4, 1, false).await?;
    eventually(DEADLINE, "node 1 to refuse node 4's join attempts", || {
        unknown_issuer(&cluster) >= before + 2
    })
    .await?;
    eventually(DEADLINE, "node 4 to see its join refused", || {
        cluster.log(4).contains("join not accepted yet")
    })
    .await?;
    let members: Vec<u64> = cluster
        .status(1)
        .await?
        .members
        .iter()
        .map(|m| m.node_id)
        .collect();
    assert_eq!(members, vec![1, 2, 3]);
    cluster.kill(4).await?;
    cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    Ok(())
}

/// Waits until node `id` has taken new TLS files into use `n` times.
async fn rotated(cluster: &Cluster, id: u64, n: usize) -> anyhow::Result<()> {
    eventually(
        DEADLINE,
        &format!("node {id} to rotate its TLS files ({n})"),
        || {
            cluster
                .log(id)
                .matches("TLS certificate files changed")
                .count()
                >= n
        },
    )
    .await
}

#[tokio::test]
async fn certificates_and_the_ca_rotate_on_disk_without_a_restart_or_an_election()
-> anyhow::Result<()> {
    let old = TestCa::new("old CA")?;
    let new = TestCa::new("new CA")?;
    let certs = tempfile::tempdir()?;
    let mut dirs = Vec::new();
    for id in 1..=3 {
        dirs.push(TlsDir::write(
            &certs.path().join(format!("tls{id}")),
            &old.issue(&format!("node{id}"))?,
            &old.pem(),
        )?);
    }
    let old_admin = old.issue("admin")?;
    let new_admin = new.issue("admin")?;
    let flags = tls_flags(certs.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(3, false, &flags).await?;
    cluster.admin_tls = Some(client_tls(&old.pem(), Some(&old_admin)));
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let term = cluster.status(leader).await?.term;
    let _apps = Apps::start(&cluster, &[]).await?;
    let c = client(&cluster, leader).await?;
    // A workflow that runs through the whole rotation.
    let long = c
        .start_workflow("steps", 1, &StepsInput::slow(60, 50))
        .await?;

    // 1. Every node trusts both CAs.
    let both = format!("{}{}", old.pem(), new.pem());
    for (i, dir) in dirs.iter().enumerate() {
        let (cert, key, _) = dir.read()?;
        let same = Issued {
            cert: String::from_utf8(cert)?,
            key: String::from_utf8(key)?,
        };
        dir.replace(&same, &both)?;
        rotated(&cluster, i as u64 + 1, 1).await?;
    }
    // 2. Each node gets a certificate of the new CA; new connections to it
    // present that one (a client trusting only the new CA gets in).
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        dir.replace(&new.issue(&format!("node{id}"))?, &both)?;
        rotated(&cluster, id, 2).await?;
        let addr = &cluster.nodes[&id].raft_addr;
        status_over(addr, client_tls(&new.pem(), Some(&new_admin)))
            .await
            .map_err(|e| anyhow::anyhow!("node {id} does not serve its new certificate: {e}"))?;
        // The cluster goes on committing between steps.
        let h = c
            .start_workflow("steps", 1, &StepsInput::slow(3, 0))
            .await?;
        let sum: u64 = tokio::time::timeout(DEADLINE, h.result()).await??;
        assert_eq!(sum, steps_sum(3));
    }
    // 3. The old CA is dropped: a client of the old CA is refused on new
    // connections, the new one gets in.
    for (i, dir) in dirs.iter().enumerate() {
        let (cert, key, _) = dir.read()?;
        let same = Issued {
            cert: String::from_utf8(cert)?,
            key: String::from_utf8(key)?,
        };
        dir.replace(&same, &new.pem())?;
        rotated(&cluster, i as u64 + 1, 3).await?;
    }
    for id in 1..=3 {
        let addr = &cluster.nodes[&id].raft_addr;
        let refused = status_over(addr, client_tls(&new.pem(), Some(&old_admin))).await;
        assert!(refused.is_err(), "node {id} still accepts the old CA");
        status_over(addr, client_tls(&new.pem(), Some(&new_admin)))
            .await
            .map_err(|e| anyhow::anyhow!("node {id}: {e}"))?;
    }
    refusal_logged(&cluster, 1, "UnknownIssuer").await?;
    cluster.admin_tls = Some(client_tls(&new.pem(), Some(&new_admin)));
    let leader_after = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let sum: u64 = tokio::time::timeout(DEADLINE * 2, long.result()).await??;
    assert_eq!(sum, steps_sum(60));
    // Quorum was never lost: no election happened during the rotation.
    assert_eq!(leader_after, leader);
    assert_eq!(cluster.status(leader).await?.term, term, "an election ran");
    Ok(())
}

#[tokio::test]
async fn the_app_token_guards_every_call_and_a_refused_call_starts_nothing() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--app-token", "s3cret-token"]).await?;
    let channel = Endpoint::from_shared(sidecar.url.clone())?
        .connect()
        .await?;
    let with = |token: Option<&'static str>| {
        move |mut r: tonic::Request<()>| {
            if let Some(t) = token {
                r.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {t}").parse().expect("header"),
                );
            }
            Ok(r)
        }
    };
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let mut raw = WorkflowServiceClient::with_interceptor(channel.clone(), with(token));
        let err = raw
            .start_workflow(StartWorkflowRequest {
                workflow_id: format!("w-{}", token.unwrap_or("none")),
                workflow_name: "anything".into(),
                version: 1,
                input: b"null".to_vec().into(),
                ..Default::default()
            })
            .await
            .expect_err("started without the right token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        let mut app = AppServiceClient::with_interceptor(channel.clone(), with(token));
        let err = app
            .workflow_stream(tokio_stream::iter(Vec::<WorkflowStreamRequest>::new()))
            .await
            .expect_err("app stream opened without the right token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    }
    // Through the SDK: no token is refused, the right one works.
    let anonymous = RaftoralClient::connect(&sidecar.url).await?;
    let Err(err) = anonymous.start_workflow("echo", 1, &"x").await else {
        anyhow::bail!("the SDK started a workflow without a token");
    };
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");

    let options = StreamOptions {
        token: Some(AppToken::new("s3cret-token")?),
        ..StreamOptions::default()
    };
    let app = RaftoralClient::connect_with(&sidecar.url, options).await?;
    let listed = app.list_workflows(ListWorkflowsRequest::default()).await?;
    assert!(
        listed.workflows.is_empty(),
        "a refused call started {:?}",
        listed.workflows
    );
    app.register_workflow("echo", 1).await?;
    let worker = app.clone();
    tokio::spawn(async move {
        worker
            .handle_workflows(|req| async move {
                let input: String = req.input()?;
                Ok::<_, WorkflowError>(serde_json::to_vec(&input)?)
            })
            .await
    });
    let out: String = tokio::time::timeout(
        DEADLINE,
        app.start_workflow("echo", 1, "hi").await?.result(),
    )
    .await??;
    assert_eq!(out, "hi");
    assert!(sidecar.log().contains("app API call refused"));

    // The CLI takes the token from the same variable.
    let cli = |token: Option<&str>| {
        let mut command = tokio::process::Command::new(bin_dir().join("raftoral"));
        command
            .args(["workflow", "--addr", &sidecar.url, "list"])
            .env_remove("RAFTORAL_APP_TOKEN")
            .env("RUST_LOG", "off");
        if let Some(t) = token {
            command.env("RAFTORAL_APP_TOKEN", t);
        }
        command.output()
    };
    assert!(cli(Some("s3cret-token")).await?.status.success());
    let refused = cli(None).await?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"));
    Ok(())
}

#[tokio::test]
async fn the_app_api_over_tls_with_a_token_works_through_the_sdk() -> anyhow::Result<()> {
    let ca = TestCa::new("app CA")?;
    let dir = tempfile::tempdir()?;
    let files = TlsDir::write(dir.path(), &ca.issue("sidecar")?, &ca.pem())?;
    let path = |n: &str| files.dir.join(n).display().to_string();
    let sidecar = Sidecar::start(&[
        "--app-tls-cert",
        &path("tls.crt"),
        "--app-tls-key",
        &path("tls.key"),
        "--app-token",
        "tok",
    ])
    .await?;
    let url = sidecar.url.replace("http://", "https://");
    let options = StreamOptions {
        token: Some(AppToken::new("tok")?),
        tls: Some(ClientTls::new(ca.pem())),
        ..StreamOptions::default()
    };
    let app = RaftoralClient::connect_with(&url, options).await?;
    let started = app.start_workflow("nobody_runs_this", 1, &()).await?;
    let info = app.get_workflow(started.workflow_id()).await?;
    assert_eq!(info.workflow_id, started.workflow_id());
    // Plaintext to the TLS port fails; so does TLS trusting another CA.
    let plain = RaftoralClient::connect(&sidecar.url).await;
    let plain_failed = match plain {
        Err(_) => true,
        Ok(c) => c.get_workflow(started.workflow_id()).await.is_err(),
    };
    assert!(plain_failed, "plaintext reached the TLS app API");
    let wrong = StreamOptions {
        token: Some(AppToken::new("tok")?),
        tls: Some(ClientTls::new(TestCa::new("other")?.pem())),
        ..StreamOptions::default()
    };
    assert!(RaftoralClient::connect_with(&url, wrong).await.is_err());
    Ok(())
}

async fn serve_fails(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(bin_dir().join("raftoral"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "off")
            .output(),
    )
    .await??;
    assert!(!out.status.success(), "serve {args:?} should fail");
    Ok(String::from_utf8(out.stderr)?)
}

#[tokio::test]
async fn unsafe_listener_settings_refuse_to_start_with_one_clear_line() -> anyhow::Result<()> {
    // The app API beyond loopback without TLS.
    let e = serve_fails(&["--sidecar-listen", "0.0.0.0:0"]).await?;
    assert!(
        e.contains(
            "--sidecar-listen 0.0.0.0:0 is not a loopback address and the app API has no TLS"
        ),
        "{e}"
    );
    assert!(e.contains("--app-insecure"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let base = ["--sidecar-listen", "127.0.0.1:0"];
    // Half the TLS settings.
    let e = serve_fails(&[&base[..], &["--tls-cert", "/nonexistent/tls.crt"]].concat()).await?;
    assert!(e.contains("needs all three of RAFTORAL_TLS_CERT"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // TLS without a probe port.
    let tls = [
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
        "--tls-ca",
        "/nonexistent/ca.crt",
    ];
    let e = serve_fails(&[&base[..], &tls[..]].concat()).await?;
    assert!(e.contains("set --probe-listen"), "{e}");
    // Files that are not there.
    let e =
        serve_fails(&[&base[..], &tls[..], &["--probe-listen", "127.0.0.1:0"]].concat()).await?;
    assert!(
        e.contains("cannot read the TLS certificate file /nonexistent/tls.crt"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // Plaintext allowed but still no credentials asked: refused too.
    let e = serve_fails(&["--sidecar-listen", "0.0.0.0:0", "--app-insecure"]).await?;
    assert!(
        e.contains("the app API asks callers for no credentials"),
        "{e}"
    );
    assert!(e.contains("--app-unauthenticated"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // With the explicit flags it starts, and warns once for each.
    let open = Sidecar::start_on("0.0.0.0:0", &["--app-insecure", "--app-unauthenticated"]).await?;
    for warning in [
        "app API open beyond loopback without TLS",
        "app API open beyond loopback without authentication",
    ] {
        let count = open.log().lines().filter(|l| l.contains(warning)).count();
        assert_eq!(count, 1, "{warning}: {}", open.log());
    }
    // A token is authentication enough: no flag, no warning.
    let with_token =
        Sidecar::start_on("0.0.0.0:0", &["--app-insecure", "--app-token", "tok"]).await?;
    assert!(
        !with_token.log().contains("without authentication"),
        "{}",
        with_token.log()
    );
    Ok(())
}

/// A server certificate encrypts the app API but proves nothing about the
/// caller: beyond loopback without a token or client certificates the
/// sidecar refuses to start unless told the exposure is wanted.
#[tokio::test]
async fn an_app_api_with_tls_but_no_credentials_beyond_loopback_needs_a_flag() -> anyhow::Result<()>
{
    let ca = TestCa::new("app CA")?;
    let dir = tempfile::tempdir()?;
    let files = TlsDir::write(dir.path(), &ca.issue("sidecar")?, &ca.pem())?;
    let path = |n: &str| files.dir.join(n).display().to_string();
    let cert = [
        "--app-tls-cert",
        &path("tls.crt"),
        "--app-tls-key",
        &path("tls.key"),
    ];
    let e = serve_fails(&[&["--sidecar-listen", "0.0.0.0:0"][..], &cert[..]].concat()).await?;
    assert!(
        e.contains("the app API asks callers for no credentials"),
        "{e}"
    );
    assert!(
        e.contains("--app-token") && e.contains("--app-tls-ca"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // Client certificates are credentials.
    let ca_file = path("ca.crt");
    let mutual = Sidecar::start_on(
        "0.0.0.0:0",
        &[&cert[..], &["--app-tls-ca", &ca_file]].concat(),
    )
    .await?;
    assert!(
        !mutual.log().contains("without authentication"),
        "{}",
        mutual.log()
    );
    // The explicit flag: it starts and warns once.
    let open = Sidecar::start_on(
        "0.0.0.0:0",
        &[&cert[..], &["--app-unauthenticated"]].concat(),
    )
    .await?;
    let count = open
        .log()
        .lines()
        .filter(|l| l.contains("app API open beyond loopback without authentication"))
        .count();
    assert_eq!(count, 1, "{}", open.log());
    Ok(())
}
