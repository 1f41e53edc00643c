//! `RAFTORAL_LOG_FORMAT=json`: one JSON object per line with the structured
//! fields, for a cluster's log pipeline; text stays the default.

use raftoral_conformance::Sidecar;

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_fields() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--log-format", "json"]).await?;
    let log = sidecar.log();
    let mut serving = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let object: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not one JSON object: {line:?}: {e}"))?;
        assert!(object["level"].is_string(), "{line}");
        assert!(object["timestamp"].is_string(), "{line}");
        if object["fields"]["message"] == "raftoral sidecar serving" {
            serving = Some(object);
        }
    }
    let serving = serving.ok_or_else(|| anyhow::anyhow!("no serving line in:\n{log}"))?;
    // Structured fields stay fields, not text inside the message.
    assert_eq!(serving["fields"]["node"], 1, "{serving}");
    assert!(serving["fields"]["raft"].is_string(), "{serving}");
    sidecar.terminate().await?;

    // Without the flag the lines are text.
    let text = Sidecar::start(&[]).await?;
    let first = text.log().lines().next().unwrap_or_default().to_owned();
    assert!(
        serde_json::from_str::<serde_json::Value>(&first).is_err(),
        "{first}"
    );
    text.terminate().await?;
    Ok(())
}
