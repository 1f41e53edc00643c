//! Moving leadership on purpose: `raftoral cluster transfer-leader`, and a
//! leader that hands over by itself when it is stopped with SIGTERM.

use raftoral_conformance::cluster::Cluster;

async fn cli(addr: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(
        tokio::process::Command::new(raftoral_conformance::bin_dir().join("raftoral"))
            .args(["cluster", "--addr", addr])
            .args(args)
            .output()
            .await?,
    )
}

/// A log line without its ANSI colour codes.
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn transfer_leader_moves_leadership_and_refuses_bad_targets() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let target = (1..=3).find(|id| *id != leader).unwrap();
    // Asked through the third node, which forwards to the leader.
    let via = (1..=3).find(|id| *id != leader && *id != target).unwrap();
    let out = cli(
        &cluster.nodes[&via].raft_addr,
        &["transfer-leader", &target.to_string()],
    )
    .await?;
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(printed["leader"], target);
    assert_eq!(
        cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?,
        target
    );

    // No target: the leader picks a follower.
    let out = cli(&cluster.nodes[&target].raft_addr, &["transfer-leader"]).await?;
    assert!(out.status.success(), "{out:?}");
    let picked = serde_json::from_slice::<serde_json::Value>(&out.stdout)?["leader"]
        .as_u64()
        .unwrap();
    assert_ne!(picked, target);
    assert_eq!(
        cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?,
        picked
    );

    // Bad input: not a member; no target named to a follower.
    let out = cli(&cluster.nodes[&1].raft_addr, &["transfer-leader", "9"]).await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NotFound") && err.contains("node 9"), "{err}");
    let follower = (1..=3).find(|id| *id != picked).unwrap();
    let out = cli(&cluster.nodes[&follower].raft_addr, &["transfer-leader"]).await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("name the target"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_leader_stopped_with_sigterm_hands_over_first() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let status = cluster.terminate(leader).await?;
    assert!(status.success(), "{status:?}");
    let log = cluster.log(leader);
    let line = log
        .lines()
        .map(without_colours)
        .find(|l| l.contains("leadership handed over before stopping"))
        .unwrap_or_else(|| panic!("no hand-over in the stopped leader's log:\n{log}"));
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_agreement(&survivors, &[1, 2, 3]).await?;
    assert!(
        line.contains(&format!("to={new_leader}")),
        "handed to another node than the one that leads: {line}"
    );
    Ok(())
}

#[tokio::test]
async fn a_transfer_to_an_unreachable_node_fails_and_the_leader_stays() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, false, &[]).await?;
    let leader = cluster.wait_agreement(&[1, 2, 3], &[1, 2, 3]).await?;
    let target = (1..=3).find(|id| *id != leader).unwrap();
    cluster.cut_off(target).await?;
    let out = cli(
        &cluster.nodes[&leader].raft_addr,
        &["transfer-leader", &target.to_string()],
    )
    .await?;
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unavailable") && err.contains(&format!("did not move to node {target}")),
        "{err}"
    );
    // raft-rs abandons the transfer after an election timeout; the leader
    // leads on and the majority still agrees on it.
    let majority: Vec<u64> = (1..=3).filter(|id| *id != target).collect();
    assert_eq!(cluster.wait_agreement(&majority, &[1, 2, 3]).await?, leader);
    Ok(())
}
