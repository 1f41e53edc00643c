//! The deterministic helpers: `random()` and `uuid()` draw the numbers the
//! generator of docs/ARCHITECTURE.md gives for the run's seed, in every
//! language, and they and the time `now()` recorded come back unchanged
//! when the app dies and the workflow replays, on the same node or on a
//! replica that takes over.
//!
//! The workers register `helpers` only when asked (`CONFORMANCE_WORKFLOWS`).
//! Every worker runs these scenarios (the conformance matrix).

use std::time::{SystemTime, UNIX_EPOCH};

use raftoral_client::{RaftoralClient, WorkflowStatus};
use raftoral_conformance::{DEADLINE, Sidecar, Worker, count_effect, eventually, read_effects};

const WORKFLOWS: (&str, &str) = ("CONFORMANCE_WORKFLOWS", "helpers");

/// Failover timeouts short enough for tests.
const FAST: &[&str] = &["--owner-timeout-ms", "1000", "--app-timeout-ms", "1000"];

/// The generator as docs/ARCHITECTURE.md specifies it, written here again
/// from the text (an oracle independent of the SDK core's code).
struct Oracle(u64);

impl Oracle {
    /// The seed the engine gives a workflow: FNV-1a 64 of the id, xor the
    /// start's log time (never 0).
    fn for_workflow(id: &str, created_at_ms: u64) -> Self {
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Oracle((h ^ created_at_ms).max(1))
    }

    fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn random(&mut self) -> f64 {
        (self.draw() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.draw(), self.draw());
        let a = (a & !0xf000) | 0x4000;
        let b = (b & !(0xc0 << 56)) | (0x80 << 56);
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Checks a `helpers` result: the draws of the first run, recorded in a
/// step, equal those of the run that finished (a replay); they are the
/// oracle's for the workflow's seed; the recorded time lies within
/// `[before, after]` (one machine's clock).
fn check(out: &serde_json::Value, id: &str, created_at_ms: u64, before: u64, after: u64) {
    assert_eq!(out["recorded"], out["replayed"], "the replay drew the same");
    let mut oracle = Oracle::for_workflow(id, created_at_ms);
    let expected_random = oracle.random();
    let expected_uuid = oracle.uuid();
    let expected_after = oracle.random();
    assert_eq!(out["replayed"]["random"].as_f64(), Some(expected_random));
    assert_eq!(
        out["replayed"]["uuid"].as_str(),
        Some(expected_uuid.as_str())
    );
    assert_eq!(out["after"].as_f64(), Some(expected_after));
    let now = out["replayed"]["now"].as_u64().expect("now is an integer");
    assert!(
        (before..=after).contains(&now),
        "recorded time {now} within the test's [{before}, {after}]"
    );
}

#[tokio::test]
async fn helpers_draw_the_specified_numbers_and_replay_them_after_the_app_is_killed()
-> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let hanging = Worker::start(
        &sidecar.url,
        &effects,
        &[WORKFLOWS, ("CONFORMANCE_HANG", "1")],
    )
    .await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let before = now_ms();
    let handle = client
        .start_workflow("helpers", 1, &serde_json::json!({}))
        .await?;
    let id = handle.workflow_id().to_owned();
    eventually(DEADLINE, "the app to hang in the gate", || {
        count_effect(&read_effects(&effects), &id, "start", 1) == 1
    })
    .await?;
    hanging.kill().await?;
    let _worker = Worker::start(&sidecar.url, &effects, &[WORKFLOWS]).await?;
    let out: serde_json::Value = tokio::time::timeout(DEADLINE * 2, handle.result())
        .await
        .expect("the workflow finishes in time")?;
    let info = client.get_workflow(&id).await?;
    check(&out, &id, info.created_at_ms, before, now_ms());
    assert_eq!(
        count_effect(&read_effects(&effects), &id, "start", 0),
        1,
        "the record step ran once"
    );
    let names: Vec<String> = client
        .get_workflow_history(&id)
        .await?
        .into_iter()
        .map(|e| e.checkpoint_name)
        .collect();
    assert_eq!(names, ["raftoral.now", "record", "gate"]);

    // Another workflow draws other numbers (its own seed).
    let other = client
        .start_workflow("helpers", 1, &serde_json::json!({}))
        .await?;
    let second: serde_json::Value = tokio::time::timeout(DEADLINE * 2, other.result())
        .await
        .expect("the second workflow finishes in time")?;
    let created = client
        .get_workflow(other.workflow_id())
        .await?
        .created_at_ms;
    check(&second, other.workflow_id(), created, before, now_ms());
    assert_ne!(second["replayed"]["uuid"], out["replayed"]["uuid"]);
    Ok(())
}

#[tokio::test]
async fn a_replica_that_takes_over_draws_the_same_numbers_and_keeps_the_recorded_time()
-> anyhow::Result<()> {
    use raftoral_conformance::apps::{ThreeApps, client, wait_status};
    let ThreeApps {
        mut cluster,
        apps,
        leader,
        owner,
        other,
    } = ThreeApps::start(WORKFLOWS.1, true, FAST).await?;
    let c = client(&cluster, owner).await?;
    let before = now_ms();
    let h = c
        .start_workflow("helpers", 1, &serde_json::json!({}))
        .await?;
    let id = h.workflow_id().to_owned();
    assert_eq!(c.get_workflow(&id).await?.owner_node_id, owner);
    eventually(DEADLINE, "the owner to hang in the gate", || {
        count_effect(&read_effects(&apps.effects[&owner]), &id, "start", 1) == 1
    })
    .await?;
    cluster.kill(owner).await?;
    let survivor = client(&cluster, leader).await?;
    wait_status(&survivor, &id, WorkflowStatus::Completed).await?;
    let info = survivor.get_workflow(&id).await?;
    let out: serde_json::Value = serde_json::from_slice(&info.result)?;
    check(&out, &id, info.created_at_ms, before, now_ms());
    assert_eq!(count_effect(&apps.effects(), &id, "start", 0), 1);
    for node in [leader, other] {
        assert_eq!(
            cluster.status(node).await?.nondeterminism_reports,
            0,
            "node {node}: every replica drew what the owner drew"
        );
    }
    Ok(())
}
