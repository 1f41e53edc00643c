//! The Rust worker's workflows that talk to other workflows or the outside
//! (WORKERS.md): `waiter`, `awakener`, `event_racer`, `parent` and
//! `caller`.

use std::time::Duration;

use raftoral_client::{WorkflowError, WorkflowRequest};

use super::{effect, hanging_step};

/// `waiter`: waits for events of one name, one after another.
pub(crate) async fn waiter(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        name: String,
        waits: u64,
        timeout_ms: Option<u64>,
        #[serde(default)]
        status: bool,
        #[serde(default)]
        stream: bool,
    }
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    let before = id.clone();
    ctx.checkpoint("before", move || {
        effect(&before, "start", 0);
        true
    })
    .await?;
    if input.status {
        ctx.set_status("stage", "waiting").await?;
    }
    if input.stream {
        // The SDK's event stream: the same waits, the same history.
        use futures::StreamExt;
        let events: Vec<serde_json::Value> = ctx
            .events::<serde_json::Value>(&input.name, None)
            .take(input.waits as usize)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        hanging_step(&ctx, &id, "after", 1).await?;
        return Ok(serde_json::to_vec(&serde_json::json!({"events": events}))?);
    }
    let mut events = Vec::new();
    for i in 1..=input.waits {
        let got: Option<serde_json::Value> = ctx
            .wait_event(&input.name, input.timeout_ms.map(Duration::from_millis))
            .await?;
        events.push(got.unwrap_or(serde_json::Value::Null));
        if input.status {
            ctx.set_status("received", &i).await?;
        }
    }
    if input.status {
        ctx.set_status("stage", "done").await?;
    }
    hanging_step(&ctx, &id, "after", 1).await?;
    Ok(serde_json::to_vec(&serde_json::json!({"events": events}))?)
}

/// `awakener`: waits for an awakeable whose id it publishes as a status.
pub(crate) async fn awakener(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    ctx.checkpoint("before", move || {
        effect(&id, "start", 0);
        true
    })
    .await?;
    let awakeable = ctx.awakeable()?;
    ctx.set_status("awakeable", awakeable.id()).await?;
    let out = match ctx.wait_awakeable::<serde_json::Value>(&awakeable).await {
        Ok(value) => serde_json::json!({"value": value}),
        Err(raftoral_client::ClientError::StepFailed(f)) => serde_json::json!({
            "rejected": {"type": f.failure.r#type, "message": f.failure.message}
        }),
        Err(e) => return Err(e.into()),
    };
    Ok(serde_json::to_vec(&out)?)
}

/// `event_racer`: an event wait (or an awakeable) raced against a sleep.
pub(crate) async fn event_racer(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        name: String,
        timer_ms: u64,
        #[serde(default)]
        awakeable: bool,
    }
    use raftoral_client::Either;
    use serde_json::{Value, json};
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    ctx.checkpoint("before", move || {
        effect(&id, "start", 0);
        true
    })
    .await?;
    let race = Duration::from_millis(input.timer_ms);
    let out = if input.awakeable {
        let awakeable = ctx.awakeable()?;
        ctx.set_status("awakeable", awakeable.id()).await?;
        let wait = ctx.start_awakeable::<Value>(&awakeable);
        match ctx.first(wait, ctx.start_sleep("race", race)?).await? {
            Either::First(value) => json!({"winner": "event", "value": value}),
            Either::Second(()) => json!({"winner": "timer"}),
        }
    } else {
        let wait = ctx.start_event::<Value>(&input.name, None)?;
        match ctx.first(wait, ctx.start_sleep("race", race)?).await? {
            Either::First(value) => json!({"winner": "event", "value": value}),
            Either::Second(()) => {
                let then: Option<Value> = ctx.wait_event(&input.name, None).await?;
                json!({"winner": "timer", "then": then})
            }
        }
    };
    Ok(serde_json::to_vec(&out)?)
}

/// `parent`: starts child workflows, then waits for them or leaves them.
pub(crate) async fn parent(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        n: usize,
        child: String,
        input: serde_json::Value,
        #[serde(default)]
        policy: Option<String>,
        #[serde(default)]
        leave: bool,
        #[serde(default, rename = "self")]
        own_id: bool,
    }
    use raftoral_client::{ChildOptions, ParentClose};
    use serde_json::{Value, json};
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    {
        let id = id.clone();
        ctx.checkpoint("before", move || {
            effect(&id, "start", 0);
            true
        })
        .await?;
    }
    let options = ChildOptions {
        id: input.own_id.then(|| id.clone()),
        parent_close: match input.policy.as_deref() {
            Some("abandon") => ParentClose::Abandon,
            Some("terminate") => ParentClose::Terminate,
            _ => ParentClose::Cancel,
        },
        ..ChildOptions::default()
    };
    let mut children = Vec::new();
    for _ in 0..if input.own_id { 1 } else { input.n } {
        let child = ctx
            .start_child::<_, Value>(&input.child, &input.input, options.clone())
            .await?;
        children.push(child);
    }
    if input.leave {
        let ids: Vec<&str> = children.iter().map(|c| c.id()).collect();
        return Ok(serde_json::to_vec(&json!({"children": ids}))?);
    }
    let results = futures::future::join_all(children.into_iter().map(|c| c.result())).await;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(value) => out.push(value),
            Err(raftoral_client::ClientError::StepFailed(f)) => {
                return Ok(serde_json::to_vec(&json!({
                    "failed": {"type": f.failure.r#type, "message": f.failure.message}
                }))?);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(serde_json::to_vec(&json!({"results": out}))?)
}

/// `caller`: sends an event to another workflow, then maybe waits for one's
/// result, from the workflow.
pub(crate) async fn caller(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Input {
        target: String,
        name: String,
        payload: serde_json::Value,
        #[serde(default)]
        result_of: Option<String>,
    }
    use serde_json::json;
    let input: Input = req.input()?;
    let ctx = req.context;
    let id = ctx.workflow_id().to_owned();
    ctx.checkpoint("before", move || {
        effect(&id, "start", 0);
        true
    })
    .await?;
    let sent = match ctx
        .signal_workflow(&input.target, &input.name, &input.payload)
        .await
    {
        Ok(duplicate) => duplicate,
        Err(raftoral_client::ClientError::StepFailed(f)) => {
            return Ok(serde_json::to_vec(
                &json!({"failed": {"type": f.failure.r#type}}),
            )?);
        }
        Err(e) => return Err(e.into()),
    };
    let out = match input.result_of {
        Some(r) => {
            let result: serde_json::Value = ctx.workflow_result(&r).await?;
            json!({"sent": sent, "result": result})
        }
        None => json!({"sent": sent}),
    };
    Ok(serde_json::to_vec(&out)?)
}
