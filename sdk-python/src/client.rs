//! `Client`: the native client (connect, start, get, wait, cancel, signal,
//! signal-with-start, awakeables' completions, status, list, history).
//! Results cross to Python as plain dicts and bytes; the Python layer turns
//! them into typed objects and decodes values with its codec.

use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use raftoral_client::proto::awakeable;
use raftoral_client::proto::sidecar::v1::{HistoryEntry, HistoryEntryKind, ListWorkflowsRequest};
use raftoral_client::{
    AppToken, ClientError, ClientTls, Failure, RaftoralClient, Signal, StartOptions, StreamOptions,
    WorkflowInfo,
};
use tokio::time::Instant;

use crate::errors::to_py_err;

/// Server-side wait of one WaitWorkflow call when the caller gave no timeout.
const WAIT_SLICE: Duration = Duration::from_secs(30);

/// A connection to a sidecar (or to a `LocalNode`), shared by clones.
#[pyclass(frozen, module = "raftoral._core")]
pub struct Client {
    pub(crate) inner: RaftoralClient,
}

/// A Python-owned copy of encoded bytes, created while attached.
fn py_bytes(b: &[u8]) -> Py<PyBytes> {
    Python::attach(|py| PyBytes::new(py, b).unbind())
}

pub(crate) fn info_dict(py: Python<'_>, info: &WorkflowInfo) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("workflow_id", &info.workflow_id)?;
    d.set_item("workflow_name", &info.workflow_name)?;
    d.set_item("version", info.version)?;
    d.set_item("status", info.status)?;
    d.set_item("owner_node_id", info.owner_node_id)?;
    d.set_item("checkpoint_count", info.checkpoint_count)?;
    d.set_item("input", PyBytes::new(py, &info.input))?;
    d.set_item("result", PyBytes::new(py, &info.result))?;
    d.set_item("error", &info.error)?;
    d.set_item("pending_reason", &info.pending_reason)?;
    d.set_item("created_at_ms", info.created_at_ms)?;
    d.set_item("updated_at_ms", info.updated_at_ms)?;
    // Timers started and not fired yet, earliest first: (seq, name, fire_at_ms).
    let timers = info
        .pending_timers
        .iter()
        .map(|t| (t.seq, t.name.as_str(), t.fire_at_ms))
        .collect::<Vec<_>>();
    d.set_item("pending_timers", timers)?;
    d.set_item("start_at_ms", info.start_at_ms)?;
    d.set_item("timeout_at_ms", info.timeout_at_ms)?;
    // A cancel request whose cleanup runs: its reason, and when the window
    // ends (0: none).
    d.set_item("cancel_reason", &info.cancel_reason)?;
    d.set_item("cancel_deadline_ms", info.cancel_deadline_ms)?;
    // Events sent and not consumed yet, and the code's open waits, earliest
    // first: (seq, name, timeout_at_ms).
    d.set_item("inbox_size", info.inbox_size)?;
    let waits = info
        .event_waits
        .iter()
        .map(|w| (w.seq, w.name.as_str(), w.timeout_at_ms))
        .collect::<Vec<_>>();
    d.set_item("event_waits", waits)?;
    // A child workflow's parent (empty: none), its position there and its
    // parent-close policy (the proto's number); the children this workflow
    // started that have not ended.
    d.set_item("parent_id", &info.parent_id)?;
    d.set_item("parent_seq", info.parent_seq)?;
    d.set_item("parent_close", info.parent_close)?;
    d.set_item("open_children", info.open_children.clone())?;
    // The structured failure of a FAILED workflow that has one (an uncaught
    // step failure, or the function's own `ApplicationError`); else None.
    match &info.failure {
        Some(f) => {
            let failure = PyDict::new(py);
            failure.set_item("type", &f.r#type)?;
            failure.set_item("message", &f.message)?;
            failure.set_item("details_json", &f.details_json)?;
            failure.set_item("non_retryable", f.non_retryable)?;
            d.set_item("failure", failure)?;
        }
        None => d.set_item("failure", py.None())?,
    }
    Ok(d.unbind())
}

/// `seconds` of start option `what` as a duration: refused when negative
/// (or, with `positive`, zero) or not a number. Beyond 366 days is left to
/// the core, which refuses it with its own message.
fn start_seconds(what: &str, seconds: f64, positive: bool) -> PyResult<Duration> {
    let refused = if seconds.is_nan() {
        "must be a number of seconds"
    } else if seconds < 0.0 || (positive && seconds == 0.0) {
        if positive {
            "must be more than 0 (None: no limit)"
        } else {
            "cannot be negative"
        }
    } else {
        ""
    };
    if !refused.is_empty() {
        return Err(to_py_err(ClientError::Usage(format!(
            "{what} is {seconds} s: it {refused}; nothing was started"
        ))));
    }
    // To the millisecond, the protocol's unit; too big for a duration is
    // beyond the limit anyway.
    Ok(Duration::try_from_secs_f64((seconds * 1000.0).round() / 1000.0).unwrap_or(Duration::MAX))
}

/// A cancel's cleanup window of `seconds`: refused when negative or not a
/// number. Beyond 366 days is left to the sidecar, which refuses it.
fn cleanup_seconds(seconds: f64) -> PyResult<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(to_py_err(ClientError::Usage(format!(
            "the cleanup window is {seconds} s: it must be a number of seconds of at least 0 \
             (0: cancel at once; None: the sidecar's default); nothing was cancelled"
        ))));
    }
    // To the millisecond, the protocol's unit.
    Ok(Duration::try_from_secs_f64((seconds * 1000.0).round() / 1000.0).unwrap_or(Duration::MAX))
}

fn info_py(info: WorkflowInfo) -> PyResult<Py<PyDict>> {
    Python::attach(|py| info_dict(py, &info))
}

/// What a history entry records, as `HistoryEntry.kind` names it: the
/// proto's name without its prefix, and `VALUE` for a step's value (the
/// proto's UNSPECIFIED).
fn kind_name(kind: HistoryEntryKind) -> &'static str {
    match kind {
        HistoryEntryKind::Unspecified => "VALUE",
        HistoryEntryKind::StepFailed => "STEP_FAILED",
        HistoryEntryKind::StepAttemptFailed => "STEP_ATTEMPT_FAILED",
        HistoryEntryKind::TimerStarted => "TIMER_STARTED",
        HistoryEntryKind::TimerFired => "TIMER_FIRED",
        HistoryEntryKind::TimerCancelled => "TIMER_CANCELLED",
        HistoryEntryKind::EventWaiting => "EVENT_WAITING",
        HistoryEntryKind::EventReceived => "EVENT_RECEIVED",
        HistoryEntryKind::EventTimedOut => "EVENT_TIMED_OUT",
        HistoryEntryKind::StatusSet => "STATUS_SET",
        HistoryEntryKind::EventWaitCancelled => "EVENT_WAIT_CANCELLED",
        HistoryEntryKind::ChildStarted => "CHILD_STARTED",
        HistoryEntryKind::ChildCompleted => "CHILD_COMPLETED",
        HistoryEntryKind::ChildFailed => "CHILD_FAILED",
    }
}

fn history_py(entries: Vec<HistoryEntry>) -> PyResult<Vec<Py<PyDict>>> {
    Python::attach(|py| {
        entries
            .iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("seq", e.seq)?;
                d.set_item("checkpoint_name", &e.checkpoint_name)?;
                d.set_item("value", PyBytes::new(py, &e.value))?;
                d.set_item("committed_at_ms", e.committed_at_ms)?;
                d.set_item("kind", kind_name(e.kind()))?;
                d.set_item("fire_at_ms", e.fire_at_ms)?;
                Ok(d.unbind())
            })
            .collect()
    })
}

#[pymethods]
impl Client {
    /// Connects to the sidecar at `url`, trying `attempts` times with a
    /// doubling pause from `retry_delay` seconds. `token` is sent with every
    /// call (the sidecar's RAFTORAL_APP_TOKEN); `tls_ca` is the PEM file of
    /// the CA that signed the sidecar's certificate, for an https:// URL.
    #[staticmethod]
    #[pyo3(signature = (url, attempts = 5, retry_delay = 0.1, token = None, tls_ca = None))]
    fn connect(
        py: Python<'_>,
        url: String,
        attempts: u32,
        retry_delay: f64,
        token: Option<String>,
        tls_ca: Option<String>,
    ) -> PyResult<Bound<'_, PyAny>> {
        let first_delay = Duration::from_secs_f64(retry_delay.max(0.0));
        let options = StreamOptions {
            token: token.map(AppToken::new).transpose().map_err(to_py_err)?,
            tls: tls_ca
                .map(|ca| ClientTls::from_files(ca, None))
                .transpose()
                .map_err(to_py_err)?,
            ..StreamOptions::default()
        };
        crate::future::into_py(py, async move {
            let inner = RaftoralClient::connect_retrying(url, options, attempts, first_delay)
                .await
                .map_err(to_py_err)?;
            Ok(Client { inner })
        })
    }

    /// The sidecar address (or the local node's name).
    #[getter]
    fn endpoint(&self) -> String {
        self.inner.endpoint().to_owned()
    }

    /// Starts a workflow (idempotent on `workflow_id`; empty: generated and
    /// retried on UNAVAILABLE). Returns `(workflow_id, already_started)`.
    /// `start_delay`: seconds to wait before it starts (PENDING until then);
    /// `execution_timeout`: seconds it may run once started (None: no
    /// limit). Raises `InvalidArgument` for a negative delay, a timeout of
    /// 0 or less, or either beyond 366 days (nothing is started).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (workflow_id, workflow_name, version, input, start_delay = 0.0, execution_timeout = None))]
    fn start_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        workflow_name: String,
        version: u32,
        input: Vec<u8>,
        start_delay: f64,
        execution_timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = StartOptions {
            workflow_id: (!workflow_id.is_empty()).then_some(workflow_id),
            start_delay: start_seconds("start_delay", start_delay, false)?,
            execution_timeout: execution_timeout
                .map(|t| start_seconds("execution_timeout", t, true))
                .transpose()?,
        };
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let handle = client
                .start_workflow_raw_with(&workflow_name, version, Bytes::from(input), &options)
                .await
                .map_err(to_py_err)?;
            Ok((handle.workflow_id().to_owned(), handle.already_started()))
        })
    }

    /// The workflow's state, as a dict of `WorkflowInfo` fields.
    fn get_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            info_py(client.get_workflow(&workflow_id).await.map_err(to_py_err)?)
        })
    }

    /// Waits up to `timeout` seconds (None: until it finishes) for a terminal
    /// status; raises `Timeout` when it is still running.
    #[pyo3(signature = (workflow_id, timeout = None))]
    fn wait_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.inner.workflow_handle(&workflow_id);
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        crate::future::into_py(py, async move {
            loop {
                let slice = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                    None => WAIT_SLICE,
                };
                // The server treats a zero timeout as its default; ask for at
                // least a millisecond so that an elapsed deadline stays short.
                match handle.wait(slice.max(Duration::from_millis(1))).await {
                    Ok(info) => return info_py(info),
                    Err(e)
                        if e.code() == Some(tonic::Code::DeadlineExceeded)
                            && deadline.is_none_or(|d| Instant::now() < d) => {}
                    Err(e) => return Err(to_py_err(e)),
                }
            }
        })
    }

    /// Waits for the outcome and returns the encoded result; raises
    /// `WorkflowFailed` or `Cancelled` for the other outcomes.
    fn result<'py>(&self, py: Python<'py>, workflow_id: String) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.inner.workflow_handle(&workflow_id);
        crate::future::into_py(py, async move {
            let bytes = handle.result_raw().await.map_err(to_py_err)?;
            Ok(py_bytes(&bytes))
        })
    }

    /// Cancels a workflow; returns its state after the cancellation.
    /// `cleanup`: seconds a running workflow's code may clean up after it
    /// gets `Cancelled` (None: the sidecar's default; 0: cancelled at
    /// once). Raises `InvalidArgument` for a negative one (nothing is
    /// cancelled) and, from the sidecar, one beyond 366 days.
    #[pyo3(signature = (workflow_id, reason = String::new(), cleanup = None))]
    fn cancel_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        reason: String,
        cleanup: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cleanup = cleanup.map(cleanup_seconds).transpose()?;
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            info_py(
                client
                    .cancel_workflow_with(&workflow_id, &reason, cleanup)
                    .await
                    .map_err(to_py_err)?,
            )
        })
    }

    /// Sends the event `name` with the encoded `payload` to a workflow;
    /// resolves once it is committed (in the workflow's inbox, or consumed
    /// by a wait) with `(duplicate, info)`: `duplicate` when an event with
    /// the same `idempotency_key` was delivered before (nothing was
    /// delivered now), `info` the workflow's state after it. Raises
    /// `NotFound` (unknown workflow), `NotRunning` (it has ended),
    /// `InvalidArgument` (a bad name or key, a payload over the limit),
    /// `ResourceExhausted` (its inbox is full).
    #[pyo3(signature = (workflow_id, name, payload, idempotency_key = None))]
    fn signal_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        name: String,
        payload: Vec<u8>,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let answer = client
                .signal_workflow_raw(
                    &workflow_id,
                    &name,
                    Bytes::from(payload),
                    idempotency_key.as_deref(),
                )
                .await
                .map_err(|e| match e {
                    // The workflow has ended: the same error as a step of a
                    // workflow that is no longer running.
                    ClientError::Status {
                        code: tonic::Code::FailedPrecondition,
                        message,
                        ..
                    } => crate::errors::not_running(&workflow_id, &message),
                    e => to_py_err(e),
                })?;
            let info = info_py(answer.workflow.unwrap_or_default())?;
            Ok((answer.duplicate, info))
        })
    }

    /// Starts the workflow `workflow_id` (required) unless it exists, then
    /// sends it the event `name` with the encoded `payload`, in one
    /// committed entry (the core's `signal_with_start_raw`, with the encoded
    /// `input` as it is). Resolves with `(started, duplicate, info)`:
    /// `started` when this call started it, `duplicate` as for
    /// `signal_workflow`, `info` the workflow's state after it. A workflow
    /// that exists keeps its input and options. Raises `InvalidArgument`
    /// (no id, a bad name, key, payload or start option), `NotRunning`
    /// (it has ended), `ResourceExhausted` (its inbox is full); nothing is
    /// started or sent then.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (workflow_id, workflow_name, version, input, name, payload, idempotency_key = None, start_delay = 0.0, execution_timeout = None))]
    fn signal_with_start<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        workflow_name: String,
        version: u32,
        input: Vec<u8>,
        name: String,
        payload: Vec<u8>,
        idempotency_key: Option<String>,
        start_delay: f64,
        execution_timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if workflow_id.is_empty() {
            return Err(to_py_err(ClientError::Usage(format!(
                "signal_with_start of workflow '{workflow_name}' needs an id: the event needs \
                 a known target, and a retry must find the workflow it started; nothing was \
                 started or sent"
            ))));
        }
        let options = StartOptions {
            workflow_id: Some(workflow_id.clone()),
            start_delay: start_seconds("start_delay", start_delay, false)?,
            execution_timeout: execution_timeout
                .map(|t| start_seconds("execution_timeout", t, true))
                .transpose()?,
        };
        let signal = Signal {
            name,
            payload: Bytes::from(payload),
            idempotency_key,
        };
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let answer = client
                .signal_with_start_raw(
                    &workflow_name,
                    version,
                    Bytes::from(input),
                    &options,
                    signal,
                )
                .await
                .map_err(|e| match e {
                    // The workflow has ended: as `signal_workflow` says it.
                    ClientError::Status {
                        code: tonic::Code::FailedPrecondition,
                        message,
                        ..
                    } => crate::errors::not_running(&workflow_id, &message),
                    e => to_py_err(e),
                })?;
            let info = info_py(answer.workflow.unwrap_or_default())?;
            Ok((answer.started, answer.duplicate, info))
        })
    }

    /// Completes the awakeable `awakeable_id` (as the workflow's code got
    /// it): resolves it with the encoded `payload`, or, with `failure` as
    /// `(type, message)`, rejects it (the code's wait raises `StepFailed`
    /// with them). Resolves with the workflow's state once committed.
    /// Raises `AlreadyCompleted` when it was completed before (once: gRPC
    /// ALREADY_EXISTS), `InvalidArgument` (not an awakeable id, a payload
    /// over the value limit, a bad failure), `NotFound` (unknown
    /// workflow), `NotRunning` (it has ended).
    #[pyo3(signature = (awakeable_id, payload, failure = None))]
    fn complete_awakeable<'py>(
        &self,
        py: Python<'py>,
        awakeable_id: String,
        payload: Vec<u8>,
        failure: Option<(String, String)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let failure = failure.map(|(r#type, message)| Failure {
            r#type,
            message,
            ..Failure::default()
        });
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let info = client
                .complete_awakeable(&awakeable_id, Bytes::from(payload), failure)
                .await
                .map_err(|e| match e {
                    ClientError::Status {
                        code: tonic::Code::AlreadyExists,
                        message,
                        ..
                    } => crate::errors::already_completed(&awakeable_id, &message),
                    // The workflow has ended (the awakeable was not
                    // completed before): as `signal_workflow` says it.
                    ClientError::Status {
                        code: tonic::Code::FailedPrecondition,
                        message,
                        ..
                    } => {
                        let workflow_id = awakeable::parse(&awakeable_id)
                            .map(|(workflow_id, _)| workflow_id)
                            .unwrap_or_default();
                        crate::errors::not_running(&workflow_id, &message)
                    }
                    e => to_py_err(e),
                })?;
            info_py(info)
        })
    }

    /// The status values the workflow's code set (`ctx.set_status`): the
    /// latest of each of `keys` (None or empty: every key) that was set,
    /// as `(values, workflow_status)` with `values` a list of `(key,
    /// value, set_at_ms, history_index)` (`value` encoded). Raises
    /// `NotFound` for an unknown workflow, `InvalidArgument` for a bad key.
    #[pyo3(signature = (workflow_id, keys = None))]
    fn get_status<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        keys: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let keys = keys.unwrap_or_default();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let answer = client
                .get_status(&workflow_id, &keys)
                .await
                .map_err(to_py_err)?;
            let values = Python::attach(|py| {
                answer
                    .values
                    .iter()
                    .map(|v| {
                        let value = PyBytes::new(py, &v.value).unbind();
                        (v.key.clone(), value, v.set_at_ms, v.history_index)
                    })
                    .collect::<Vec<_>>()
            });
            Ok((values, answer.workflow_status))
        })
    }

    /// One page of workflows: `(infos, next_page_token)`; with `sleeping`,
    /// only the workflows waiting on a durable timer; with `parent_id`,
    /// only the children of that workflow.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (status = 0, workflow_name = String::new(), page_size = 0, page_token = String::new(), sleeping = false, parent_id = String::new()))]
    fn list_workflows<'py>(
        &self,
        py: Python<'py>,
        status: i32,
        workflow_name: String,
        page_size: u32,
        page_token: String,
        sleeping: bool,
        parent_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            let page = client
                .list_workflows(ListWorkflowsRequest {
                    status,
                    workflow_name,
                    page_size,
                    page_token,
                    sleeping,
                    parent_id,
                })
                .await
                .map_err(to_py_err)?;
            let infos = page
                .workflows
                .into_iter()
                .map(info_py)
                .collect::<PyResult<Vec<_>>>()?;
            Ok((infos, page.next_page_token))
        })
    }

    /// The committed checkpoints of a workflow, as dicts of
    /// `HistoryEntry` fields.
    fn get_workflow_history<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        crate::future::into_py(py, async move {
            history_py(
                client
                    .get_workflow_history(&workflow_id)
                    .await
                    .map_err(to_py_err)?,
            )
        })
    }
}
