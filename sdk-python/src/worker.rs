//! `Worker`, `Run` and `ComputeToken`: hands workflow executions to Python.
//!
//! The Rust core runs the stream (registration, heartbeats, reconnect,
//! replay, ownership, retries) on a tokio thread. Each execution it starts is
//! queued here as a [`Run`] and handed to the event loop through a
//! [`RunBridge`]; Python runs each workflow function in its own asyncio
//! task, and for each checkpoint asks the core for a slot (a committed
//! value, or a [`ComputeToken`] when this replica owns the workflow and
//! must compute). The outcome goes back
//! through `complete` / `fail` / `abandon`, which the core reports exactly as
//! for a Rust workflow. Durable timers (`request_timer`, `timer`) are in
//! `timers.rs`; waits for events (`request_event`, `event`) in `events.rs`;
//! status values (`request_status`, `status`) in `status.rs`; awakeables
//! (`awakeable`, `awakeable_value`) in `awakeables.rs`; child workflows
//! (`request_child`, `child`, `child_started`) in `children.rs`;
//! races of timers, steps and waits (`first_of`, `first_to`) are the core's
//! `first`. The deterministic helpers (`random`, `uuid`,
//! `is_replaying`, `next_position`, and the module's `NOW_STEP` for
//! `now()`) are the core's, so every SDK draws and decides the same.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use raftoral_client::{
    ClientError, Failure, RaftoralClient, RunOutcome, RunReply, Slot, StepError, StepFailure,
    WorkflowContext, WorkflowError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::awakeables::AwakeableRequest;
use crate::bridge::{CommitBridge, RunBridge};
use crate::children::ChildRequest;
use crate::client::Client;
use crate::errors::to_py_err;
use crate::events::EventRequest;
use crate::status::StatusRequest;
use crate::timers::TimerRequest;

/// Runs between the core and the task that forwards them to the bridge
/// (which drains it at once; the bridge's queue is what holds runs the
/// event loop has not taken yet).
const RUN_QUEUE: usize = 1024;

/// The worker side of a client: registrations and the run queue.
#[pyclass(frozen, module = "raftoral._core")]
pub struct Worker {
    client: RaftoralClient,
    runs_tx: Mutex<Option<mpsc::Sender<Run>>>,
    runs_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Run>>>,
    task: Mutex<Option<JoinHandle<Result<(), ClientError>>>>,
}

/// One execution of a workflow on this worker.
#[pyclass(frozen, module = "raftoral._core")]
pub struct Run {
    context: WorkflowContext,
    #[pyo3(get)]
    workflow_id: String,
    #[pyo3(get)]
    workflow_name: String,
    #[pyo3(get)]
    version: u32,
    input: Bytes,
    reply: Mutex<Option<RunReply>>,
}

/// Permission to compute one attempt of a checkpoint; spent by
/// `Run.commit` (a value) or `Run.fail_step_to` (an error).
#[pyclass(frozen, module = "raftoral._core")]
pub struct ComputeToken {
    token: Mutex<Option<raftoral_client::ComputeToken>>,
    #[pyo3(get)]
    seq: u64,
    /// 1-based attempt number, counted across owners.
    #[pyo3(get)]
    attempt: u32,
}

impl ComputeToken {
    fn take(&self) -> PyResult<raftoral_client::ComputeToken> {
        self.token
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this compute token was already used"))
    }
}

/// A step position the workflow code took (`Run.request`).
#[pyclass(frozen, module = "raftoral._core")]
pub struct SlotRequest {
    req: raftoral_client::SlotRequest,
    /// 0-based step position.
    #[pyo3(get)]
    seq: u64,
}

/// A step retry policy, checked when it is made (`raftoral.RetryPolicy`
/// wraps it).
#[pyclass(frozen, module = "raftoral._core")]
pub struct RetryPolicy {
    pub(crate) policy: raftoral_client::RetryPolicy,
}

#[pymethods]
impl RetryPolicy {
    /// Intervals in seconds; `maximum_attempts` and `attempt_timeout`
    /// None: no limit. Raises `InvalidArgument` naming the setting that is
    /// wrong (the core's checks).
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (initial_interval, backoff_coefficient, maximum_interval, maximum_attempts, jitter, non_retryable_error_types, attempt_timeout = None))]
    fn new(
        initial_interval: f64,
        backoff_coefficient: f64,
        maximum_interval: f64,
        maximum_attempts: Option<u32>,
        jitter: f64,
        non_retryable_error_types: Vec<String>,
        attempt_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let seconds = |name: &str, v: f64| {
            std::time::Duration::try_from_secs_f64(v).map_err(|_| {
                to_py_err(ClientError::Usage(format!(
                    "retry policy: {name} must be a number of seconds of at least 0, got {v}"
                )))
            })
        };
        let policy = raftoral_client::RetryPolicy {
            initial_interval: seconds("initial_interval", initial_interval)?,
            backoff_coefficient,
            maximum_interval: seconds("maximum_interval", maximum_interval)?,
            maximum_attempts,
            jitter,
            non_retryable_error_types,
            attempt_timeout: attempt_timeout
                .map(|v| {
                    std::time::Duration::try_from_secs_f64(v).map_err(|_| {
                        to_py_err(ClientError::Usage(format!(
                            "retry policy: attempt_timeout must be a number of seconds more than 0 (None: no limit), got {v}"
                        )))
                    })
                })
                .transpose()?,
        };
        // Zero is refused here, by the core.
        policy.validate().map_err(to_py_err)?;
        Ok(RetryPolicy { policy })
    }

    /// The longest one attempt may run, in seconds; None: no limit.
    #[getter]
    fn attempt_timeout(&self) -> Option<f64> {
        self.policy.attempt_timeout.map(|d| d.as_secs_f64())
    }

    /// The failure of attempt `attempt` stopped by the attempt timeout, as
    /// the core makes it (every SDK commits the same): `(type, message,
    /// details_json, non_retryable, stack)`.
    fn timeout_failure(&self, attempt: u32) -> (String, String, String, bool, String) {
        let f = self.policy.timeout_failure(attempt);
        (
            f.r#type,
            f.message,
            f.details_json,
            f.non_retryable,
            f.stack,
        )
    }
}

#[pymethods]
impl Worker {
    #[new]
    fn new(client: &Client) -> Self {
        let (tx, rx) = mpsc::channel(RUN_QUEUE);
        Worker {
            client: client.inner.clone(),
            runs_tx: Mutex::new(Some(tx)),
            runs_rx: Arc::new(tokio::sync::Mutex::new(rx)),
            task: Mutex::new(None),
        }
    }

    /// Declares that this app runs `workflow_name` at `version`; resolves
    /// once the cluster has recorded it.
    fn register<'py>(
        &self,
        py: Python<'py>,
        workflow_name: String,
        version: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        crate::future::into_py(py, async move {
            client
                .register_workflow(&workflow_name, version)
                .await
                .map_err(to_py_err)
        })
    }

    /// Starts taking executions from the core (once per client).
    fn start(&self) -> PyResult<()> {
        let Some(runs) = self.runs_tx.lock().expect("lock").take() else {
            return Err(PyRuntimeError::new_err("this worker was already started"));
        };
        let client = self.client.clone();
        // The core's loop runs on the binding's tokio runtime, where it
        // spawns one task per run; Python only pulls from `runs`.
        // A run dropped without an outcome (its Python task died) is not an
        // outcome: the workflow resumes elsewhere or after a restart.
        let task = pyo3_async_runtimes::tokio::get_runtime().spawn(client.hand_over_workflows(
            runs,
            |req, reply| Run {
                workflow_id: req.workflow_id,
                workflow_name: req.workflow_name,
                version: req.version,
                input: req.input,
                context: req.context,
                reply: Mutex::new(Some(reply)),
            },
        ));
        *self.task.lock().expect("lock") = Some(task);
        Ok(())
    }

    /// Hands every execution the core starts to `bridge`, which the event
    /// loop drains; the bridge closes once the worker has stopped.
    fn forward_runs(&self, bridge: &RunBridge) {
        let (runs, sender) = (self.runs_rx.clone(), bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            let mut runs = runs.lock().await;
            while let Some(run) = runs.recv().await {
                sender.send(run);
            }
        });
    }

    /// Number of runs in progress in the core.
    #[getter]
    fn running(&self) -> usize {
        self.client.core().running()
    }

    /// Stops the stream and waits for the core's loop to end. Running
    /// workflows stay running in the cluster and resume by replay when a
    /// worker connects again.
    /// `grace`: seconds the workflow functions may take to unwind (the
    /// worker's `shutdown_grace`).
    fn shutdown<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let task = self.task.lock().expect("lock").take();
        let grace = std::time::Duration::try_from_secs_f64(grace.max(0.0))
            .unwrap_or(std::time::Duration::MAX);
        crate::future::into_py(py, async move {
            client.shutdown_within(grace).await;
            if let Some(task) = task {
                match task.await {
                    Ok(result) => result.map_err(to_py_err)?,
                    Err(e) => tracing::warn!(error = %e, "the worker loop ended abnormally"),
                }
            }
            Ok(())
        })
    }
}

/// A Python-owned copy of `b`, made while attached.
fn py_bytes(b: &[u8]) -> Py<PyBytes> {
    Python::attach(|py| PyBytes::new(py, b).unbind())
}

/// A slot as Python sees it: `bytes` (committed) or a [`ComputeToken`].
pub(crate) fn slot_to_py(py: Python<'_>, slot: Slot) -> PyResult<Bound<'_, PyAny>> {
    match slot {
        Slot::Committed(value) => Ok(PyBytes::new(py, &value).into_any()),
        Slot::Compute(token) => Ok(Bound::new(
            py,
            ComputeToken {
                seq: token.seq(),
                attempt: token.attempt(),
                token: Mutex::new(Some(token)),
            },
        )?
        .into_any()),
    }
}

impl Run {
    fn reply(&self, outcome: RunOutcome) -> PyResult<()> {
        match self.reply.lock().expect("lock").take() {
            Some(reply) => {
                reply.send(outcome);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err(format!(
                "workflow '{}' already reported its outcome",
                self.workflow_id
            ))),
        }
    }
}

#[pymethods]
impl Run {
    /// Encoded input.
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.input)
    }

    /// Takes the next step position for a step named `name`, at once:
    /// steps started side by side (`asyncio.gather`) get positions in call
    /// order. Raises `NonDeterminism` when the history has another name
    /// there.
    fn request(&self, name: &str) -> PyResult<SlotRequest> {
        let req = self.context.request(name).map_err(to_py_err)?;
        Ok(SlotRequest {
            seq: req.seq(),
            req,
        })
    }

    /// A float in `[0, 1)` from the run's seeded generator: the same
    /// sequence on every replica and in every replay (no step). Raises
    /// `ShuttingDown` once the core no longer holds the run.
    fn random(&self) -> PyResult<f64> {
        self.context.random().map_err(to_py_err)
    }

    /// A version 4 UUID (lowercase 8-4-4-4-12 text) from the same
    /// generator as `random`.
    fn uuid(&self) -> PyResult<String> {
        self.context.uuid().map_err(to_py_err)
    }

    /// True while the code repeats what already happened: a replay, or
    /// this replica does not own the workflow (or the run is gone).
    #[getter]
    fn is_replaying(&self) -> bool {
        self.context.is_replaying()
    }

    /// The 0-based position the code's next step takes (the step a log
    /// line is written before).
    #[getter]
    fn next_position(&self) -> u64 {
        self.context.next_position()
    }

    /// The reason of the workflow's cancellation once the core knows of it
    /// (a cancel request, or a cancel for good); None otherwise (also once
    /// the run is gone). Does not wait. For `ctx.is_cancelled`: where the
    /// code gets `Cancelled` is the core's to decide (`interrupted_to`).
    fn cancelled_now(&self) -> Option<String> {
        // The core's `cancelled` looks at the run's state before it waits
        // for a change: one poll answers without waiting.
        let waiting = self.context.cancelled();
        match pin!(waiting).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(reason) => reason,
            Poll::Pending => None,
        }
    }

    /// Resolves through `bridge` as `(id, ...)` once the workflow's cancel
    /// is requested (or it is cancelled for good), with the `Cancelled`
    /// exception; with empty bytes when the run ends first (or the worker
    /// stops). For `ctx.wait_cancelled()`.
    fn cancelled_to(&self, bridge: &CommitBridge, id: u64) {
        let (context, sender) = (self.context.clone(), bridge.sender());
        let workflow_id = self.workflow_id.clone();
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            let outcome = match context.cancelled().await {
                Some(reason) => Err(ClientError::Cancelled {
                    workflow_id,
                    reason,
                }),
                None => Ok(Slot::Committed(Bytes::new())),
            };
            sender.send(id, outcome);
        });
    }

    /// The run's interruptions so far (see `interrupted_to`).
    #[getter]
    fn interrupts(&self) -> u64 {
        self.context.interrupts()
    }

    /// Resolves through `bridge` as `(id, True, (reason, count))` once the
    /// run has more than `after` interruptions, `count` the new number;
    /// with None when the run ends first (or the worker stops). An
    /// interruption means: stop the step attempts running now and ask the
    /// core for their slots again (`slot_now` / `slot_to`), which answers
    /// `Cancelled` where the cancellation was delivered, a value committed
    /// meanwhile, or a new `ComputeToken`. One watcher per run, armed
    /// again with the count after each interruption.
    fn interrupted_to(&self, bridge: &CommitBridge, id: u64, after: u64) {
        let (context, sender) = (self.context.clone(), bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send_interrupted(id, context.interrupted(after).await);
        });
    }

    /// The slot of `req`, waiting for it: the committed value (bytes) or a
    /// `ComputeToken`. Raises `Cancelled`, `NonDeterminism`, `ShuttingDown`,
    /// `StepFailed`.
    fn slot<'py>(&self, py: Python<'py>, req: &SlotRequest) -> PyResult<Bound<'py, PyAny>> {
        let (context, req) = (self.context.clone(), req.req.clone());
        crate::future::into_py(py, async move {
            let slot = context.slot(&req).await.map_err(to_py_err)?;
            Python::attach(|py| slot_to_py(py, slot).map(Bound::unbind))
        })
    }

    /// `slot` through `bridge`: the outcome arrives as `(id, ...)` from
    /// `bridge.drain()`, in the order the core hands resolutions out (the
    /// order branches running side by side must continue in).
    fn slot_to(&self, req: &SlotRequest, bridge: &CommitBridge, id: u64) {
        let (context, req, sender) = (self.context.clone(), req.req.clone(), bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, context.slot(&req).await);
        });
    }

    /// `slot` without waiting: the committed value, a compute token, or
    /// None when the slot is not decided yet (then await `slot`). The
    /// owner's common case costs no round trip through the event loop.
    fn slot_now<'py>(
        &self,
        py: Python<'py>,
        req: &SlotRequest,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.context.try_slot(&req.req) {
            None => Ok(None),
            Some(slot) => slot_to_py(py, slot.map_err(to_py_err)?).map(Some),
        }
    }

    /// Takes the next position for a durable timer named `name` of
    /// `seconds`, at once, like `request`: sleeps and steps started side
    /// by side get positions in call order. Raises `InvalidArgument` for a
    /// negative duration or one beyond 366 days (nothing is taken then),
    /// `NonDeterminism` when the history has a step (or another name)
    /// there.
    fn request_timer(&self, name: &str, seconds: f64) -> PyResult<TimerRequest> {
        TimerRequest::take(&self.context, name, seconds)
    }

    /// Waits for the timer of `req` to fire (its start is committed first
    /// when this replica owns the run). Raises `Cancelled`,
    /// `NonDeterminism`, `ShuttingDown`, `NotRunning`.
    fn timer<'py>(&self, py: Python<'py>, req: &TimerRequest) -> PyResult<Bound<'py, PyAny>> {
        let wait = req.wait()?;
        crate::future::into_py(py, async move { wait.await.map_err(to_py_err) })
    }

    /// `timer` through `bridge`: the outcome arrives as `(id, ...)` from
    /// `bridge.drain()` (empty bytes once fired), in the order the core
    /// hands resolutions out, as `slot_to`'s.
    fn timer_to(&self, req: &TimerRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (wait, sender) = (req.wait()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, wait.await.map(|()| Slot::Committed(Bytes::new())));
        });
        Ok(())
    }

    /// Takes the next position for a wait for the event `name`, at once,
    /// like `request`: waits, sleeps and steps started side by side get
    /// positions in call order. `timeout` in seconds (None: no timeout).
    /// Raises `InvalidArgument` for a negative timeout or one beyond 366
    /// days (nothing is taken then), `NonDeterminism` when the history has
    /// something else (or a wait for another name) there.
    #[pyo3(signature = (name, timeout = None))]
    fn request_event(&self, name: &str, timeout: Option<f64>) -> PyResult<EventRequest> {
        EventRequest::take(&self.context, name, timeout)
    }

    /// Waits for the event of `req` (the wait is committed first when this
    /// replica owns the run): its payload (bytes), or None when its timeout
    /// passed first. Raises `Cancelled`, `NonDeterminism`, `ShuttingDown`,
    /// `NotRunning`.
    fn event<'py>(&self, py: Python<'py>, req: &EventRequest) -> PyResult<Bound<'py, PyAny>> {
        let wait = req.wait()?;
        crate::future::into_py(py, async move {
            let payload = wait.await.map_err(to_py_err)?;
            Ok(payload.map(|p| py_bytes(&p)))
        })
    }

    /// `event` through `bridge`: the outcome arrives as `(id, True,
    /// payload or None)` from `bridge.drain()`, in the order the core hands
    /// resolutions out, as `slot_to`'s.
    fn event_to(&self, req: &EventRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (wait, sender) = (req.wait()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send_event(id, wait.await);
        });
        Ok(())
    }

    /// Takes the next position for setting the workflow's readable status
    /// `key` to `value` (encoded, at most 64 KiB), at once, like
    /// `request`: statuses, waits, sleeps and steps started side by side
    /// get positions in call order. Raises `InvalidArgument` for a value
    /// that is too big (nothing is taken then), `NonDeterminism` when the
    /// history has something else (or another key) there.
    fn request_status(&self, key: &str, value: Vec<u8>) -> PyResult<StatusRequest> {
        StatusRequest::take(&self.context, key, value)
    }

    /// Waits for the status of `req` to be committed (at once in a
    /// replay). Raises `Cancelled`, `NonDeterminism`, `ShuttingDown`,
    /// `NotRunning`.
    fn status<'py>(&self, py: Python<'py>, req: &StatusRequest) -> PyResult<Bound<'py, PyAny>> {
        let set = req.set()?;
        crate::future::into_py(py, async move { set.await.map_err(to_py_err) })
    }

    /// `status` through `bridge`: the outcome arrives as `(id, True, b"")`
    /// from `bridge.drain()`, in the order the core hands resolutions out,
    /// as `slot_to`'s.
    fn status_to(&self, req: &StatusRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (set, sender) = (req.set()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, set.await.map(|()| Slot::Committed(Bytes::new())));
        });
        Ok(())
    }

    /// Creates an awakeable at the next position, at once, like `request`
    /// (its id, `awk/SEQ/WORKFLOW_ID`, is known from the position).
    /// Raises `NonDeterminism` when the history has something else there.
    fn awakeable(&self) -> PyResult<AwakeableRequest> {
        AwakeableRequest::take(&self.context)
    }

    /// Waits for the awakeable of `req` to be completed (the wait is
    /// committed first when this replica owns the run): the encoded value
    /// it was resolved with (bytes). Raises `StepFailed` with the
    /// rejection's type and message when it was rejected, `Cancelled`,
    /// `NonDeterminism`, `ShuttingDown`, `NotRunning`.
    fn awakeable_value<'py>(
        &self,
        py: Python<'py>,
        req: &AwakeableRequest,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = req.wait()?;
        crate::future::into_py(py, async move {
            let value = wait.await.map_err(to_py_err)?;
            Ok(py_bytes(&value))
        })
    }

    /// `awakeable_value` through `bridge`: the outcome arrives as `(id,
    /// True, value)` (or the error) from `bridge.drain()`, in the order the
    /// core hands resolutions out, as `slot_to`'s.
    fn awakeable_to(&self, req: &AwakeableRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (wait, sender) = (req.wait()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, wait.await.map(Slot::Committed));
        });
        Ok(())
    }

    /// Starts a child workflow at the next position, at once, like
    /// `request`: `workflow` at `version` with the encoded `input`,
    /// named `id` (None: `PARENT_ID/SEQ`), ended by `parent_close`
    /// (`"cancel"`, `"abandon"`, `"terminate"`) if this workflow ends first.
    /// The start is proposed now (when this replica owns the run); await
    /// `child_started` for its commit and `child` for the child's result.
    /// Raises `InvalidArgument` (its own id, an empty id, an unknown
    /// policy; nothing is taken then),
    /// `NonDeterminism` when the history has something else there.
    #[pyo3(signature = (workflow, version, input, id = None, parent_close = "cancel"))]
    fn request_child(
        &self,
        workflow: &str,
        version: u32,
        input: Vec<u8>,
        id: Option<String>,
        parent_close: &str,
    ) -> PyResult<ChildRequest> {
        ChildRequest::take(&self.context, workflow, version, input, id, parent_close)
    }

    /// Waits for the child of `req` to end: its encoded result (bytes).
    /// Raises `StepFailed` with the child's failure (type
    /// `raftoral.ChildCancelled` for a cancelled child), `Cancelled`,
    /// `NonDeterminism`, `ShuttingDown`, `NotRunning`.
    fn child<'py>(&self, py: Python<'py>, req: &ChildRequest) -> PyResult<Bound<'py, PyAny>> {
        let wait = req.result()?;
        crate::future::into_py(py, async move {
            let value = wait.await.map_err(to_py_err)?;
            Ok(py_bytes(&value))
        })
    }

    /// `child` through `bridge`: the outcome arrives as `(id, True,
    /// value)` (or the error) from `bridge.drain()`, in the order the core
    /// hands resolutions out, as `slot_to`'s.
    fn child_to(&self, req: &ChildRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (wait, sender) = (req.result()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, wait.await.map(Slot::Committed));
        });
        Ok(())
    }

    /// Waits until the start of the child of `req` is committed (or its
    /// position resolved). Raises `Cancelled`, `ShuttingDown`,
    /// `NotRunning`.
    fn child_started<'py>(
        &self,
        py: Python<'py>,
        req: &ChildRequest,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = req.started()?;
        crate::future::into_py(py, async move { wait.await.map_err(to_py_err) })
    }

    /// `child_started` through `bridge`: `(id, True, b"")` once committed.
    fn child_started_to(&self, req: &ChildRequest, bridge: &CommitBridge, id: u64) -> PyResult<()> {
        let (wait, sender) = (req.started()?, bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, wait.await.map(|()| Slot::Committed(Bytes::new())));
        });
        Ok(())
    }

    /// Races the operations at positions `seqs` (timers, steps, event
    /// waits and awakeables the code took and started, not awaited yet):
    /// resolves to the index (in `seqs`) of the one the history resolved
    /// first, the same on every replica and in every replay (the core's
    /// `first`). The others are abandoned: their resolutions are skipped,
    /// a losing timer is cancelled (`TIMER_CANCELLED`, committed before
    /// this resolves), and so is a losing wait (`EVENT_WAIT_CANCELLED`:
    /// an open wait is resolved by it before this resolves; an event the
    /// wait took already goes back to the workflow's next wait of its
    /// name).
    /// Raises `InvalidArgument` for no seqs, `Cancelled`, `ShuttingDown`,
    /// `NotRunning`.
    fn first_of<'py>(&self, py: Python<'py>, seqs: Vec<u64>) -> PyResult<Bound<'py, PyAny>> {
        let context = self.context.clone();
        crate::future::into_py(py, async move {
            context.first_of(&seqs).await.map_err(to_py_err)
        })
    }

    /// `first_of` through `bridge`: the winner's index arrives as
    /// `(id, True, index)` from `bridge.drain()`, in the order the core
    /// hands resolutions out, as `slot_to`'s.
    fn first_to(&self, seqs: Vec<u64>, bridge: &CommitBridge, id: u64) {
        let (context, sender) = (self.context.clone(), bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send_winner(id, context.first_of(&seqs).await);
        });
    }

    /// Proposes `value` for `token`'s checkpoint and waits for the commit;
    /// returns the committed value.
    fn commit<'py>(
        &self,
        py: Python<'py>,
        token: &ComputeToken,
        value: Vec<u8>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let token = token.take()?;
        let context = self.context.clone();
        crate::future::into_py(py, async move {
            let committed = context
                .commit(token, Bytes::from(value))
                .await
                .map_err(to_py_err)?;
            Ok(Python::attach(|py| PyBytes::new(py, &committed).unbind()))
        })
    }

    /// `commit` through `bridge`: the outcome arrives as `(id, ...)` from
    /// `bridge.drain()` instead of through an awaitable.
    fn commit_to(
        &self,
        token: &ComputeToken,
        value: Vec<u8>,
        bridge: &CommitBridge,
        id: u64,
    ) -> PyResult<()> {
        let token = token.take()?;
        let (context, sender) = (self.context.clone(), bridge.sender());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            let committed = context.commit(token, Bytes::from(value)).await;
            sender.send(id, committed.map(Slot::Committed));
        });
        Ok(())
    }

    /// The step's code raised `failure` (type, message, details as JSON,
    /// non-retryable, stack) in `token`'s attempt: the core commits it as a
    /// failed attempt or as the step's failure, per `policy`. The outcome
    /// arrives through `bridge` as `(id, ...)`: the next attempt's
    /// `ComputeToken` once its delay has passed, another owner's committed
    /// value, or the exception (`StepFailed`, `Cancelled`, ...).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (token, error_type, message, details_json, non_retryable, stack, policy, bridge, id))]
    fn fail_step_to(
        &self,
        token: &ComputeToken,
        error_type: String,
        message: String,
        details_json: String,
        non_retryable: bool,
        stack: String,
        policy: &RetryPolicy,
        bridge: &CommitBridge,
        id: u64,
    ) -> PyResult<()> {
        let token = token.take()?;
        let failure = Failure {
            r#type: error_type,
            message,
            details_json,
            non_retryable,
            stack,
        };
        let (context, sender, policy) =
            (self.context.clone(), bridge.sender(), policy.policy.clone());
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            sender.send(id, context.fail(token, failure, &policy).await);
        });
        Ok(())
    }

    /// The workflow returned `value` (encoded).
    fn complete(&self, value: Vec<u8>) -> PyResult<()> {
        self.reply(Ok(value))
    }

    /// The workflow failed with `message`.
    fn fail(&self, message: String) -> PyResult<()> {
        self.reply(Err(WorkflowError::Failed(message)))
    }

    /// The workflow failed with a step's failure it did not catch: the
    /// workflow's error is that step's, with its structure (type, message,
    /// details), as every SDK reports it.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (seq, step, attempts, error_type, message, details_json, non_retryable))]
    fn fail_with_step(
        &self,
        seq: u64,
        step: String,
        attempts: u32,
        error_type: String,
        message: String,
        details_json: String,
        non_retryable: bool,
    ) -> PyResult<()> {
        let failure = StepFailure {
            workflow_id: self.workflow_id.clone(),
            seq,
            step,
            attempts,
            failure: Failure {
                r#type: error_type,
                message,
                details_json,
                non_retryable,
                stack: String::new(),
            },
        };
        self.reply(Err(WorkflowError::Client(ClientError::StepFailed(
            Box::new(failure),
        ))))
    }

    /// The workflow failed with its own structured error, raised outside
    /// any step (`raftoral.ApplicationError`): type, message, details as
    /// JSON (empty: none), non-retryable. Clients get it as the workflow's
    /// failure (`WorkflowInfo.failure`, `WorkflowFailed.type`...) and its
    /// error text is the core's (`Type: message`), as for a Rust
    /// `WorkflowError::Application`.
    #[pyo3(signature = (error_type, message, details_json, non_retryable))]
    fn fail_application(
        &self,
        error_type: String,
        message: String,
        details_json: String,
        non_retryable: bool,
    ) -> PyResult<()> {
        // The core's text for it; the failure itself is passed as Python
        // encoded it (the details' JSON is kept byte for byte, as a step's).
        let text = WorkflowError::Application(StepError::new(error_type.clone(), message.clone()))
            .to_string();
        let failure = Failure {
            r#type: error_type,
            message,
            details_json,
            non_retryable,
            stack: String::new(),
        };
        self.reply(Err(WorkflowError::Client(ClientError::WorkflowFailed {
            workflow_id: self.workflow_id.clone(),
            message: text,
            failure: Some(Box::new(failure)),
        })))
    }

    /// The workflow function ended with `Cancelled` (with the reason), or
    /// was stopped by a shutdown (None). A function that ends with the
    /// cancellation delivered to it while its cancel request's cleanup
    /// window runs ends the workflow CANCELLED (the core reports it);
    /// otherwise nothing is reported as its outcome (a cancel for good is
    /// committed already; a shutdown resumes elsewhere).
    #[pyo3(signature = (cancelled_reason = None))]
    fn abandon(&self, cancelled_reason: Option<String>) -> PyResult<()> {
        let error = match cancelled_reason {
            Some(reason) => ClientError::Cancelled {
                workflow_id: self.workflow_id.clone(),
                reason,
            },
            None => ClientError::Shutdown,
        };
        self.reply(Err(WorkflowError::Client(error)))
    }
}
