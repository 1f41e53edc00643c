//! Walking-skeleton scenarios on one real sidecar process with real worker
//! processes.

use std::time::Duration;

use raftoral_client::{ClientError, RaftoralClient, WorkflowStatus};
use raftoral_conformance::{
    DEADLINE, Sidecar, StepsInput, Worker, count_effect, eventually, eventually_async,
    read_effects, steps_sum,
};

async fn setup() -> anyhow::Result<(Sidecar, Worker, RaftoralClient, std::path::PathBuf)> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let worker = Worker::start(&sidecar.url, &effects, &[]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    Ok((sidecar, worker, client, effects))
}

async fn result<T: serde::de::DeserializeOwned>(
    handle: &raftoral_client::WorkflowHandle,
) -> Result<T, ClientError> {
    tokio::time::timeout(DEADLINE, handle.result::<T>())
        .await
        .expect("workflow did not finish in time")
}

#[tokio::test]
async fn ping_pong_answers_pong_and_clean_shutdown() -> anyhow::Result<()> {
    let (sidecar, worker, client, _) = setup().await?;
    let handle = client.start_workflow("ping_pong", 1, "ping").await?;
    assert_eq!(result::<String>(&handle).await?, "pong");
    let handle = client.start_workflow("ping_pong", 1, "pong").await?;
    assert_eq!(result::<String>(&handle).await?, "ping");
    let info = client.get_workflow(handle.workflow_id()).await?;
    assert_eq!(info.status(), WorkflowStatus::Completed);
    assert_eq!(info.checkpoint_count, 1);
    assert!(worker.terminate().await?.success());
    assert!(sidecar.terminate().await?.success());
    Ok(())
}

#[tokio::test]
async fn hundred_checkpoints_commit_in_order() -> anyhow::Result<()> {
    let (sidecar, _worker, client, effects) = setup().await?;
    let handle = client
        .start_workflow(
            "steps",
            1,
            &StepsInput {
                n: 100,
                ..Default::default()
            },
        )
        .await?;
    let sum: u64 = result(&handle).await?;
    assert_eq!(sum, steps_sum(100u64));
    let history = history(&sidecar, handle.workflow_id()).await?;
    assert_eq!(history.len(), 100);
    for (seq, (s, name, value)) in history.iter().enumerate() {
        assert_eq!(*s, seq as u64);
        assert_eq!(name, &format!("step-{seq}"));
        assert_eq!(value, &(seq as u64 * 2).to_string());
    }
    let effects = read_effects(&effects);
    for i in 0..100 {
        assert_eq!(
            count_effect(&effects, handle.workflow_id(), "done", i),
            1,
            "step {i}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn failing_workflow_error_reaches_the_caller() -> anyhow::Result<()> {
    let (_sidecar, _worker, client, _) = setup().await?;
    let input = StepsInput {
        n: 5,
        fail_at: Some(2),
        ..Default::default()
    };
    let handle = client.start_workflow("steps", 1, &input).await?;
    match result::<u64>(&handle).await {
        Err(ClientError::WorkflowFailed { message, .. }) => {
            assert_eq!(message, "failed on purpose at step 2")
        }
        other => panic!("expected a workflow failure, got {other:?}"),
    }
    let info = client.get_workflow(handle.workflow_id()).await?;
    assert_eq!(info.status(), WorkflowStatus::Failed);
    assert_eq!(info.checkpoint_count, 3);
    Ok(())
}

#[tokio::test]
async fn cancellation_stops_a_running_workflow() -> anyhow::Result<()> {
    let (_sidecar, _worker, client, effects) = setup().await?;
    let input = StepsInput {
        n: 100_000,
        step_delay_ms: 2,
        ..Default::default()
    };
    let handle = client.start_workflow("steps", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    // Let it commit a few steps, so it is really running.
    eventually_async(DEADLINE, "three committed steps", || {
        let client = client.clone();
        let id = id.clone();
        async move { Ok(client.get_workflow(&id).await?.checkpoint_count >= 3) }
    })
    .await?;
    // A request: the running step gets the cancellation, the workflow
    // ends CANCELLED once its code lets the error out (cancel.rs has the
    // cleanup it may run first).
    let info = client.cancel_workflow(&id, "test says stop").await?;
    assert!(
        info.status() == WorkflowStatus::Running && info.cancel_reason == "test says stop"
            || info.status() == WorkflowStatus::Cancelled,
        "{info:?}"
    );
    match result::<u64>(&handle).await {
        Err(ClientError::Cancelled { reason, .. }) => assert_eq!(reason, "test says stop"),
        other => panic!("expected cancellation, got {other:?}"),
    }
    // The workflow function itself observed the cancellation.
    eventually(
        DEADLINE,
        "the workflow function to see the cancellation",
        || {
            read_effects(&effects)
                .iter()
                .any(|(w, what, _)| *w == id && what == "cancelled")
        },
    )
    .await?;
    let frozen = client.get_workflow(&id).await?.checkpoint_count;
    // Nothing commits after a cancellation: a later start of another workflow
    // completes, and the cancelled one has not moved.
    let other = client.start_workflow("ping_pong", 1, "ping").await?;
    assert_eq!(result::<String>(&other).await?, "pong");
    assert_eq!(client.get_workflow(&id).await?.checkpoint_count, frozen);
    // Cancelling again is a harmless no-op.
    assert_eq!(
        client.cancel_workflow(&id, "again").await?.error,
        "test says stop"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_workflow_or_version_is_pending_with_a_reason_then_runs() -> anyhow::Result<()> {
    let (sidecar, _worker, client, _) = setup().await?;
    let unknown = client.start_workflow("nobody_runs_this", 1, &()).await?;
    let info = client.get_workflow(unknown.workflow_id()).await?;
    assert_eq!(info.status(), WorkflowStatus::Pending);
    assert!(
        info.pending_reason
            .contains("no worker has registered workflow 'nobody_runs_this'")
    );

    let wrong_version = client.start_workflow("ping_pong", 9, "ping").await?;
    let err = wrong_version
        .wait(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::DeadlineExceeded));
    let text = err.to_string();
    assert!(
        text.contains("pending")
            && text.contains("version 9")
            && text.contains("registered versions: 1"),
        "{text}"
    );

    // A worker for version 9 arrives: the pending workflow starts and finishes.
    let late = RaftoralClient::connect(&sidecar.url).await?;
    late.register_workflow("ping_pong", 9).await?;
    let runner = late.clone();
    let task = tokio::spawn(async move {
        runner
            .handle_workflows(|req| async move {
                let input: String = req.input()?;
                let out: String = req
                    .context
                    .checkpoint("v9", || format!("{input}-v9"))
                    .await?;
                Ok(serde_json::to_vec(&out)?)
            })
            .await
    });
    assert_eq!(result::<String>(&wrong_version).await?, "ping-v9");
    late.shutdown().await;
    task.await??;
    Ok(())
}

#[tokio::test]
async fn app_killed_mid_workflow_resumes_by_replay_without_rerunning_steps() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let first = Worker::start(&sidecar.url, &effects, &[("CONFORMANCE_HANG", "1")]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let input = StepsInput {
        n: 10,
        hang_at: Some(6),
        ..Default::default()
    };
    let handle = client.start_workflow("steps", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    eventually(DEADLINE, "the worker to hang in step 6", || {
        count_effect(&read_effects(&effects), &id, "start", 6) == 1
    })
    .await?;
    first.kill().await?;
    assert_eq!(client.get_workflow(&id).await?.checkpoint_count, 6);

    let _second = Worker::start(&sidecar.url, &effects, &[]).await?;
    let sum: u64 = result(&handle).await?;
    assert_eq!(sum, steps_sum(10u64));
    let effects = read_effects(&effects);
    for i in 0..10 {
        assert_eq!(
            count_effect(&effects, &id, "done", i),
            1,
            "step {i} completed more than once"
        );
        let starts = if i == 6 { 2 } else { 1 };
        assert_eq!(
            count_effect(&effects, &id, "start", i),
            starts,
            "step {i} started a wrong number of times"
        );
    }
    Ok(())
}

#[tokio::test]
async fn replay_with_changed_code_fails_with_a_precise_non_determinism_error() -> anyhow::Result<()>
{
    let sidecar = Sidecar::start(&[]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let first = Worker::start(&sidecar.url, &effects, &[("CONFORMANCE_HANG", "1")]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let input = StepsInput {
        n: 5,
        hang_at: Some(2),
        ..Default::default()
    };
    let handle = client.start_workflow("steps", 1, &input).await?;
    let id = handle.workflow_id().to_owned();
    eventually(DEADLINE, "the worker to hang in step 2", || {
        count_effect(&read_effects(&effects), &id, "start", 2) == 1
    })
    .await?;
    first.kill().await?;
    // The new deployment renamed its checkpoints: replay must not go on.
    let _second = Worker::start(
        &sidecar.url,
        &effects,
        &[("CONFORMANCE_STEP_PREFIX", "renamed")],
    )
    .await?;
    match result::<u64>(&handle).await {
        Err(ClientError::WorkflowFailed { message, .. }) => {
            for part in [
                id.as_str(),
                "seq 0",
                "'step-0'",
                "'renamed-0'",
                "non-determinism",
            ] {
                assert!(message.contains(part), "{part:?} missing from: {message}");
            }
        }
        other => panic!("expected a non-determinism failure, got {other:?}"),
    }
    // Nothing ran again: the replaying worker stopped before computing.
    let effects = read_effects(&effects);
    assert_eq!(count_effect(&effects, &id, "start", 0), 1);
    assert_eq!(client.get_workflow(&id).await?.checkpoint_count, 2);
    Ok(())
}

#[tokio::test]
async fn worker_reconnects_after_the_sidecar_restarts() -> anyhow::Result<()> {
    let (sidecar, _worker, client, _) = setup().await?;
    let handle = client.start_workflow("ping_pong", 1, "ping").await?;
    assert_eq!(result::<String>(&handle).await?, "pong");
    // Same address, new process (in memory: a fresh, empty node).
    let sidecar = sidecar.restart(&[]).await?;
    // The worker reconnects with backoff and registers again by itself, so a
    // new workflow runs without any action on the app.
    let fresh = RaftoralClient::connect(&sidecar.url).await?;
    let handle = fresh.start_workflow("ping_pong", 1, "pong").await?;
    assert_eq!(result::<String>(&handle).await?, "ping");
    Ok(())
}

/// Unicode workflow ids and an input near the value limit (non-ASCII, so a
/// worker that counts characters instead of bytes, or keeps gRPC's default
/// 4 MiB receive limit, fails) reach the worker and come back unchanged.
#[tokio::test]
async fn unicode_ids_and_an_input_near_the_limit_round_trip() -> anyhow::Result<()> {
    let (sidecar, _worker, client, effects) = setup().await?;
    let id = "заказ-42-✓-注文";
    let handle = client
        .start_workflow_with_id(
            id,
            "steps",
            1,
            &StepsInput {
                n: 3,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(result::<u64>(&handle).await?, 6);
    let effects = read_effects(&effects);
    for i in 0..3 {
        assert_eq!(count_effect(&effects, id, "done", i), 1, "step {i}");
    }
    let history = history(&sidecar, id).await?;
    assert_eq!(history.len(), 3);
    // 4 MiB (the default --max-value-bytes) less room for the JSON quotes:
    // two-byte characters and one four-byte one.
    let mut big = "é".repeat((4 * 1024 * 1024 - 16) / 2);
    big.push('🦀');
    let handle = client
        .start_workflow_with_id("大きい-🦀", "ping_pong", 1, &big)
        .await?;
    assert_eq!(result::<String>(&handle).await?, "ping");
    let info = client.get_workflow("大きい-🦀").await?;
    assert_eq!(info.status(), WorkflowStatus::Completed);
    Ok(())
}

/// An app that beats at the interval its `RegistrationAck` asks for keeps its
/// stream through a short app timeout: steps whose computation outlasts the
/// timeout (the app proposes nothing meanwhile) run in one session, each
/// once, never dropped as a silent app.
#[tokio::test]
async fn a_live_app_keeps_its_stream_through_a_short_app_timeout() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--app-timeout-ms", "1000"]).await?;
    let effects = sidecar.dir.path().join("effects.log");
    let _worker = Worker::start(&sidecar.url, &effects, &[]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let handle = client
        .start_workflow("steps", 1, &StepsInput::slow(3, 1500))
        .await?;
    let sum: u64 = result(&handle).await?;
    assert_eq!(sum, steps_sum(3u64));
    let effects = read_effects(&effects);
    for i in 0..3 {
        assert_eq!(count_effect(&effects, handle.workflow_id(), "start", i), 1);
    }
    let log = sidecar.log();
    assert!(
        !log.contains("app sent nothing for the app timeout"),
        "the sidecar dropped a live app as silent"
    );
    Ok(())
}

#[tokio::test]
async fn start_is_idempotent_on_workflow_id() -> anyhow::Result<()> {
    let (_sidecar, _worker, client, effects) = setup().await?;
    let input = StepsInput {
        n: 3,
        ..Default::default()
    };
    let first = client
        .start_workflow_with_id("order-42", "steps", 1, &input)
        .await?;
    assert!(!first.already_started());
    let second = client
        .start_workflow_with_id(
            "order-42",
            "steps",
            1,
            &StepsInput {
                n: 50,
                ..Default::default()
            },
        )
        .await?;
    assert!(second.already_started());
    assert_eq!(second.workflow_id(), "order-42");
    assert_eq!(result::<u64>(&first).await?, 6);
    assert_eq!(result::<u64>(&second).await?, 6);
    // Starting a finished id still returns it, and nothing runs again.
    let third = client
        .start_workflow_with_id("order-42", "steps", 1, &input)
        .await?;
    assert!(third.already_started());
    let info = client.get_workflow("order-42").await?;
    assert_eq!(info.checkpoint_count, 3);
    let effects = read_effects(&effects);
    assert_eq!(
        effects
            .iter()
            .filter(|(w, what, _)| w == "order-42" && what == "done")
            .count(),
        3
    );
    // Generated ids are unique.
    let a = client.start_workflow("ping_pong", 1, "ping").await?;
    let b = client.start_workflow("ping_pong", 1, "ping").await?;
    assert_ne!(a.workflow_id(), b.workflow_id());
    Ok(())
}

#[tokio::test]
async fn client_api_errors_have_precise_codes() -> anyhow::Result<()> {
    let sidecar = Sidecar::start(&["--max-value-bytes", "1024"]).await?;
    let client = RaftoralClient::connect(&sidecar.url).await?;
    let code = |r: Result<_, ClientError>| r.err().and_then(|e| e.code());
    assert_eq!(
        code(client.get_workflow("missing").await.map(|_| ())),
        Some(tonic::Code::NotFound)
    );
    assert_eq!(
        code(client.cancel_workflow("missing", "").await.map(|_| ())),
        Some(tonic::Code::NotFound)
    );
    assert_eq!(
        code(client.start_workflow("", 1, "x").await.map(|_| ())),
        Some(tonic::Code::InvalidArgument)
    );
    let big = "x".repeat(2000);
    assert_eq!(
        code(
            client
                .start_workflow("ping_pong", 1, &big)
                .await
                .map(|_| ())
        ),
        Some(tonic::Code::InvalidArgument)
    );
    let err = RaftoralClient::connect("http://127.0.0.1:1")
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    Ok(())
}

/// (seq, name, value as text) of every committed checkpoint, via the CLI.
async fn history(sidecar: &Sidecar, id: &str) -> anyhow::Result<Vec<(u64, String, String)>> {
    let out = tokio::process::Command::new(raftoral_conformance::bin_dir().join("raftoral"))
        .args(["workflow", "--addr", &sidecar.url, "history", id])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "raftoral workflow history failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok((
                v["seq"].as_u64().unwrap_or(u64::MAX),
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["value"].to_string(),
            ))
        })
        .collect()
}
