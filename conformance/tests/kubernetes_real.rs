//! Kubernetes discovery against a real API server: `kube-apiserver` from
//! k8s.io/kubernetes over an embedded etcd (`conformance/kube-apiserver`,
//! built by `make kube-apiserver` into `.tools/`), RBAC on, the sidecars
//! reaching it with a ServiceAccount token bound to `k8s/base`'s Role. No
//! kubelet or controllers run: the test creates the pods and their
//! EndpointSlices and sets the pods' status, as they would.
//!
//! `make test` sets `RAFTORAL_KUBE_APISERVER` and `RAFTORAL_KUBECTL`; without
//! them (a plain `cargo test`) the test says so and does nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use raftoral_conformance::cluster::Cluster;
use raftoral_conformance::kubernetes::node_id_for_uid;
use raftoral_conformance::{DEADLINE, eventually_async};

const NAMESPACE: &str = "raftoral-real";
const SERVICE: &str = "ping-pong-raft";
const SELECTOR: &str = "app.kubernetes.io/name=ping-pong";
/// The ServiceAccount of `k8s/base/rbac.yaml`.
const ACCOUNT: &str = "ping-pong";
const ADMIN_TOKEN: &str = "raftoral-test-admin";

/// A running API server and the kubeconfig files to reach it.
struct RealApi {
    _server: tokio::process::Child,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
    admin: PathBuf,
    /// The API server's HTTPS port on 127.0.0.1.
    port: u16,
}

impl RealApi {
    /// Starts the API server, or None when the test is not configured.
    async fn start() -> anyhow::Result<Option<RealApi>> {
        let (Ok(server), Ok(kubectl)) = (
            std::env::var("RAFTORAL_KUBE_APISERVER"),
            std::env::var("RAFTORAL_KUBECTL"),
        ) else {
            eprintln!(
                "RAFTORAL_KUBE_APISERVER and RAFTORAL_KUBECTL are not set: not run (make test sets them)"
            );
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let key = rcgen::KeyPair::generate()?;
        std::fs::write(dir.path().join("sa.key"), key.serialize_pem())?;
        std::fs::write(dir.path().join("sa.pub"), key.public_key_pem())?;
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin,system:masters\n"),
        )?;
        let port = Cluster::pick_port()?;
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let child = tokio::process::Command::new(&server)
            .arg(path("etcd"))
            .arg(Cluster::pick_port()?.to_string())
            .arg(Cluster::pick_port()?.to_string())
            .args([
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={port}"),
                &format!("--cert-dir={}", path("certs")),
                &format!("--token-auth-file={}", path("tokens.csv")),
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--service-account-key-file={}", path("sa.pub")),
                &format!("--service-account-signing-key-file={}", path("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/24",
                // No controller manager creates the namespaces' default
                // ServiceAccount that admission would ask of every pod.
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let admin = dir.path().join("admin.kubeconfig");
        write_kubeconfig(&admin, port, ADMIN_TOKEN)?;
        let api = RealApi {
            _server: child,
            dir,
            kubectl: kubectl.into(),
            admin,
            port,
        };
        eventually_async(
            Duration::from_secs(90),
            "the API server to be ready",
            || async { Ok(api.kubectl(&["get", "--raw", "/readyz"]).await.is_ok()) },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", api.log()))?;
        Ok(Some(api))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// Runs kubectl as the cluster admin; its output, or an error with it.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_input(args, None).await
    }

    async fn kubectl_input(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.unwrap_or("").as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}

fn write_kubeconfig(path: &Path, port: u16, token: &str) -> anyhow::Result<()> {
    // The API server's serving certificate is self-signed (--cert-dir):
    // the test does not check it; the sidecars' RBAC is what it tests.
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: real\n  context:\n    cluster: real\n    user: u\n    namespace: {NAMESPACE}\ncurrent-context: real\nusers:\n- name: u\n  user:\n    token: {token}\n"
        ),
    )?;
    Ok(())
}

/// This machine's address on its default route: EndpointSlices refuse
/// loopback addresses, so the pods listen and are listed there.
fn host_ip() -> anyhow::Result<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // A documentation address: connecting a UDP socket sends nothing, it
    // only picks the source address the route to it would use.
    socket.connect("198.51.100.1:9")?;
    let ip = socket.local_addr()?.ip();
    anyhow::ensure!(
        !ip.is_loopback() && ip.is_ipv4(),
        "this machine has no IPv4 address besides loopback; the real API server test needs one"
    );
    Ok(ip.to_string())
}

/// One pod as the kubelet and the EndpointSlice controller would leave it:
/// the object, its status (Running, Ready, its IP), and its slice with the
/// raft port. Returns its UID.
async fn create_pod(api: &RealApi, name: &str, ip: &str, port: u16) -> anyhow::Result<String> {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "ping-pong"}},
        "spec": {"containers": [{"name": "raftoral", "image": "raftoral/raftoral:0.3.0"}]},
    });
    api.kubectl_input(&["apply", "-f", "-"], Some(&pod.to_string()))
        .await?;
    let uid = api
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await?;
    let status = serde_json::json!({"status": {
        "phase": "Running", "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    api.kubectl(&[
        "-n",
        NAMESPACE,
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])
    .await?;
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{SERVICE}-{name}"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": name, "namespace": NAMESPACE, "uid": uid}}],
        "ports": [{"name": "raft", "port": port, "protocol": "TCP"}],
    });
    api.kubectl_input(&["apply", "-f", "-"], Some(&slice.to_string()))
        .await?;
    Ok(uid)
}

#[tokio::test]
async fn discovery_forms_and_shrinks_a_cluster_against_a_real_api_server_with_rbac()
-> anyhow::Result<()> {
    let Some(api) = RealApi::start().await? else {
        return Ok(());
    };
    api.kubectl(&["create", "namespace", NAMESPACE]).await?;
    // k8s/base's ServiceAccount, Role and RoleBinding, rendered into the
    // test's namespace as kustomize renders them: a verb missing there
    // fails discovery, and so this test.
    let kustomize = api.dir.path().join("rbac");
    std::fs::create_dir_all(&kustomize)?;
    let rbac = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/rbac.yaml");
    std::fs::copy(&rbac, kustomize.join("rbac.yaml"))?;
    std::fs::write(
        kustomize.join("kustomization.yaml"),
        format!("namespace: {NAMESPACE}\nresources:\n- rbac.yaml\n"),
    )?;
    let rendered = api
        .kubectl(&["kustomize", &kustomize.display().to_string()])
        .await?;
    api.kubectl_input(&["apply", "-f", "-"], Some(&rendered))
        .await?;
    let token = api
        .kubectl(&["-n", NAMESPACE, "create", "token", ACCOUNT, "--duration=1h"])
        .await?;
    let sidecar_config = api.dir.path().join("sidecar.kubeconfig");
    write_kubeconfig(&sidecar_config, api.port, token.trim())?;

    let mut cluster = Cluster::empty(&["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"])?;
    let ip = host_ip()?;
    let mut pods = Vec::new();
    for i in 1..=3 {
        let name = format!("ping-pong-{i}");
        let port = Cluster::pick_port()?;
        let uid = create_pod(&api, &name, &ip, port).await?;
        let id = node_id_for_uid(&uid);
        let env: Vec<(String, String)> = [
            ("RAFTORAL_DISCOVERY", "kubernetes"),
            ("RAFTORAL_SERVICE_NAME", SERVICE),
            ("RAFTORAL_POD_SELECTOR", SELECTOR),
            ("RAFTORAL_REMOVE_AFTER", "1s"),
            ("RAFTORAL_BOOTSTRAP_EXPECT", "3"),
            ("POD_NAMESPACE", NAMESPACE),
            ("POD_NAME", &name),
            ("POD_UID", &uid),
            ("POD_IP", &ip),
            ("KUBECONFIG", &sidecar_config.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        cluster.spawn_with(id, format!("{ip}:{port}"), Vec::new(), env)?;
        pods.push((id, name));
    }
    let ids: Vec<u64> = {
        let mut ids: Vec<u64> = pods.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    };
    for id in &ids {
        cluster.wait_serving(*id).await?;
    }
    cluster.wait_agreement(&ids, &ids).await?;

    // A pod deleted (SIGTERM, then its objects): its member is removed.
    let (gone, name) = pods.remove(0);
    let status = cluster.terminate(gone).await?;
    anyhow::ensure!(status.success(), "the pod stopped with {status}");
    api.kubectl(&["-n", NAMESPACE, "delete", "pod", &name, "--wait=false"])
        .await?;
    api.kubectl(&[
        "-n",
        NAMESPACE,
        "delete",
        "endpointslice",
        &format!("{SERVICE}-{name}"),
    ])
    .await?;
    cluster.remove(gone).await?;
    let left: Vec<u64> = ids.iter().copied().filter(|id| *id != gone).collect();
    eventually_async(
        DEADLINE,
        "the deleted pod's member to be removed",
        || async { Ok(cluster.wait_agreement(&left, &left).await.is_ok()) },
    )
    .await?;
    Ok(())
}
