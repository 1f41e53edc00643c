//! `NativeClient`: connect, start, get, wait, cancel, list, history,
//! events (signal, signal-with-start), awakeables' completions and status
//! reads. Values cross as
//! `Buffer`s of encoded bytes; the TypeScript layer decodes them with its
//! codec and turns the records into typed objects.

use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use raftoral_client::proto::awakeable;
use raftoral_client::proto::sidecar::v1::{EventWait, PendingTimer, StatusValue};
use raftoral_client::proto::sidecar::v1::{
    HistoryEntry, HistoryEntryKind, ListWorkflowsRequest, ParentClosePolicy,
};
use raftoral_client::{
    AppToken, ClientError, ClientTls, MAX_TIMER, RaftoralClient, Signal, StartOptions,
    StreamOptions, WorkflowInfo,
};
use tokio::time::Instant;

use crate::errors::{already_completed, to_js_err, usage};
use crate::worker::NativeFailure;

/// Server-side wait of one WaitWorkflow call when the caller gave no timeout.
const WAIT_SLICE: Duration = Duration::from_secs(30);

/// A workflow's state, as the sidecar reports it.
#[napi(object)]
pub struct NativeWorkflowInfo {
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow type.
    pub workflow_name: String,
    /// Workflow version.
    pub version: u32,
    /// `WorkflowStatus` number (1 pending … 5 cancelled).
    pub status: i32,
    /// Raft node id of the owner (0: none).
    pub owner_node_id: f64,
    /// Committed checkpoints.
    pub checkpoint_count: f64,
    /// Encoded input.
    pub input: Buffer,
    /// Encoded result (completed workflows).
    pub result: Buffer,
    /// Failure message or cancellation reason.
    pub error: String,
    /// The failure, structured, when the workflow failed with one (its own
    /// application error, or a step failure it did not catch).
    pub failure: Option<NativeFailure>,
    /// Why a pending workflow waits.
    pub pending_reason: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: f64,
    /// Last change, ms since the epoch.
    pub updated_at_ms: f64,
    /// Its durable timers started and not fired yet, earliest first.
    pub pending_timers: Vec<NativePendingTimer>,
    /// A delayed start not due yet: when the workflow starts (log time, ms
    /// since the epoch); absent otherwise.
    pub start_at_ms: Option<f64>,
    /// When the workflow times out (log time, ms since the epoch), if it
    /// has an execution timeout; absent otherwise.
    pub timeout_at_ms: Option<f64>,
    /// The reason of the cancel request the running workflow is cleaning
    /// up after; absent otherwise.
    pub cancel_reason: Option<String>,
    /// When that cleanup window ends (log time, ms since the epoch): the
    /// workflow is CANCELLED then if its code has not ended; absent while
    /// no cancel request runs.
    pub cancel_deadline_ms: Option<f64>,
    /// Events sent and not consumed yet (the inbox).
    pub inbox_size: f64,
    /// The event waits of the running code, earliest first.
    pub event_waits: Vec<NativeEventWait>,
    /// The parent of a child workflow; absent: none.
    pub parent_id: Option<String>,
    /// A child workflow's position in its parent's history; absent: not a
    /// child.
    pub parent_seq: Option<f64>,
    /// What happens to a child workflow if its parent ends first:
    /// `"cancel"`, `"abandon"` or `"terminate"`; absent: not a child.
    pub parent_close: Option<String>,
    /// The children it started that have not ended, as workflow ids.
    pub open_children: Vec<String>,
}

/// A position where a workflow's code waits for an event.
#[napi(object)]
pub struct NativeEventWait {
    /// The wait's position in the workflow's history.
    pub seq: f64,
    /// The event name it waits for.
    pub name: String,
    /// When the wait times out (log time, ms since the epoch); absent:
    /// never.
    pub timeout_at_ms: Option<f64>,
}

impl From<EventWait> for NativeEventWait {
    fn from(w: EventWait) -> Self {
        Self {
            seq: w.seq as f64,
            name: w.name,
            timeout_at_ms: ms_or_none(w.timeout_at_ms),
        }
    }
}

/// What `signalWorkflow` returned.
#[napi(object)]
pub struct NativeSignalled {
    /// True when an event with the same idempotency key was sent before:
    /// this one was not delivered again.
    pub duplicate: bool,
    /// The workflow after the event was committed.
    pub workflow: Option<NativeWorkflowInfo>,
}

/// What `signalWithStart` returned.
#[napi(object)]
pub struct NativeSignalledWithStart {
    /// True when this call started the workflow (false: it existed).
    pub started: bool,
    /// True when an event with the same idempotency key was sent before:
    /// this one was not delivered again.
    pub duplicate: bool,
    /// The workflow after the entry was committed.
    pub workflow: Option<NativeWorkflowInfo>,
}

/// The latest value of one status key (`getStatus`).
#[napi(object)]
pub struct NativeStatusValue {
    /// The key.
    pub key: String,
    /// Encoded value.
    pub value: Buffer,
    /// When it was set (log time, ms since the epoch).
    pub set_at_ms: f64,
    /// Its entry's index in the workflow's history.
    pub history_index: f64,
}

impl From<StatusValue> for NativeStatusValue {
    fn from(v: StatusValue) -> Self {
        Self {
            key: v.key,
            value: v.value.to_vec().into(),
            set_at_ms: v.set_at_ms as f64,
            history_index: v.history_index as f64,
        }
    }
}

/// What `getStatus` returned.
#[napi(object)]
pub struct NativeStatus {
    /// The latest value of each key asked for that the code set, ordered
    /// by key; a key never set is absent.
    pub values: Vec<NativeStatusValue>,
    /// The workflow's `WorkflowStatus` number (1 pending … 5 cancelled).
    pub workflow_status: i32,
}

/// A durable timer a workflow waits on.
#[napi(object)]
pub struct NativePendingTimer {
    /// The timer's position in the workflow's history.
    pub seq: f64,
    /// The timer's name (default `sleep`).
    pub name: String,
    /// When it fires (log time, ms since the epoch).
    pub fire_at_ms: f64,
}

impl From<PendingTimer> for NativePendingTimer {
    fn from(t: PendingTimer) -> Self {
        Self {
            seq: t.seq as f64,
            name: t.name,
            fire_at_ms: t.fire_at_ms as f64,
        }
    }
}

/// A time of the protocol where 0 means none.
fn ms_or_none(ms: u64) -> Option<f64> {
    (ms != 0).then_some(ms as f64)
}

impl From<WorkflowInfo> for NativeWorkflowInfo {
    fn from(info: WorkflowInfo) -> Self {
        let child = !info.parent_id.is_empty();
        let parent_close = match ParentClosePolicy::try_from(info.parent_close) {
            Ok(ParentClosePolicy::Abandon) => "abandon",
            Ok(ParentClosePolicy::Terminate) => "terminate",
            // Unspecified means cancel; a policy newer than this SDK too.
            _ => "cancel",
        };
        Self {
            parent_seq: child.then_some(info.parent_seq as f64),
            parent_close: child.then(|| parent_close.to_owned()),
            parent_id: child.then_some(info.parent_id),
            open_children: info.open_children,
            status: info.status,
            owner_node_id: info.owner_node_id as f64,
            checkpoint_count: info.checkpoint_count as f64,
            input: info.input.to_vec().into(),
            result: info.result.to_vec().into(),
            created_at_ms: info.created_at_ms as f64,
            updated_at_ms: info.updated_at_ms as f64,
            start_at_ms: ms_or_none(info.start_at_ms),
            timeout_at_ms: ms_or_none(info.timeout_at_ms),
            cancel_deadline_ms: ms_or_none(info.cancel_deadline_ms),
            cancel_reason: (info.cancel_deadline_ms != 0).then_some(info.cancel_reason),
            pending_timers: info.pending_timers.into_iter().map(Into::into).collect(),
            inbox_size: info.inbox_size as f64,
            event_waits: info.event_waits.into_iter().map(Into::into).collect(),
            workflow_id: info.workflow_id,
            workflow_name: info.workflow_name,
            version: info.version,
            error: info.error,
            failure: info.failure.map(Into::into),
            pending_reason: info.pending_reason,
        }
    }
}

/// One committed checkpoint.
#[napi(object)]
pub struct NativeHistoryEntry {
    /// 0-based position.
    pub seq: f64,
    /// Checkpoint name.
    pub checkpoint_name: String,
    /// Encoded value.
    pub value: Buffer,
    /// Commit time, ms since the epoch.
    pub committed_at_ms: f64,
    /// What the entry records: `VALUE`, `STEP_FAILED`,
    /// `STEP_ATTEMPT_FAILED`, `TIMER_STARTED`, `TIMER_FIRED`,
    /// `TIMER_CANCELLED`, `EVENT_WAITING`, `EVENT_RECEIVED`,
    /// `EVENT_TIMED_OUT`, `EVENT_WAIT_CANCELLED`, `CHILD_STARTED` (its
    /// value: the child's id, UTF-8), `CHILD_COMPLETED` (the child's
    /// result), `CHILD_FAILED`, `STATUS_SET` (`UNKNOWN` for a kind newer
    /// than this SDK).
    pub kind: String,
    /// For `TIMER_STARTED`, `TIMER_FIRED` and `TIMER_CANCELLED`: the
    /// timer's deadline; for `EVENT_*`, the wait's timeout when it has one
    /// (log time, ms since the epoch); absent otherwise.
    pub fire_at_ms: Option<f64>,
}

impl From<HistoryEntry> for NativeHistoryEntry {
    fn from(e: HistoryEntry) -> Self {
        let kind = match HistoryEntryKind::try_from(e.kind) {
            Ok(HistoryEntryKind::Unspecified) => "VALUE",
            Ok(HistoryEntryKind::StepFailed) => "STEP_FAILED",
            Ok(HistoryEntryKind::StepAttemptFailed) => "STEP_ATTEMPT_FAILED",
            Ok(HistoryEntryKind::TimerStarted) => "TIMER_STARTED",
            Ok(HistoryEntryKind::TimerFired) => "TIMER_FIRED",
            Ok(HistoryEntryKind::TimerCancelled) => "TIMER_CANCELLED",
            Ok(HistoryEntryKind::EventWaiting) => "EVENT_WAITING",
            Ok(HistoryEntryKind::EventReceived) => "EVENT_RECEIVED",
            Ok(HistoryEntryKind::EventTimedOut) => "EVENT_TIMED_OUT",
            Ok(HistoryEntryKind::EventWaitCancelled) => "EVENT_WAIT_CANCELLED",
            Ok(HistoryEntryKind::ChildStarted) => "CHILD_STARTED",
            Ok(HistoryEntryKind::ChildCompleted) => "CHILD_COMPLETED",
            Ok(HistoryEntryKind::ChildFailed) => "CHILD_FAILED",
            Ok(HistoryEntryKind::StatusSet) => "STATUS_SET",
            Err(_) => "UNKNOWN",
        };
        let fire_at_ms = match kind {
            "TIMER_STARTED" | "TIMER_FIRED" | "TIMER_CANCELLED" => Some(e.fire_at_ms as f64),
            // 0: a wait without a timeout.
            "EVENT_WAITING" | "EVENT_RECEIVED" | "EVENT_TIMED_OUT" | "EVENT_WAIT_CANCELLED" => {
                ms_or_none(e.fire_at_ms)
            }
            _ => None,
        };
        Self {
            seq: e.seq as f64,
            checkpoint_name: e.checkpoint_name,
            value: e.value.to_vec().into(),
            committed_at_ms: e.committed_at_ms as f64,
            kind: kind.to_owned(),
            fire_at_ms,
        }
    }
}

/// What a start returned.
#[napi(object)]
pub struct NativeStarted {
    /// The workflow id (generated when none was given).
    pub workflow_id: String,
    /// True when the id named an existing workflow.
    pub already_started: bool,
}

/// One page of `listWorkflows`.
#[napi(object)]
pub struct NativePage {
    /// The workflows of this page.
    pub workflows: Vec<NativeWorkflowInfo>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A connection to a sidecar (or to a `LocalNode`), shared by clones.
#[napi]
pub struct NativeClient {
    pub(crate) inner: RaftoralClient,
}

#[napi]
impl NativeClient {
    /// Connects to the sidecar at `url`, trying `attempts` times with a
    /// doubling pause from `retryDelayMs`. `token` goes with every call (the
    /// sidecar's RAFTORAL_APP_TOKEN); `tlsCa` is the PEM file of the CA that
    /// signed the sidecar's certificate, for an https:// URL.
    #[napi(factory)]
    pub async fn connect(
        url: String,
        attempts: u32,
        retry_delay_ms: u32,
        token: Option<String>,
        tls_ca: Option<String>,
    ) -> napi::Result<Self> {
        crate::init_logging();
        let first_delay = Duration::from_millis(u64::from(retry_delay_ms));
        let options = StreamOptions {
            token: token.map(AppToken::new).transpose().map_err(to_js_err)?,
            tls: tls_ca
                .map(|ca| ClientTls::from_files(ca, None))
                .transpose()
                .map_err(to_js_err)?,
            ..StreamOptions::default()
        };
        let inner = RaftoralClient::connect_retrying(url, options, attempts, first_delay)
            .await
            .map_err(to_js_err)?;
        Ok(Self { inner })
    }

    /// The sidecar address (or the local node's name).
    #[napi(getter)]
    pub fn endpoint(&self) -> String {
        self.inner.endpoint().to_owned()
    }

    /// Starts a workflow (idempotent on `workflowId`; empty: generated and
    /// retried on UNAVAILABLE, as the Rust SDK does). `startDelayMs`: start
    /// this long after the start is committed (PENDING until then; absent
    /// or 0: at once); `executionTimeoutMs`: fail the workflow with the
    /// failure type `raftoral.WorkflowTimeout` if it has not finished this
    /// long after it started (absent: no limit). Fractions round up; both
    /// at most 366 days. Throws `INVALID_ARGUMENT` for a negative or NaN
    /// one, a zero timeout, or one beyond 366 days.
    #[napi]
    pub async fn start_workflow(
        &self,
        workflow_id: String,
        workflow_name: String,
        version: u32,
        input: Buffer,
        start_delay_ms: Option<f64>,
        execution_timeout_ms: Option<f64>,
    ) -> napi::Result<NativeStarted> {
        let options = start_options(workflow_id, start_delay_ms, execution_timeout_ms)?;
        let handle = self
            .inner
            .start_workflow_raw_with(
                &workflow_name,
                version,
                Bytes::from(input.to_vec()),
                &options,
            )
            .await
            .map_err(to_js_err)?;
        Ok(NativeStarted {
            workflow_id: handle.workflow_id().to_owned(),
            already_started: handle.already_started(),
        })
    }

    /// The workflow's state.
    #[napi]
    pub async fn get_workflow(&self, workflow_id: String) -> napi::Result<NativeWorkflowInfo> {
        let info = self
            .inner
            .get_workflow(&workflow_id)
            .await
            .map_err(to_js_err)?;
        Ok(info.into())
    }

    /// Waits up to `timeoutMs` (none: until it finishes) for a terminal
    /// status; rejects with code `TIMEOUT` when it is still running.
    #[napi]
    pub async fn wait_workflow(
        &self,
        workflow_id: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<NativeWorkflowInfo> {
        let handle = self.inner.workflow_handle(&workflow_id);
        let deadline =
            timeout_ms.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0) / 1000.0));
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            // The server treats a zero timeout as its default; ask for at
            // least a millisecond so that an elapsed deadline stays short.
            match handle.wait(slice.max(Duration::from_millis(1))).await {
                Ok(info) => return Ok(info.into()),
                Err(e)
                    if e.code() == Some(tonic::Code::DeadlineExceeded)
                        && deadline.is_none_or(|d| Instant::now() < d) => {}
                Err(e) => return Err(to_js_err(e)),
            }
        }
    }

    /// Waits for the outcome and returns the encoded result; rejects with
    /// `WORKFLOW_FAILED` or `CANCELLED` for the other outcomes.
    #[napi]
    pub async fn result(&self, workflow_id: String) -> napi::Result<Buffer> {
        let handle = self.inner.workflow_handle(&workflow_id);
        let bytes = handle.result_raw().await.map_err(to_js_err)?;
        Ok(bytes.to_vec().into())
    }

    /// Cancels a workflow; returns its state after the cancellation. A
    /// pending one is CANCELLED at once; a running one gets a request and
    /// may clean up for `cleanupMs` (absent: the sidecar's default, 30 s
    /// unless configured; 0: no cleanup, CANCELLED at once): it stays
    /// RUNNING (with `cancelReason` and `cancelDeadlineMs`) until its code
    /// ends or the window runs out. Throws `INVALID_ARGUMENT` for a
    /// `cleanupMs` that is not a whole number of milliseconds from 0 to 366
    /// days.
    #[napi]
    pub async fn cancel_workflow(
        &self,
        workflow_id: String,
        reason: String,
        cleanup_ms: Option<f64>,
    ) -> napi::Result<NativeWorkflowInfo> {
        let cleanup = cleanup_ms.map(cleanup).transpose()?;
        let info = self
            .inner
            .cancel_workflow_with(&workflow_id, &reason, cleanup)
            .await
            .map_err(to_js_err)?;
        Ok(info.into())
    }

    /// One page of workflows, filtered by status number and name, with
    /// `sleeping` to those waiting on a durable timer, and with `parentId`
    /// (non-empty) to the children of that workflow.
    #[napi]
    pub async fn list_workflows(
        &self,
        status: i32,
        workflow_name: String,
        page_size: u32,
        page_token: String,
        sleeping: Option<bool>,
        parent_id: Option<String>,
    ) -> napi::Result<NativePage> {
        let page = self
            .inner
            .list_workflows(ListWorkflowsRequest {
                status,
                workflow_name,
                page_size,
                page_token,
                sleeping: sleeping.unwrap_or(false),
                parent_id: parent_id.unwrap_or_default(),
            })
            .await
            .map_err(to_js_err)?;
        Ok(NativePage {
            workflows: page.workflows.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// Sends the event `name` with the encoded `payload` to a workflow;
    /// resolves once it is committed in the workflow's inbox (or consumed
    /// by a wait). With `idempotencyKey` (non-empty), an event with a key
    /// already delivered is not delivered again (`duplicate`). Rejects with
    /// `NOT_FOUND` (unknown workflow), `NOT_RUNNING` (it has ended; the
    /// sidecar's `FAILED_PRECONDITION`), `INVALID_ARGUMENT` (a bad name or
    /// key, a payload over the sidecar's value limit), `RESOURCE_EXHAUSTED`
    /// (its inbox is full).
    #[napi]
    pub async fn signal_workflow(
        &self,
        workflow_id: String,
        name: String,
        payload: Buffer,
        idempotency_key: Option<String>,
    ) -> napi::Result<NativeSignalled> {
        let key = idempotency_key.filter(|k| !k.is_empty());
        let sent = self
            .inner
            .signal_workflow_raw(
                &workflow_id,
                &name,
                Bytes::from(payload.to_vec()),
                key.as_deref(),
            )
            .await
            .map_err(|e| signal_err(&workflow_id, e))?;
        Ok(NativeSignalled {
            duplicate: sent.duplicate,
            workflow: sent.workflow.map(Into::into),
        })
    }

    /// Starts the workflow `workflowId` (required: non-empty) of
    /// `workflowName` at `version` with the encoded `input` unless it
    /// exists, then sends it the event `name` with the encoded `payload`
    /// (`idempotencyKey` as `signalWorkflow` takes it), in one committed
    /// entry: concurrent calls start one workflow and deliver every event.
    /// A workflow that exists keeps its input and options. The input is
    /// any encoding (the client's codec), as `startWorkflow` sends it.
    /// `startDelayMs` and `executionTimeoutMs` as `startWorkflow` takes
    /// them. Rejects with `INVALID_ARGUMENT` (no id, bad options, a bad
    /// name or key, an input or payload over the limit),
    /// `NOT_RUNNING` (the workflow has ended; the sidecar's
    /// `FAILED_PRECONDITION`), `RESOURCE_EXHAUSTED` (its inbox is full).
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub async fn signal_with_start(
        &self,
        workflow_id: String,
        workflow_name: String,
        version: u32,
        input: Buffer,
        name: String,
        payload: Buffer,
        idempotency_key: Option<String>,
        start_delay_ms: Option<f64>,
        execution_timeout_ms: Option<f64>,
    ) -> napi::Result<NativeSignalledWithStart> {
        if workflow_id.is_empty() {
            return Err(usage(format!(
                "signalWithStart of '{workflow_name}' needs an id: the event needs a known \
                 target, and a retry must find the workflow it started"
            )));
        }
        let options = start_options(workflow_id.clone(), start_delay_ms, execution_timeout_ms)?;
        let signal = Signal {
            name,
            payload: Bytes::from(payload.to_vec()),
            idempotency_key: idempotency_key.filter(|k| !k.is_empty()),
        };
        let sent = self
            .inner
            .signal_with_start_raw(
                &workflow_name,
                version,
                Bytes::from(input.to_vec()),
                &options,
                signal,
            )
            .await
            .map_err(|e| signal_err(&workflow_id, e))?;
        Ok(NativeSignalledWithStart {
            started: sent.started,
            duplicate: sent.duplicate,
            workflow: sent.workflow.map(Into::into),
        })
    }

    /// Completes the awakeable `awakeableId` (as the workflow's code got it
    /// from `requestAwakeable`): resolves it with the encoded `payload`, or,
    /// with `failure`, rejects it (the code's wait fails with `STEP_FAILED`
    /// of that type and message; `payload` is ignored then). Once: resolves
    /// with the workflow's state once the completion is committed (kept
    /// until the code waits, if it does not wait yet), whichever node took
    /// the call, also while the workflow's owner is down. Rejects with
    /// `ALREADY_COMPLETED` (the sidecar's `ALREADY_EXISTS`: resolved or
    /// rejected before), `INVALID_ARGUMENT` (a malformed id, a payload over
    /// the sidecar's value limit, a bad failure type), `NOT_FOUND` (unknown
    /// workflow), `NOT_RUNNING` (the workflow has ended; the sidecar's
    /// `FAILED_PRECONDITION`).
    #[napi]
    pub async fn complete_awakeable(
        &self,
        awakeable_id: String,
        payload: Buffer,
        failure: Option<NativeFailure>,
    ) -> napi::Result<NativeWorkflowInfo> {
        let info = self
            .inner
            .complete_awakeable(
                &awakeable_id,
                Bytes::from(payload.to_vec()),
                failure.map(Into::into),
            )
            .await
            .map_err(|e| match e {
                ClientError::Status {
                    code: tonic::Code::AlreadyExists,
                    message,
                    ..
                } => already_completed(&awakeable_id, message),
                e => {
                    // The workflow of a well-formed id (a malformed one is
                    // INVALID_ARGUMENT, never FAILED_PRECONDITION).
                    let workflow_id = awakeable::parse(&awakeable_id)
                        .map(|(id, _)| id)
                        .unwrap_or_default();
                    signal_err(&workflow_id, e)
                }
            })?;
        Ok(info.into())
    }

    /// The status values the workflow's code set (`ctx.setStatus`): the
    /// latest value of each key in `keys` (every key when empty), from the
    /// replicated history, so any node answers, also after the workflow
    /// ended. Rejects with `NOT_FOUND` (unknown workflow),
    /// `INVALID_ARGUMENT` (a bad key).
    #[napi]
    pub async fn get_status(
        &self,
        workflow_id: String,
        keys: Vec<String>,
    ) -> napi::Result<NativeStatus> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let found = self
            .inner
            .get_status(&workflow_id, &keys)
            .await
            .map_err(to_js_err)?;
        Ok(NativeStatus {
            workflow_status: found.workflow_status,
            values: found.values.into_iter().map(Into::into).collect(),
        })
    }

    /// The committed checkpoints of a workflow, in seq order.
    #[napi]
    pub async fn history(&self, workflow_id: String) -> napi::Result<Vec<NativeHistoryEntry>> {
        let entries = self
            .inner
            .get_workflow_history(&workflow_id)
            .await
            .map_err(to_js_err)?;
        Ok(entries.into_iter().map(Into::into).collect())
    }
}

/// The start options of `startWorkflow` and `signalWithStart` (an empty
/// id: none), checked as `startWorkflow` documents.
fn start_options(
    workflow_id: String,
    start_delay_ms: Option<f64>,
    execution_timeout_ms: Option<f64>,
) -> napi::Result<StartOptions> {
    let start_delay = match start_delay_ms {
        Some(ms) => duration("startDelay", ms)?,
        None => Duration::ZERO,
    };
    let execution_timeout = match execution_timeout_ms {
        Some(ms) => {
            let timeout = duration("executionTimeout", ms)?;
            if timeout.is_zero() {
                return Err(usage(
                    "executionTimeout is 0: give a positive timeout, or none".into(),
                ));
            }
            Some(timeout)
        }
        None => None,
    };
    Ok(StartOptions {
        workflow_id: (!workflow_id.is_empty()).then_some(workflow_id),
        start_delay,
        execution_timeout,
    })
}

/// The error of an event sent to `workflow_id`: one that has ended (the
/// sidecar's `FAILED_PRECONDITION`) is the error a step of a workflow no
/// longer running gets (`NOT_RUNNING`), with the sidecar's explanation.
fn signal_err(workflow_id: &str, e: ClientError) -> napi::Error {
    match e {
        ClientError::Status {
            code: tonic::Code::FailedPrecondition,
            message,
            ..
        } => to_js_err(ClientError::NotRunning {
            workflow_id: workflow_id.to_owned(),
            message,
        }),
        e => to_js_err(e),
    }
}

/// `ms` milliseconds of the start option `what` (a fraction rounds up):
/// not negative, not NaN, at most 366 days.
fn duration(what: &str, ms: f64) -> napi::Result<Duration> {
    if ms.is_nan() || ms < 0.0 {
        return Err(usage(format!(
            "{what} is {ms} ms; it must not be negative (nor NaN)"
        )));
    }
    // Saturating: Infinity and anything beyond u64 are beyond the limit.
    let d = Duration::from_millis(ms.ceil() as u64);
    if d > MAX_TIMER {
        return Err(usage(format!("{what} is {ms} ms; at most 366 days")));
    }
    Ok(d)
}

/// A cancel's cleanup window of `ms` milliseconds: a whole number from 0 to
/// 366 days (the sidecar's limit).
fn cleanup(ms: f64) -> napi::Result<Duration> {
    if !(ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0) {
        return Err(usage(format!(
            "cleanupMs is {ms}; give a whole number of milliseconds, 0 or more (0: cancel at once), or none for the sidecar's default"
        )));
    }
    let d = Duration::from_millis(ms as u64);
    if d > MAX_TIMER {
        return Err(usage(format!("cleanupMs is {ms}; at most 366 days")));
    }
    Ok(d)
}
