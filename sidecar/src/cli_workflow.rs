//! `raftoral workflow ...`: the client API from the command line. Output is
//! JSON, one object per line, for scripts.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, CompleteAwakeableRequest, Failure, GetStatusRequest,
    GetWorkflowHistoryRequest, GetWorkflowRequest, HistoryEntryKind, ListWorkflowsRequest,
    SignalWithStartRequest, SignalWorkflowRequest, StartWorkflowRequest, WaitWorkflowRequest,
    WorkflowInfo, WorkflowStatus, workflow_service_client::WorkflowServiceClient,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// `raftoral workflow` arguments.
#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// Sidecar URL.
    #[arg(
        long,
        env = "RAFTORAL_SIDECAR_URL",
        default_value = "http://127.0.0.1:9001",
        global = true
    )]
    addr: String,
    /// Token the sidecar requires (its RAFTORAL_APP_TOKEN).
    #[arg(
        long,
        env = "RAFTORAL_APP_TOKEN",
        hide_env_values = true,
        global = true
    )]
    app_token: Option<crate::app_auth::AppToken>,
    /// CA bundle (PEM) that signed the sidecar's app API certificate, for an
    /// https:// --addr.
    #[arg(long, env = "RAFTORAL_APP_CA", global = true)]
    app_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: WorkflowCommand,
}

#[derive(Debug, Subcommand)]
enum WorkflowCommand {
    /// Start a workflow (idempotent with --id).
    Start {
        /// Workflow type.
        name: String,
        /// Input as JSON text.
        #[arg(long, default_value = "null")]
        input: String,
        /// Workflow version.
        #[arg(long, default_value_t = 1)]
        version: u32,
        /// Workflow id; generated when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Wait for the result and print it.
        #[arg(long)]
        wait: bool,
        /// Start this many milliseconds from now (a delayed start; the
        /// workflow is PENDING until then).
        #[arg(long, default_value_t = 0)]
        start_delay_ms: u64,
        /// Fail the workflow if it has not finished this many milliseconds
        /// after it started.
        #[arg(long, default_value_t = 0)]
        execution_timeout_ms: u64,
    },
    /// Show a workflow.
    Get {
        /// Workflow id.
        id: String,
    },
    /// Wait for a workflow to finish.
    Wait {
        /// Workflow id.
        id: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Cancel a workflow. A running one gets a request: its code may run
    /// compensation steps, for up to the cleanup window, and it ends
    /// CANCELLED when its code ends with the cancellation (`wait` for it).
    Cancel {
        /// Workflow id.
        id: String,
        /// Reason recorded with the cancellation.
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
        /// How long the code may clean up, in milliseconds (default: the
        /// sidecar's --cancel-cleanup-ms); 0 cancels at once.
        #[arg(long)]
        cleanup_ms: Option<u64>,
    },
    /// Send an event to a workflow (what its code waits for with
    /// wait_event); answered once committed.
    Signal {
        /// Workflow id.
        id: String,
        /// Event name.
        name: String,
        /// Payload as JSON text.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Idempotency key: the same key twice delivers once.
        #[arg(long)]
        key: Option<String>,
        /// Signal-with-start: start a workflow of this type with this id
        /// unless one exists, then deliver the event, in one entry.
        #[arg(long, value_name = "TYPE")]
        start: Option<String>,
        /// With --start: the input as JSON text.
        #[arg(long, default_value = "null", requires = "start")]
        input: String,
        /// With --start: the workflow version.
        #[arg(long, default_value_t = 1, requires = "start")]
        version: u32,
    },
    /// Resolve (or, with --reject, reject) an awakeable by the id its
    /// workflow's code handed out; once.
    Resolve {
        /// Awakeable id (awk/SEQ/WORKFLOW_ID).
        id: String,
        /// Value as JSON text.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Reject with this message instead: the code's wait fails.
        #[arg(long)]
        reject: Option<String>,
        /// With --reject: the failure's type.
        #[arg(long, default_value = "Rejected", requires = "reject")]
        reject_type: String,
    },
    /// Show the status values a workflow's code set (set_status): the
    /// latest value of each key, from any node, also after it ended.
    Status {
        /// Workflow id.
        id: String,
        /// Only these keys (default: every key).
        keys: Vec<String>,
    },
    /// List workflows.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Only this workflow type.
        #[arg(long, default_value = "")]
        name: String,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only workflows waiting on a durable timer.
        #[arg(long)]
        sleeping: bool,
        /// Only the child workflows this workflow started.
        #[arg(long, default_value = "")]
        parent: String,
    },
    /// Show a workflow's committed checkpoints.
    History {
        /// Workflow id.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl From<StatusArg> for WorkflowStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => WorkflowStatus::Pending,
            StatusArg::Running => WorkflowStatus::Running,
            StatusArg::Completed => WorkflowStatus::Completed,
            StatusArg::Failed => WorkflowStatus::Failed,
            StatusArg::Cancelled => WorkflowStatus::Cancelled,
        }
    }
}

/// Runs one `raftoral workflow` command.
pub async fn run(args: WorkflowArgs) -> anyhow::Result<()> {
    let mut endpoint = Channel::from_shared(args.addr.clone())
        .with_context(|| format!("invalid --addr {}", args.addr))?;
    if let Some(ca) = &args.app_ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("cannot read --app-ca {}", ca.display()))?;
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        )?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the sidecar at {}", args.addr))?;
    let bearer = args.app_token.as_ref().map(|t| t.header());
    let mut client =
        WorkflowServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(value) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        });
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    match args.command {
        WorkflowCommand::Start {
            name,
            input,
            version,
            id,
            wait,
            start_delay_ms,
            execution_timeout_ms,
        } => {
            let parsed: Value = serde_json::from_str(&input).context("--input must be JSON")?;
            let r = client
                .start_workflow(StartWorkflowRequest {
                    workflow_id: id.unwrap_or_default(),
                    workflow_name: name,
                    version,
                    input: serde_json::to_vec(&parsed)?.into(),
                    start_delay_ms,
                    execution_timeout_ms,
                })
                .await
                .map_err(status)?
                .into_inner();
            let info = r.workflow.unwrap_or_default();
            if wait {
                let done = client
                    .wait_workflow(WaitWorkflowRequest {
                        workflow_id: info.workflow_id.clone(),
                        timeout: prost_types::Duration::try_from(Duration::from_secs(3600)).ok(),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                print(info_json(&done.workflow.unwrap_or_default()));
            } else {
                let mut v = info_json(&info);
                v["already_started"] = json!(r.already_started);
                print(v);
            }
        }
        WorkflowCommand::Get { id } => {
            let r = client
                .get_workflow(GetWorkflowRequest { workflow_id: id })
                .await
                .map_err(status)?;
            print(info_json(&r.into_inner().workflow.unwrap_or_default()));
        }
        WorkflowCommand::Wait { id, timeout_secs } => {
            let r = client
                .wait_workflow(WaitWorkflowRequest {
                    workflow_id: id,
                    timeout: prost_types::Duration::try_from(Duration::from_secs(timeout_secs))
                        .ok(),
                })
                .await
                .map_err(status)?;
            print(info_json(&r.into_inner().workflow.unwrap_or_default()));
        }
        WorkflowCommand::Cancel {
            id,
            reason,
            cleanup_ms,
        } => {
            let r = client
                .cancel_workflow(CancelWorkflowRequest {
                    workflow_id: id,
                    reason,
                    cleanup_ms,
                })
                .await
                .map_err(status)?;
            print(info_json(&r.into_inner().workflow.unwrap_or_default()));
        }
        WorkflowCommand::Signal {
            id,
            name,
            payload,
            key,
            start: Some(workflow_name),
            input,
            version,
        } => {
            let parsed: Value = serde_json::from_str(&payload).context("--payload must be JSON")?;
            let input: Value = serde_json::from_str(&input).context("--input must be JSON")?;
            let r = client
                .signal_with_start(SignalWithStartRequest {
                    start: Some(StartWorkflowRequest {
                        workflow_id: id,
                        workflow_name,
                        version,
                        input: serde_json::to_vec(&input)?.into(),
                        ..StartWorkflowRequest::default()
                    }),
                    name,
                    payload: serde_json::to_vec(&parsed)?.into(),
                    idempotency_key: key.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = info_json(&r.workflow.unwrap_or_default());
            out["started"] = json!(r.started);
            out["duplicate"] = json!(r.duplicate);
            print(out);
        }
        WorkflowCommand::Signal {
            id,
            name,
            payload,
            key,
            start: None,
            ..
        } => {
            let parsed: Value = serde_json::from_str(&payload).context("--payload must be JSON")?;
            let r = client
                .signal_workflow(SignalWorkflowRequest {
                    workflow_id: id,
                    name,
                    payload: serde_json::to_vec(&parsed)?.into(),
                    idempotency_key: key.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = info_json(&r.workflow.unwrap_or_default());
            out["duplicate"] = json!(r.duplicate);
            print(out);
        }
        WorkflowCommand::Resolve {
            id,
            payload,
            reject,
            reject_type,
        } => {
            let parsed: Value = serde_json::from_str(&payload).context("--payload must be JSON")?;
            let failure = reject.map(|message| Failure {
                r#type: reject_type,
                message,
                ..Failure::default()
            });
            let payload = match failure {
                Some(_) => Default::default(),
                None => serde_json::to_vec(&parsed)?.into(),
            };
            let r = client
                .complete_awakeable(CompleteAwakeableRequest {
                    awakeable_id: id,
                    payload,
                    failure,
                })
                .await
                .map_err(status)?
                .into_inner();
            print(info_json(&r.workflow.unwrap_or_default()));
        }
        WorkflowCommand::Status { id, keys } => {
            let r = client
                .get_status(GetStatusRequest {
                    workflow_id: id.clone(),
                    keys,
                })
                .await
                .map_err(status)?
                .into_inner();
            let values: serde_json::Map<String, Value> = r
                .values
                .iter()
                .map(|v| (v.key.clone(), bytes_json(&v.value)))
                .collect();
            print(json!({
                "workflow_id": id,
                "status": raftoral::status_name(r.workflow_status()),
                "values": values,
            }));
        }
        WorkflowCommand::List {
            status: s,
            name,
            limit,
            sleeping,
            parent,
        } => {
            let r = client
                .list_workflows(ListWorkflowsRequest {
                    status: s.map(WorkflowStatus::from).unwrap_or_default() as i32,
                    workflow_name: name,
                    page_size: limit,
                    page_token: String::new(),
                    sleeping,
                    parent_id: parent,
                })
                .await
                .map_err(status)?
                .into_inner();
            for w in &r.workflows {
                print(info_json(w));
            }
        }
        WorkflowCommand::History { id } => {
            let r = client
                .get_workflow_history(GetWorkflowHistoryRequest { workflow_id: id })
                .await
                .map_err(status)?
                .into_inner();
            for e in r.entries {
                let mut line = json!({
                    "seq": e.seq,
                    "name": e.checkpoint_name,
                    "value": bytes_json(&e.value),
                    "committed_at_ms": e.committed_at_ms,
                });
                // Failed steps, attempts and timers say so; values print
                // as before.
                match e.kind() {
                    HistoryEntryKind::Unspecified => {
                        if e.attempt > 1 {
                            line["attempt"] = json!(e.attempt);
                        }
                    }
                    HistoryEntryKind::TimerStarted
                    | HistoryEntryKind::TimerFired
                    | HistoryEntryKind::TimerCancelled
                    | HistoryEntryKind::EventWaiting
                    | HistoryEntryKind::EventTimedOut => {
                        line["kind"] = json!(
                            e.kind()
                                .as_str_name()
                                .trim_start_matches("HISTORY_ENTRY_KIND_")
                                .to_ascii_lowercase()
                        );
                        line["value"] = Value::Null;
                        line["fire_at_ms"] = json!(e.fire_at_ms);
                        if e.failure.is_some() {
                            line["failure"] = failure_json(e.failure.as_ref());
                        }
                    }
                    HistoryEntryKind::EventReceived => {
                        // The value is the event's payload.
                        line["kind"] = json!("event_received");
                    }
                    HistoryEntryKind::ChildStarted => {
                        // The name is the child's type, the value its id.
                        line["kind"] = json!("child_started");
                        line["value"] = json!(String::from_utf8_lossy(&e.value));
                    }
                    HistoryEntryKind::ChildCompleted => {
                        line["kind"] = json!("child_completed");
                    }
                    HistoryEntryKind::ChildFailed => {
                        line["kind"] = json!("child_failed");
                        line["value"] = Value::Null;
                        line["failure"] = failure_json(e.failure.as_ref());
                    }
                    HistoryEntryKind::EventWaitCancelled => {
                        // A wait that lost a race; a value is the payload
                        // of the event it gave back.
                        line["kind"] = json!("event_wait_cancelled");
                        if e.value.is_empty() {
                            line["value"] = Value::Null;
                        }
                    }
                    HistoryEntryKind::StatusSet => {
                        // The name is the key, the value the status.
                        line["kind"] = json!("status_set");
                    }
                    kind => {
                        line["kind"] = json!(if kind == HistoryEntryKind::StepFailed {
                            "step_failed"
                        } else {
                            "attempt_failed"
                        });
                        line["value"] = Value::Null;
                        line["attempt"] = json!(e.attempt.max(1));
                        line["failure"] = failure_json(e.failure.as_ref());
                        if e.next_attempt_at_ms > 0 {
                            line["next_attempt_at_ms"] = json!(e.next_attempt_at_ms);
                        }
                    }
                }
                print(line);
            }
        }
    }
    Ok(())
}

fn print(v: Value) {
    println!("{v}");
}

/// JSON values print as JSON; anything else as a lossy string.
fn bytes_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| json!(String::from_utf8_lossy(b)))
}

/// A failure as the CLI prints it: type, message, details (as JSON).
fn failure_json(f: Option<&Failure>) -> Value {
    match f {
        None => Value::Null,
        Some(f) => json!({
            "type": f.r#type,
            "message": f.message,
            "details": if f.details_json.is_empty() { Value::Null } else { bytes_json(f.details_json.as_bytes()) },
            "non_retryable": f.non_retryable,
        }),
    }
}

fn info_json(w: &WorkflowInfo) -> Value {
    json!({
        "workflow_id": w.workflow_id,
        "workflow_name": w.workflow_name,
        "version": w.version,
        "status": raftoral::status_name(w.status()),
        "owner_node_id": w.owner_node_id,
        "checkpoint_count": w.checkpoint_count,
        "input": bytes_json(&w.input),
        "result": if w.result.is_empty() { Value::Null } else { bytes_json(&w.result) },
        "error": w.error,
        "failure": failure_json(w.failure.as_ref()),
        "pending_reason": w.pending_reason,
        "start_at_ms": (w.start_at_ms > 0).then_some(w.start_at_ms),
        "timeout_at_ms": (w.timeout_at_ms > 0).then_some(w.timeout_at_ms),
        "inbox_size": w.inbox_size,
        "event_waits": w.event_waits.iter().map(|e| json!({
            "seq": e.seq,
            "name": e.name,
            "timeout_at_ms": (e.timeout_at_ms > 0).then_some(e.timeout_at_ms),
        })).collect::<Vec<_>>(),
        "cancel_requested": (w.cancel_deadline_ms > 0).then(|| json!({
            "reason": w.cancel_reason,
            "cleanup_until_ms": w.cancel_deadline_ms,
        })),
        "pending_timers": w.pending_timers.iter().map(|t| json!({
            "seq": t.seq,
            "name": t.name,
            "fire_at_ms": t.fire_at_ms,
        })).collect::<Vec<_>>(),
        "parent": (!w.parent_id.is_empty()).then(|| json!({
            "workflow_id": w.parent_id,
            "seq": w.parent_seq,
            "parent_close": w.parent_close().as_str_name()
                .trim_start_matches("PARENT_CLOSE_POLICY_").to_ascii_lowercase(),
        })),
        "open_children": w.open_children,
    })
}
