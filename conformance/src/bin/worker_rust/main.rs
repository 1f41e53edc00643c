//! The Rust SDK's conformance worker: registers the scenario workflows and runs
//! them until SIGTERM. Every SDK has one worker like it, so the same scenarios
//! check every language.
//!
//! Environment: `RAFTORAL_SIDECAR_URL` (sidecar), `CONFORMANCE_EFFECTS` (file
//! that records each side effect as a line), `CONFORMANCE_HANG=1` (the `steps`
//! workflow hangs at `hang_at` instead of finishing that step: simulates an app
//! that dies mid-step), `CONFORMANCE_STEP_PREFIX` (checkpoint names of `steps`,
//! default `step`: changing it between runs is a code change replay detects).

use std::io::Write as _;
use std::time::Duration;

use raftoral_client::{
    ClientError, RaftoralClient, RetryPolicy, StepError, WorkflowError, WorkflowRequest, checkpoint,
};
use raftoral_conformance::{BlobInput, FanoutInput, FlakyInput, StepsInput};

mod messages;
use messages::{awakener, caller, event_racer, parent, waiter};

/// Appends one line `ID WHAT STEP MS` to the effects file (MS: milliseconds
/// since the Unix epoch, comparable with the sidecar's commit times on the
/// same machine): one `write` with O_APPEND, so concurrent workflows never
/// interleave within a line.
pub(crate) fn effect(workflow_id: &str, what: &str, step: u64) {
    let Ok(path) = std::env::var("CONFORMANCE_EFFECTS") else {
        return;
    };
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let line = format!("{workflow_id} {what} {step} {ms}\n");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open effects file");
    file.write_all(line.as_bytes()).expect("write effect");
}

async fn ping_pong(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: String = req.input()?;
    let ctx = req.context;
    let out: String = checkpoint!(ctx, "result", {
        if input == "ping" { "pong" } else { "ping" }.to_string()
    });
    Ok(serde_json::to_vec(&out)?)
}

async fn steps(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: StepsInput = req.input()?;
    let ctx = req.context;
    let hang = std::env::var("CONFORMANCE_HANG").is_ok_and(|v| v == "1");
    // Another name prefix makes this worker's code differ from the one that
    // wrote the history: replay must report non-determinism.
    let prefix = std::env::var("CONFORMANCE_STEP_PREFIX").unwrap_or_else(|_| "step".into());
    let id = ctx.workflow_id().to_owned();
    let mut sum = 0u64;
    for i in 0..input.n {
        let id = id.clone();
        let value: u64 = ctx
            .checkpoint_compute(&format!("{prefix}-{i}"), async move {
                effect(&id, "start", i);
                if hang && input.hang_at == Some(i) {
                    // The app "dies" here: the test kills this process.
                    std::future::pending::<()>().await;
                }
                if input.step_delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(input.step_delay_ms)).await;
                }
                effect(&id, "done", i);
                i * 2
            })
            .await
            .inspect_err(|e| {
                if matches!(e, raftoral_client::ClientError::Cancelled { .. }) {
                    effect(ctx.workflow_id(), "cancelled", i);
                }
            })?;
        sum += value;
        if input.fail_at == Some(i) {
            return Err(format!("failed on purpose at step {i}").into());
        }
    }
    Ok(serde_json::to_vec(&sum)?)
}

async fn blob(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: BlobInput = req.input()?;
    let ctx = req.context;
    let mut total = 0usize;
    for i in 0..input.n {
        let size = input.size;
        let value: String = checkpoint!(ctx, &format!("blob-{i}"), "x".repeat(size));
        total += value.len();
    }
    if std::env::var("CONFORMANCE_HANG").is_ok_and(|v| v == "1") {
        std::future::pending::<()>().await;
    }
    Ok(serde_json::to_vec(&total)?)
}

/// `saga`: a charge that fails for good (non-retryable `CardDeclined` with
/// details), caught, then a refund and a final step (which hangs under
/// `CONFORMANCE_HANG=1`); with `{"fail":true}` the workflow fails with its
/// own structured error after the refund instead.
async fn saga(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: serde_json::Value = req.input()?;
    let fail = input["fail"].as_bool().unwrap_or(false);
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let charged = ctx
        .try_checkpoint("charge", || -> Result<bool, StepError> {
            effect(&id, "start", 0);
            Err(StepError::new("CardDeclined", "card declined")
                .details(serde_json::json!({"code": "insufficient_funds", "amount": 42}))
                .non_retryable())
        })
        .await;
    let caught = match charged {
        Err(ClientError::StepFailed(f)) => f,
        Err(other) => return Err(other.into()),
        Ok(_) => return Err("the charge cannot succeed".into()),
    };
    let refunded: bool = ctx
        .checkpoint("refund", || {
            effect(&id, "done", 1);
            true
        })
        .await?;
    if fail {
        return Err(StepError::new("OrderFailed", "order failed after refund")
            .details(serde_json::json!({"refunded": refunded}))
            .into());
    }
    hanging_step(&ctx, &id, "finish", 2).await?;
    let details: serde_json::Value =
        serde_json::from_str(&caught.failure.details_json).unwrap_or_default();
    Ok(serde_json::to_vec(&serde_json::json!({
        "caught": {
            "type": caught.failure.r#type,
            "message": caught.failure.message,
            "details": details,
            "attempts": caught.attempts,
        },
        "refunded": refunded,
    }))?)
}

/// `helpers`: the deterministic helpers' draws and recorded time, kept in
/// a step and returned again after a later step (which hangs under
/// `CONFORMANCE_HANG=1`), so a replay shows whether they changed.
async fn helpers(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let random = ctx.random()?;
    let uuid = ctx.uuid()?;
    let now = ctx.now().await?;
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let drawn = serde_json::json!({"random": random, "uuid": uuid, "now": now_ms});
    let recorded: serde_json::Value = ctx
        .checkpoint("record", || {
            effect(&id, "start", 0);
            drawn.clone()
        })
        .await?;
    let after = ctx.random()?;
    hanging_step(&ctx, &id, "gate", 1).await?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "recorded": recorded,
        "replayed": drawn,
        "after": after,
    }))?)
}

/// `sleeper`: a step, durable sleeps of the given milliseconds, a step
/// (which hangs under `CONFORMANCE_HANG=1`).
async fn sleeper(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        sleeps: Vec<i64>,
    }
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let _: bool = ctx
        .checkpoint("before", || {
            effect(&id, "start", 0);
            true
        })
        .await?;
    for (i, ms) in input.sleeps.iter().enumerate() {
        // A Duration cannot be negative: the Rust SDK cannot be asked for
        // one, so the worker refuses it itself (WORKERS.md).
        let ms = u64::try_from(*ms)
            .map_err(|_| format!("sleep nap-{i} of {ms} ms: a duration cannot be negative"))?;
        ctx.sleep_named(&format!("nap-{i}"), Duration::from_millis(ms))
            .await?;
    }
    hanging_step(&ctx, &id, "after", 1).await?;
    Ok(serde_json::to_vec(
        &serde_json::json!({"slept": input.sleeps.len()}),
    )?)
}

/// `racer`: a durable sleep raced against a step.
async fn racer(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        timer_ms: u64,
        step_ms: u64,
    }
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let deadline = ctx.start_sleep("deadline", Duration::from_millis(input.timer_ms))?;
    let work = {
        let id = id.clone();
        ctx.start_checkpoint("work", async move {
            effect(&id, "start", 0);
            // The step's own work, S ms long (WORKERS.md): a delay the
            // race is about, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(input.step_ms)).await;
            effect(&id, "done", 0);
            "worked".to_string()
        })?
    };
    let out = match ctx.first(deadline, work).await? {
        raftoral_client::Either::First(()) => serde_json::json!({"winner": "timer"}),
        raftoral_client::Either::Second(value) => {
            serde_json::json!({"winner": "step", "value": value})
        }
    };
    hanging_step(&ctx, &id, "after", 1).await?;
    Ok(serde_json::to_vec(&out)?)
}

/// `scheduled`: one step recording when it ran.
async fn scheduled(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: serde_json::Value = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let ran_at: u64 = ctx
        .checkpoint("ran", || {
            effect(&id, "start", 0);
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
        .await?;
    Ok(serde_json::to_vec(
        &serde_json::json!({"input": input, "ran_at": ran_at}),
    )?)
}

/// `compensate`: a charge (a step that hangs, or a one-hour sleep) that
/// only a cancellation ends; the cancellation is caught, the refund runs,
/// then the cancellation is returned (the workflow ends CANCELLED), or,
/// `stubborn`, a cleanup step that never ends.
async fn compensate(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: serde_json::Value = req.input()?;
    let at_sleep = input["at"].as_str() == Some("sleep");
    let stubborn = input["stubborn"].as_bool().unwrap_or(false);
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let reserved = id.clone();
    ctx.checkpoint("reserve", move || {
        effect(&reserved, "done", 0);
        true
    })
    .await?;
    let waited = if at_sleep {
        ctx.sleep_named("hold", Duration::from_secs(3600)).await
    } else {
        let charging = id.clone();
        ctx.checkpoint_compute("charge", async move {
            effect(&charging, "start", 1);
            std::future::pending::<bool>().await
        })
        .await
        .map(|_| ())
    };
    let cancel = match waited {
        Err(cancel @ ClientError::Cancelled { .. }) => cancel,
        Err(other) => return Err(other.into()),
        Ok(()) => return Err("only a cancellation ends the charge".into()),
    };
    hanging_step(&ctx, &id, "refund", 2).await?;
    if stubborn {
        let stuck = id.clone();
        ctx.checkpoint_compute("stuck", async move {
            effect(&stuck, "start", 3);
            std::future::pending::<bool>().await
        })
        .await?;
    }
    Err(cancel.into())
}

/// The last step of several types: appends `ID start STEP`, hangs forever
/// under `CONFORMANCE_HANG=1` (the app "dies" there), and yields `true`.
async fn hanging_step(
    ctx: &raftoral_client::WorkflowContext,
    id: &str,
    name: &str,
    step: u64,
) -> Result<bool, raftoral_client::ClientError> {
    let hang = std::env::var("CONFORMANCE_HANG").is_ok_and(|v| v == "1");
    ctx.checkpoint_compute(name, async {
        effect(id, "start", step);
        if hang {
            std::future::pending::<()>().await;
        }
        true
    })
    .await
}

/// `flaky`: one step whose first `fail_times` attempts fail.
async fn flaky(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: FlakyInput = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let policy = RetryPolicy {
        initial_interval: Duration::from_millis(input.initial_ms),
        backoff_coefficient: input.coefficient,
        maximum_interval: Duration::from_secs(60).max(Duration::from_millis(input.initial_ms)),
        maximum_attempts: Some(input.max_attempts),
        jitter: 0.0,
        non_retryable_error_types: Vec::new(),
        attempt_timeout: input.timeout_ms.map(Duration::from_millis),
    };
    let outcome = ctx
        .try_checkpoint_compute("flaky", &policy, |attempt| {
            effect(&id, "attempt", u64::from(attempt));
            let hangs = attempt <= input.hang_times;
            let failed = attempt <= input.fail_times;
            let non_retryable = input.non_retryable;
            async move {
                if hangs {
                    // Until the attempt timeout stops it.
                    std::future::pending::<()>().await;
                }
                if failed {
                    let e = StepError::new("Flaky", format!("attempt {attempt} failed"));
                    return Err(if non_retryable { e.non_retryable() } else { e });
                }
                Ok(attempt)
            }
        })
        .await;
    let out = match outcome {
        Ok(attempts) => serde_json::json!({"attempts": attempts}),
        Err(ClientError::StepFailed(f)) if input.catch => serde_json::json!({
            "caught": {"type": f.failure.r#type, "message": f.failure.message, "attempts": f.attempts},
        }),
        Err(e) => return Err(e.into()),
    };
    Ok(serde_json::to_vec(&out)?)
}

/// `fanout`: branches side by side (`join_all` polls them in order, so
/// their first steps take positions 0..n), then a sum step.
async fn fanout(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: FanoutInput = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let branches = (0..input.n).map(|i| {
        let (ctx, id) = (ctx.clone(), id.clone());
        let delay = input.delays_ms.get(i as usize).copied().unwrap_or(0);
        let chain = input.chain;
        async move {
            let first: u64 = ctx
                .checkpoint_compute(&format!("branch-{i}"), async {
                    // The branch's work time (`Di` of WORKERS.md), so
                    // branches finish in another order than they started.
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    effect(&id, "done", i);
                    i * i
                })
                .await?;
            if !chain {
                return Ok::<u64, ClientError>(first);
            }
            ctx.checkpoint(&format!("branch-{i}-b"), || {
                effect(&id, "done", 1000 + i);
                first + 1
            })
            .await
        }
    });
    let values = futures::future::try_join_all(branches).await?;
    let hang = std::env::var("CONFORMANCE_HANG").is_ok_and(|v| v == "1");
    let n = input.n;
    let sum: u64 = ctx
        .checkpoint_compute("sum", async {
            effect(&id, "start", n);
            if hang {
                std::future::pending::<()>().await;
            }
            values.iter().sum::<u64>()
        })
        .await?;
    Ok(serde_json::to_vec(&serde_json::json!({ "sum": sum }))?)
}

/// The policy `CONFORMANCE_BAD_POLICY` names. A negative interval cannot
/// be a `Duration`: it is refused where the number becomes one.
fn bad_policy(which: &str) -> anyhow::Result<RetryPolicy> {
    let ms: f64 = if which == "negative_interval" {
        -1.0
    } else {
        1000.0
    };
    let initial_interval = Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
        anyhow::anyhow!("retry policy: initial_interval must be at least 0, got {ms} ms")
    })?;
    Ok(RetryPolicy {
        initial_interval,
        maximum_attempts: Some(if which == "zero_attempts" { 0 } else { 3 }),
        ..RetryPolicy::default()
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // A bad retry policy stops the worker before it registers anything:
    // the SDK refuses it where it is defined.
    if let Ok(bad) = std::env::var("CONFORMANCE_BAD_POLICY") {
        bad_policy(&bad)?.validate()?;
    }
    let url = std::env::var("RAFTORAL_SIDECAR_URL")?;
    let client = RaftoralClient::connect(&url).await?;
    // CONFORMANCE_WORKFLOWS limits what this worker registers (comma list).
    let only =
        std::env::var("CONFORMANCE_WORKFLOWS").unwrap_or_else(|_| "ping_pong,steps,blob".into());
    for name in only.split(',').filter(|n| !n.is_empty()) {
        client.register_workflow(name, 1).await?;
    }
    let worker = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .handle_workflows(|req| async move {
                    match req.workflow_name.as_str() {
                        "ping_pong" => ping_pong(req).await,
                        "steps" => steps(req).await,
                        "blob" => blob(req).await,
                        "saga" => saga(req).await,
                        "flaky" => flaky(req).await,
                        "fanout" => fanout(req).await,
                        "helpers" => helpers(req).await,
                        "sleeper" => sleeper(req).await,
                        "racer" => racer(req).await,
                        "scheduled" => scheduled(req).await,
                        "compensate" => compensate(req).await,
                        "waiter" => waiter(req).await,
                        "awakener" => awakener(req).await,
                        "event_racer" => event_racer(req).await,
                        "parent" => parent(req).await,
                        "caller" => caller(req).await,
                        other => Err(format!("this worker has no workflow '{other}'").into()),
                    }
                })
                .await
        })
    };
    // Tell the harness we are registered and running.
    println!("worker ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    client.shutdown().await;
    worker.await??;
    Ok(())
}
