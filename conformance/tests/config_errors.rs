//! Bad settings stop `raftoral serve` at start with one clear line.

use raftoral_conformance::bin_dir;

async fn serve_fails(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        raftoral_conformance::DEADLINE,
        tokio::process::Command::new(bin_dir().join("raftoral"))
            .arg("serve")
            .args(["--sidecar-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "off")
            .output(),
    )
    .await??;
    assert!(!out.status.success(), "serve {args:?} should fail");
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        !stderr.contains("panicked"),
        "a panic instead of a message: {stderr}"
    );
    Ok(stderr)
}

#[tokio::test]
async fn bad_settings_stop_the_node_with_a_clear_message() -> anyhow::Result<()> {
    let e = serve_fails(&["--peers", "1=127.0.0.1:7001,2=nowhere"]).await?;
    assert!(
        e.contains("peer '2=nowhere': the address must be HOST:PORT"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let e = serve_fails(&["--peers", "2=127.0.0.1:7002,3=127.0.0.1:7003"]).await?;
    assert!(e.contains("must include this node's own id"), "{e}");

    let e = serve_fails(&[
        "--peers",
        "1=127.0.0.1:7001,2=127.0.0.1:7002",
        "--bootstrap-expect",
        "3",
    ])
    .await?;
    assert!(e.contains("RAFTORAL_BOOTSTRAP_EXPECT is 3"), "{e}");

    // The owner timeout must outlast the longest election (2 x 10 x 50 ms).
    let e = serve_fails(&["--owner-timeout-ms", "1000"]).await?;
    assert!(
        e.contains("owner timeout (--owner-timeout-ms) of 1000 ms must be above the longest election timeout"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // A node that cannot join stops with an error, not as a clean exit:
    // id 1 is the seed's own.
    let seed = raftoral_conformance::Sidecar::start(&[]).await?;
    let addrs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed.dir.path().join("addr.json"))?)?;
    let raft = addrs["raft"].as_str().unwrap_or_default().to_owned();
    let e = serve_fails(&["--node-id", "1", "--join", &raft]).await?;
    assert!(e.contains("could not join the cluster"), "{e}");
    assert!(e.contains("already a member"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let e = serve_fails(&["--advertise", "x", "--max-value-bytes", "lots"]).await?;
    assert!(e.contains("invalid value 'lots'"), "{e}");

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "")?;
    let e = serve_fails(&["--storage-path", file.join("sub").to_str().unwrap()]).await?;
    assert!(e.contains("cannot create the storage directory"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // A directory that belongs to node 1 is refused by node 2.
    let data = dir.path().join("data");
    let mut node1 = tokio::process::Command::new(bin_dir().join("raftoral"))
        .arg("serve")
        .args(["--sidecar-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(["--storage-path", data.to_str().unwrap(), "--addr-file"])
        .arg(dir.path().join("addr.json"))
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .spawn()?;
    raftoral_conformance::eventually(raftoral_conformance::DEADLINE, "node 1 to serve", || {
        dir.path().join("addr.json").exists()
    })
    .await?;
    node1.kill().await?;
    let e = serve_fails(&["--node-id", "2", "--storage-path", data.to_str().unwrap()]).await?;
    assert!(e.contains("holds the data of node 1, not node 2"), "{e}");
    Ok(())
}
