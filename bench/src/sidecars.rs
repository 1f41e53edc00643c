//! Clusters of real `raftoral serve` processes on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftoral::consensus::tls::{Tls, TlsFiles};
use raftoral_client::proto::cluster::v1::{
    ClusterStatusRequest, cluster_service_client::ClusterServiceClient,
};
use raftoral_conformance::certs::{TestCa, TlsDir};
use tokio::process::{Child, Command};

/// A CA and one certificate (for 127.0.0.1, server and client use) that
/// every node of a bench cluster presents, written under `dir/tls`.
pub fn cluster_certs(dir: &Path) -> anyhow::Result<TlsFiles> {
    let ca = TestCa::new("bench CA")?;
    let files = TlsDir::write(&dir.join("tls"), &ca.issue("bench node")?, &ca.pem())?;
    Ok(TlsFiles {
        cert: files.dir.join("tls.crt"),
        key: files.dir.join("tls.key"),
        ca: Some(files.dir.join("ca.crt")),
        server_name: None,
    })
}

/// Running sidecar processes of one cluster.
pub struct Sidecars {
    /// The processes by node id (killed on drop).
    pub processes: BTreeMap<u64, Child>,
    /// Client API URL (`http://host:port`) of each node's sidecar.
    pub urls: BTreeMap<u64, String>,
}

/// A free loopback port (the listener is closed before it is used).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `raftoral serve` for the nodes `ids` of the cluster `raft_addrs`
/// (every node's peer list is all of it) and waits for each to report its
/// sidecar address. `dir` holds the address files and, when
/// `durable`, each node's storage. With `RAFTORAL_BENCH_LOG_DIR` set, each
/// sidecar logs at `RUST_LOG` (default info) to a file there, to look into a
/// failed run; otherwise sidecars log nothing.
pub async fn spawn(
    raftoral_bin: &Path,
    dir: &Path,
    raft_addrs: &BTreeMap<u64, String>,
    ids: &[u64],
    durable: bool,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<Sidecars> {
    let peers: Vec<String> = raft_addrs
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    let log_dir = std::env::var_os("RAFTORAL_BENCH_LOG_DIR").map(PathBuf::from);
    if let Some(logs) = &log_dir {
        std::fs::create_dir_all(logs)?;
    }
    let mut processes = BTreeMap::new();
    let mut urls = BTreeMap::new();
    for (id, addr) in raft_addrs.iter().filter(|(id, _)| ids.contains(id)) {
        let addr_file = dir.join(format!("addr{id}.json"));
        let mut cmd = Command::new(raftoral_bin);
        cmd.arg("serve")
            .args([
                "--node-id",
                &id.to_string(),
                "--listen",
                addr,
                "--sidecar-listen",
                "127.0.0.1:0",
            ])
            .arg("--addr-file")
            .arg(&addr_file)
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &log_dir {
            Some(logs) => {
                // The temp dir's random name keeps clusters of one run apart.
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                let name = name.trim_start_matches('.');
                let file = std::fs::File::create(logs.join(format!("{name}-n{id}.log")))?;
                cmd.stderr(file).env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or("info".into()),
                );
            }
            None => {
                cmd.stderr(Stdio::null()).env("RUST_LOG", "warn");
            }
        }
        if raft_addrs.len() > 1 {
            cmd.args(["--peers", &peers.join(",")]);
        }
        if durable {
            cmd.arg("--storage-path").arg(dir.join(format!("n{id}")));
        }
        if let Some(tls) = tls {
            cmd.arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key)
                .args(
                    tls.ca
                        .iter()
                        .flat_map(|ca| [std::ffi::OsStr::new("--tls-ca"), ca.as_os_str()]),
                )
                .args(["--probe-listen", "127.0.0.1:0"]);
        }
        processes.insert(*id, cmd.spawn().context("spawn raftoral serve")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&addr_file) {
                break t;
            }
            if Instant::now() > deadline {
                bail!("sidecar {id} did not start");
            }
            poll.tick().await;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        urls.insert(
            *id,
            format!("http://{}", v["sidecar"].as_str().unwrap_or_default()),
        );
    }
    Ok(Sidecars { processes, urls })
}

/// The `raftoral` binary next to this one (same profile).
pub fn raftoral_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("raftoral");
    if !path.exists() {
        bail!(
            "{} is missing: build it first (`make bench` does)",
            path.display()
        );
    }
    Ok(path)
}

/// The leader known to the node whose node-to-node address is `addr`.
pub async fn leader_of(addr: &str) -> Option<u64> {
    leader_over(addr, None).await
}

/// [`leader_of`] over mutual TLS when `tls` is set.
pub async fn leader_over(addr: &str, tls: Option<&Tls>) -> Option<u64> {
    let endpoint = raftoral::consensus::tls::cluster_endpoint(tls, addr).ok()?;
    let mut c = ClusterServiceClient::connect(endpoint).await.ok()?;
    let s = c
        .cluster_status(ClusterStatusRequest {})
        .await
        .ok()?
        .into_inner();
    (s.leader_id != 0).then_some(s.leader_id)
}
