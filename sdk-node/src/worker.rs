//! `NativeWorker` and `NativeRun`: hand workflow executions to JavaScript.
//!
//! The Rust core runs the stream (registration, heartbeats, reconnect,
//! replay, ownership, retries) on a tokio thread. Each execution it starts is
//! queued here as a [`NativeRun`]; JavaScript pulls runs in batches with `nextRuns()`,
//! runs the workflow function, and for each checkpoint takes its position
//! (`request`, at call time, so steps started side by side get positions in
//! call order) and asks the core for its slot (a committed value, or
//! permission to compute when this replica owns the workflow). A step's code
//! that throws hands its error to `failStep`: the core commits the failure
//! and says whether to run the step again (after the retry policy's delay)
//! or raises `STEP_FAILED`. A durable timer (`ctx.sleep`) takes its
//! position the same way (`requestTimer`), and `timer` waits for the
//! cluster to fire it; `firstOf` races positions taken (sleeps, steps,
//! event waits, awakeables) and delivers the index of the one resolved
//! first in commit order. A wait for an event (`ctx.waitEvent`) takes its
//! position with `requestEvent`, and `event` waits for the cluster to
//! resolve it (the event's payload, or its timeout). A status value (`ctx.setStatus`)
//! takes its position with `requestStatus`, and `status` waits for its
//! commit. An awakeable (`ctx.awakeable`) takes its position and gets its
//! id with `requestAwakeable`, and `event` waits for its completion. A
//! child workflow (`ctx.startChild`, `ctx.callChild`) takes its position
//! and gets its id with `requestChild`, and `child` starts it and waits
//! for its end (and, for `startChild`, for the commit of its start).
//! Several steps of a run may be in flight at once; the outcomes of their
//! waits reach JavaScript through the worker's FIFO (`waitDeliveries` /
//! `takeDeliveries`) in the order the core hands them out (see `steps.rs`
//! for why). The outcome of the run goes back through
//! `complete` / `fail` / `failWithStep` / `failWithApplicationError` /
//! `abandon`, which the core reports exactly as for a Rust workflow. A
//! cancel request reaches the code where the core delivers it (as
//! `CANCELLED` from a step's or a sleep's wait): `interrupted` tells
//! JavaScript when to stop the attempts running, which then ask for their
//! slots again, and `cancelled` only says that the workflow is being
//! cancelled (the context's `AbortSignal`). The deterministic helpers (`random`,
//! `uuid`, `isReplaying`, `nextPosition`, and `NOW_STEP` for `now()`) are
//! the core's, so every SDK draws and decides the same.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use raftoral_client::{
    ChildOptions, ClientError, Failure, ParentClose, RaftoralClient, RunOutcome, RunReply,
    StepError, StepFailure, WorkflowError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::NativeClient;
use crate::errors::{to_js_err, usage};
use crate::retry::NativeRetryPolicy;
use crate::steps::{Deliveries, NativeDelivery, NativeSlot, Steps};

/// Runs queued for JavaScript. Bounded: when JavaScript falls behind, the
/// core's per-run tasks wait here, never the stream reader.
const RUN_QUEUE: usize = 1024;

/// Most runs one `nextRuns` call hands to JavaScript.
const RUN_BATCH: usize = 256;

/// The step name `now()` commits the owner's clock under (milliseconds
/// since the Unix epoch, a JSON integer), the same in every SDK.
// Read from JavaScript only: the test build (no napi registration) sees
// no reader.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub const NOW_STEP: &str = raftoral_client::NOW_STEP;

/// The worker side of a client: registrations and the run queue.
#[napi]
pub struct NativeWorker {
    client: RaftoralClient,
    runs_tx: Mutex<Option<mpsc::Sender<NativeRun>>>,
    runs_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<NativeRun>>>,
    task: Mutex<Option<JoinHandle<Result<(), ClientError>>>>,
    /// Outcomes of the runs' waits, on their way to JavaScript.
    deliveries: Arc<Deliveries>,
}

/// One execution of a workflow on this worker.
#[napi]
pub struct NativeRun {
    inner: Arc<RunInner>,
}

struct RunInner {
    /// Its steps in flight: positions, compute tokens, waits.
    steps: Arc<Steps>,
    workflow_id: String,
    workflow_name: String,
    version: u32,
    input: Bytes,
    reply: Mutex<Option<RunReply>>,
}

/// What a step's code threw, as it is committed (the core cuts what is
/// too long); also a workflow's own structured failure, and the failure a
/// client reads in a workflow's state.
#[napi(object)]
pub struct NativeFailure {
    /// The error's type name (1 to 256 bytes; empty: `Error`).
    #[napi(js_name = "type")]
    pub error_type: String,
    /// The error's message.
    pub message: String,
    /// Structured details as JSON text; empty or absent: none.
    pub details_json: Option<String>,
    /// True when the error must not be retried, whatever the policy.
    pub non_retryable: Option<bool>,
    /// The stack trace, for people.
    pub stack: Option<String>,
}

impl From<Failure> for NativeFailure {
    fn from(f: Failure) -> Self {
        NativeFailure {
            error_type: f.r#type,
            message: f.message,
            details_json: Some(f.details_json),
            non_retryable: Some(f.non_retryable),
            stack: Some(f.stack),
        }
    }
}

impl From<NativeFailure> for Failure {
    fn from(f: NativeFailure) -> Self {
        Failure {
            r#type: f.error_type,
            message: f.message,
            details_json: f.details_json.unwrap_or_default(),
            non_retryable: f.non_retryable.unwrap_or(false),
            stack: f.stack.unwrap_or_default(),
        }
    }
}

/// An awakeable the code created (`requestAwakeable`).
#[napi(object)]
pub struct NativeAwakeable {
    /// Its position in the workflow's history.
    pub seq: f64,
    /// The id that completes it: `awk/SEQ/WORKFLOW_ID`.
    pub id: String,
}

/// A child workflow the code started (`requestChild`).
#[napi(object)]
pub struct NativeChild {
    /// Its position in the parent's history.
    pub seq: f64,
    /// The child's workflow id (by default `PARENT_ID/SEQ`).
    pub id: String,
}

/// An interruption of a run (`interrupted`).
#[napi(object)]
pub struct NativeInterruption {
    /// The cancel's reason.
    pub reason: String,
    /// The run's interruptions so far: pass it to the next `interrupted`.
    pub count: f64,
}

/// An uncaught step failure, as JavaScript's `StepFailed` carries it: the
/// workflow (the run's) fails with it, structured.
#[napi(object)]
pub struct NativeStepFailure {
    /// The step's position.
    pub seq: f64,
    /// The step's name.
    pub step: String,
    /// Attempts made, the last included.
    pub attempts: u32,
    /// The step's error.
    pub failure: NativeFailure,
}

#[napi]
impl NativeWorker {
    /// A worker for `client`'s connection (one per client).
    #[napi(constructor)]
    pub fn new(client: &NativeClient) -> Self {
        let (tx, rx) = mpsc::channel(RUN_QUEUE);
        Self {
            client: client.inner.clone(),
            runs_tx: Mutex::new(Some(tx)),
            runs_rx: Arc::new(tokio::sync::Mutex::new(rx)),
            task: Mutex::new(None),
            deliveries: Deliveries::new(),
        }
    }

    /// Declares that this app runs `workflowName` at `version`; resolves
    /// once the cluster has recorded it.
    #[napi]
    pub async fn register(&self, workflow_name: String, version: u32) -> napi::Result<()> {
        self.client
            .register_workflow(&workflow_name, version)
            .await
            .map_err(to_js_err)
    }

    /// Starts taking executions from the core (once per worker).
    #[napi]
    pub async fn start(&self) -> napi::Result<()> {
        let Some(runs) = self.runs_tx.lock().expect("lock").take() else {
            return Err(usage("this worker was already started".into()));
        };
        let (client, deliveries) = (self.client.clone(), self.deliveries.clone());
        // A run dropped without an outcome (its JS side was collected) is
        // not an outcome: the workflow resumes elsewhere or after a restart.
        let task = tokio::spawn(
            client.hand_over_workflows(runs, move |req, reply| NativeRun {
                inner: Arc::new(RunInner {
                    workflow_id: req.workflow_id,
                    workflow_name: req.workflow_name,
                    version: req.version,
                    input: req.input,
                    steps: Steps::new(req.context, deliveries.clone()),
                    reply: Mutex::new(Some(reply)),
                }),
            }),
        );
        *self.task.lock().expect("lock") = Some(task);
        Ok(())
    }

    /// The executions queued since the last call, after waiting for at
    /// least one; an empty list once the worker has stopped. One promise
    /// per batch, not per run: under load a hand-off to the JS thread per
    /// workflow was a large part of what the addon cost.
    #[napi]
    pub async fn next_runs(&self) -> Vec<NativeRun> {
        let mut runs = self.runs_rx.lock().await;
        let Some(first) = runs.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < RUN_BATCH {
            match runs.try_recv() {
                Ok(run) => batch.push(run),
                Err(_) => break,
            }
        }
        batch
    }

    /// Resolves once outcomes of waits (`slot`, `commit`, `failStep` of any
    /// run) are queued; then `takeDeliveries`. One promise per batch, and
    /// outcomes in the order the core handed them out (see `steps.rs`).
    #[napi]
    pub async fn wait_deliveries(&self) {
        self.deliveries.wait().await;
    }

    /// The outcomes queued since the last call, in order (empty when none).
    #[napi]
    pub fn take_deliveries(&self) -> Vec<NativeDelivery> {
        self.deliveries.take()
    }

    /// Number of runs in progress in the core.
    #[napi(getter)]
    pub fn running(&self) -> u32 {
        self.client.core().running() as u32
    }

    /// Stops the stream and waits for the core's loop to end. Running
    /// workflows stay running in the cluster and resume by replay when a
    /// worker connects again.
    /// `grace_ms`: how long workflow functions may take to unwind (the
    /// worker's `shutdownGraceMs`).
    #[napi]
    pub async fn shutdown(&self, grace_ms: f64) -> napi::Result<()> {
        let grace =
            Duration::try_from_secs_f64(grace_ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
        self.client.shutdown_within(grace).await;
        let task = self.task.lock().expect("lock").take();
        if let Some(task) = task {
            match task.await {
                Ok(result) => result.map_err(to_js_err)?,
                Err(e) => tracing::warn!(error = %e, "the worker loop ended abnormally"),
            }
        }
        // Wake a pending `nextRuns` (it resolves empty), so nothing of this
        // worker keeps the Node process alive.
        self.runs_rx.lock().await.close();
        Ok(())
    }
}

impl NativeRun {
    fn reply(&self, outcome: RunOutcome) -> napi::Result<()> {
        match self.inner.reply.lock().expect("lock").take() {
            Some(reply) => {
                reply.send(outcome);
                Ok(())
            }
            None => Err(usage(format!(
                "workflow '{}' already reported its outcome",
                self.inner.workflow_id
            ))),
        }
    }
}

#[napi]
impl NativeRun {
    /// Workflow id.
    #[napi(getter)]
    pub fn workflow_id(&self) -> String {
        self.inner.workflow_id.clone()
    }

    /// Workflow type.
    #[napi(getter)]
    pub fn workflow_name(&self) -> String {
        self.inner.workflow_name.clone()
    }

    /// Workflow version.
    #[napi(getter)]
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// Encoded input.
    #[napi(getter)]
    pub fn input(&self) -> Buffer {
        self.inner.input.to_vec().into()
    }

    /// Takes the next step position for a step named `name`, at once, and
    /// returns it: steps started side by side (`Promise.all`) get positions
    /// in call order. Throws `NON_DETERMINISM` when the history has another
    /// name there.
    #[napi]
    pub fn request(&self, name: String) -> napi::Result<f64> {
        let seq = self.inner.steps.request(&name).map_err(to_js_err)?;
        Ok(seq as f64)
    }

    /// The slot of step `seq` when it can be decided now: the committed
    /// value (handed out now), or the attempt to compute; null when it must
    /// be waited for (a replica ahead of the owner's commits, a resolution
    /// not yet its turn, a backoff, or an outcome of this run still queued
    /// for JavaScript), then `slot`. Throws `CANCELLED`, `NON_DETERMINISM`,
    /// `SHUTTING_DOWN`, `STEP_FAILED`. The owner's common case and a replay
    /// cost no round trip through the event loop.
    #[napi]
    pub fn slot_now(&self, seq: f64) -> napi::Result<Option<NativeSlot>> {
        self.inner.steps.slot_now(seq as u64).map_err(to_js_err)
    }

    /// Waits for the slot of step `seq`; the outcome (as `slotNow` answers
    /// or throws) is delivered with `key` (`takeDeliveries`).
    #[napi]
    pub fn slot(&self, seq: f64, key: u32) -> napi::Result<()> {
        self.inner.steps.slot(seq as u64, key).map_err(to_js_err)
    }

    /// Proposes `value` for the attempt of step `seq` that `slotNow` or a
    /// delivery handed out to compute; the committed value (or another
    /// owner's committed failure, `STEP_FAILED`) is delivered with `key`.
    #[napi]
    pub fn commit(&self, seq: f64, value: Buffer, key: u32) -> napi::Result<()> {
        let value = Bytes::from(value.to_vec());
        self.inner
            .steps
            .commit(seq as u64, value, key)
            .map_err(to_js_err)
    }

    /// The step's code threw `failure` in the attempt of step `seq` handed
    /// out to compute. The core commits it per `policy`, and delivers with
    /// `key` the next attempt to compute (`seq`, `attempt`) once its delay
    /// has passed, or the committed value if another owner resolved the
    /// step first, or `STEP_FAILED` when the step failed for good (here and
    /// on every replica). Throws `INVALID_ARGUMENT` for a bad policy
    /// (nothing is committed then).
    #[napi]
    pub fn fail_step(
        &self,
        seq: f64,
        failure: NativeFailure,
        policy: NativeRetryPolicy,
        key: u32,
    ) -> napi::Result<()> {
        let policy = policy.to_policy().map_err(to_js_err)?;
        self.inner
            .steps
            .fail(seq as u64, failure.into(), policy, key)
            .map_err(to_js_err)
    }

    /// Takes the next position for a durable timer named `name` that fires
    /// `ms` milliseconds after its start is committed (a fraction rounds
    /// up), at once, and returns it: sleeps and steps started side by side
    /// get positions in call order. Then `timer`. Throws
    /// `INVALID_ARGUMENT` for a negative or NaN `ms` and for one beyond
    /// 366 days (the core's limit; nothing is taken then), and
    /// `NON_DETERMINISM` when the history has a step or another name there.
    #[napi]
    pub fn request_timer(&self, name: String, ms: f64) -> napi::Result<f64> {
        if ms.is_nan() || ms < 0.0 {
            return Err(usage(format!(
                "sleep '{name}' of workflow '{}': the duration is {ms} ms; it must not be negative (nor NaN)",
                self.inner.workflow_id
            )));
        }
        // Saturating: Infinity and anything beyond u64 become a duration the
        // core refuses with its own message (366 days).
        let duration = Duration::from_millis(ms.ceil() as u64);
        let seq = self
            .inner
            .steps
            .request_timer(&name, duration)
            .map_err(to_js_err)?;
        Ok(seq as f64)
    }

    /// Waits for the timer `requestTimer` took at `seq` to fire: the core
    /// commits its start when this replica owns the workflow (once), and
    /// the cluster fires it. The firing (`{ fired: true }`), or the error
    /// (`CANCELLED`, `NON_DETERMINISM`, `SHUTTING_DOWN`, `REJECTED`...), is
    /// delivered with `key` (`takeDeliveries`) in its turn.
    #[napi]
    pub fn timer(&self, seq: f64, key: u32) -> napi::Result<()> {
        self.inner.steps.timer(seq as u64, key).map_err(to_js_err)
    }

    /// Takes the next position for a wait for the event `name`, at once,
    /// and returns it: waits, sleeps and steps started side by side get
    /// positions in call order. Then `event`. `timeoutMs`: the wait ends
    /// empty (`timedOut`) when no event came this long after the wait is
    /// committed (a fraction rounds up; 0 waits at least a millisecond);
    /// absent: no timeout. Throws `INVALID_ARGUMENT` for a negative or NaN
    /// timeout and for one beyond 366 days (nothing is taken then), and
    /// `NON_DETERMINISM` when the history has another operation or a wait
    /// for another name there.
    #[napi]
    pub fn request_event(&self, name: String, timeout_ms: Option<f64>) -> napi::Result<f64> {
        let timeout = match timeout_ms {
            Some(ms) if ms.is_nan() || ms < 0.0 => {
                return Err(usage(format!(
                    "the wait for event '{name}' of workflow '{}': the timeout is {ms} ms; it must not be negative (nor NaN)",
                    self.inner.workflow_id
                )));
            }
            // Saturating: Infinity and anything beyond u64 become a timeout
            // the core refuses with its own message (366 days).
            Some(ms) => Some(Duration::from_millis(ms.ceil() as u64)),
            None => None,
        };
        let seq = self
            .inner
            .steps
            .request_event(&name, timeout)
            .map_err(to_js_err)?;
        Ok(seq as f64)
    }

    /// Waits for the event wait `requestEvent` (or the awakeable
    /// `requestAwakeable`) took at `seq`: the core commits the wait when
    /// this replica owns the workflow (once), and the cluster resolves it.
    /// The event's payload (`{ value }`), the timeout (`{ timedOut: true }`),
    /// or the error (`CANCELLED`, `NON_DETERMINISM`, `SHUTTING_DOWN`,
    /// `REJECTED`...; `STEP_FAILED` for a rejected awakeable) is delivered
    /// with `key` (`takeDeliveries`) in its turn.
    #[napi]
    pub fn event(&self, seq: f64, key: u32) -> napi::Result<()> {
        self.inner.steps.event(seq as u64, key).map_err(to_js_err)
    }

    /// Takes the next position for setting the workflow's status `key` to
    /// the encoded `value`, at once, and returns it: status values, waits,
    /// sleeps and steps started side by side get positions in call order.
    /// Then `status`. The value is any encoding (the client's codec), at
    /// most 64 KiB (`MAX_STATUS_BYTES`). Throws `INVALID_ARGUMENT` for a
    /// value too large (nothing is taken then), and `NON_DETERMINISM` when
    /// the history has another operation or another key there.
    #[napi]
    pub fn request_status(&self, key: String, value: Buffer) -> napi::Result<f64> {
        let seq = self
            .inner
            .steps
            .request_status(&key, Bytes::from(value.to_vec()))
            .map_err(to_js_err)?;
        Ok(seq as f64)
    }

    /// Waits for the status value `requestStatus` took at `seq`: the core
    /// commits it when this replica owns the workflow (once; a replay finds
    /// it committed). The commit (`{}`), or the error (`CANCELLED`,
    /// `NON_DETERMINISM`, `SHUTTING_DOWN`, `REJECTED`...), is delivered
    /// with `key` (`takeDeliveries`) in its turn.
    #[napi]
    pub fn status(&self, seq: f64, key: u32) -> napi::Result<()> {
        self.inner.steps.status(seq as u64, key).map_err(to_js_err)
    }

    /// Creates an awakeable at the next position, at once: its position
    /// (`seq`) and the id that completes it (`id`, `awk/SEQ/WORKFLOW_ID`,
    /// for `completeAwakeable` through any node). Awakeables, waits, sleeps
    /// and steps started side by side get positions in call order. Then
    /// `event(seq, key)` waits for it: the value it was resolved with
    /// (`{ value }`, possibly empty), or `STEP_FAILED` with the type and
    /// message it was rejected with, or the errors of an event wait
    /// (`CANCELLED`, `NON_DETERMINISM`, `SHUTTING_DOWN`...). Throws
    /// `NON_DETERMINISM` when the history has another operation there.
    #[napi]
    pub fn request_awakeable(&self) -> napi::Result<NativeAwakeable> {
        let (seq, id) = self.inner.steps.request_awakeable().map_err(to_js_err)?;
        Ok(NativeAwakeable {
            seq: seq as f64,
            id,
        })
    }

    /// Takes the next position for a child workflow of type `workflow` at
    /// `version` (0 means 1) with the encoded `input`, named `id` (absent:
    /// `PARENT_ID/SEQ`, the same in every replay), ended by `parentClose`
    /// (`"cancel"`, the default, `"abandon"` or `"terminate"`) if this
    /// workflow ends first; at once: its position (`seq`) and the child's
    /// id. Children, waits, sleeps and steps started side by side get
    /// positions in call order. Then `child(seq, key, startedKey)`. Throws
    /// `INVALID_ARGUMENT` for an empty workflow name, an empty id, this
    /// workflow's own id or an unknown policy (nothing is taken then), and
    /// `NON_DETERMINISM` when the history has another operation, or a
    /// child of another type, there.
    #[napi]
    pub fn request_child(
        &self,
        workflow: String,
        version: u32,
        input: Buffer,
        id: Option<String>,
        parent_close: Option<String>,
    ) -> napi::Result<NativeChild> {
        if workflow.is_empty() {
            return Err(usage(format!(
                "a child workflow of '{}' needs a workflow name",
                self.inner.workflow_id
            )));
        }
        let parent_close = match parent_close.as_deref() {
            None | Some("cancel") => ParentClose::Cancel,
            Some("abandon") => ParentClose::Abandon,
            Some("terminate") => ParentClose::Terminate,
            Some(other) => {
                return Err(usage(format!(
                    "child '{workflow}' of workflow '{}': parentClose is '{other}'; it must be \"cancel\", \"abandon\" or \"terminate\"",
                    self.inner.workflow_id
                )));
            }
        };
        let options = ChildOptions {
            id,
            version,
            parent_close,
        };
        let (seq, id) = self
            .inner
            .steps
            .request_child(&workflow, Bytes::from(input.to_vec()), &options)
            .map_err(to_js_err)?;
        Ok(NativeChild {
            seq: seq as f64,
            id,
        })
    }

    /// Starts the child `requestChild` took at `seq` (the core proposes its
    /// start when this replica owns the workflow, once; a replay starts
    /// nothing) and waits for its end: its result (`{ value }`), or its
    /// failure as `STEP_FAILED` (type `raftoral.ChildCancelled` for a
    /// cancelled child, `raftoral.ChildIdInUse` when another workflow holds
    /// its id), or the error of a wait (`CANCELLED`, `NON_DETERMINISM`,
    /// `SHUTTING_DOWN`...), is delivered with `key` (`takeDeliveries`) in
    /// its turn. With `startedKey`, the commit of the child's start (`{}`),
    /// or the error that ended the wait first, is delivered with that key.
    #[napi]
    pub fn child(&self, seq: f64, key: u32, started_key: Option<u32>) -> napi::Result<()> {
        self.inner
            .steps
            .child(seq as u64, key, started_key)
            .map_err(to_js_err)
    }

    /// Races the operations the code took at positions `seqs` (sleeps,
    /// steps, event waits, awakeables and children whose waits are started): the
    /// index of the one resolved first in commit order (`{ winner }`), the
    /// same on every replica and in every replay, is delivered with `key`
    /// (`takeDeliveries`) once its resolution is handed out or is the next
    /// to be. The others are abandoned: their resolutions are skipped, a
    /// losing timer is cancelled by the owner (`TIMER_CANCELLED`, committed
    /// before the delivery), so is a losing event wait or awakeable
    /// (`EVENT_WAIT_CANCELLED`; an event it took goes back to the
    /// workflow), a losing step runs on to its commit. Throws
    /// `INVALID_ARGUMENT` for no position, a position given twice or one
    /// that is not a non-negative integer; delivers `CANCELLED`,
    /// `SHUTTING_DOWN`, `NOT_RUNNING` as a wait does.
    #[napi]
    pub fn first_of(&self, seqs: Vec<f64>, key: u32) -> napi::Result<()> {
        let mut positions = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if !(seq >= 0.0 && seq.fract() == 0.0 && seq <= u64::MAX as f64) {
                return Err(usage(format!(
                    "first() of workflow '{}': {seq} is not a position",
                    self.inner.workflow_id
                )));
            }
            positions.push(seq as u64);
        }
        self.inner.steps.first(positions, key).map_err(to_js_err)
    }

    /// Resolves with the reason once the workflow's cancel is requested (a
    /// cleanup window runs) or it is cancelled for good, or null when the
    /// run ends first (drives the context's `AbortSignal`). Says only that
    /// the workflow is being cancelled: where the code gets `CANCELLED` is
    /// the core's to decide (see `interrupted`).
    #[napi]
    pub async fn cancelled(&self) -> Option<String> {
        let inner = self.inner.clone();
        inner.steps.context().cancelled().await
    }

    /// The run's interruptions so far (see `interrupted`).
    #[napi(getter)]
    pub fn interrupts(&self) -> f64 {
        self.inner.steps.context().interrupts() as f64
    }

    /// Resolves once the run has more than `after` interruptions, with the
    /// cancel's reason and the new count; null when the run ends first. An
    /// interruption (a cancel request delivered into the code, or a cancel
    /// for good) means: stop the step attempts handed out with fewer
    /// interruptions than the new count (`NativeSlot.interrupts`), drop
    /// their outcomes, and ask for their slots again (`slot`); the core
    /// answers `CANCELLED` where the cancellation was delivered, a value
    /// committed meanwhile, or the attempt to run again. One watcher per
    /// run: `n = 0; for (;;) { ({ count: n } = await interrupted(n)); stop }`.
    #[napi]
    pub async fn interrupted(&self, after: f64) -> Option<NativeInterruption> {
        let inner = self.inner.clone();
        let after = if after.is_finite() && after > 0.0 {
            after as u64
        } else {
            0
        };
        let (reason, count) = inner.steps.context().interrupted(after).await?;
        Some(NativeInterruption {
            reason,
            count: count as f64,
        })
    }

    /// A float in `[0, 1)` from the run's seeded generator: the same on
    /// every replica and in every replay (nothing is committed). Throws
    /// `SHUTTING_DOWN` once the core no longer holds the run.
    #[napi]
    pub fn random(&self) -> napi::Result<f64> {
        self.inner.steps.context().random().map_err(to_js_err)
    }

    /// A version 4 UUID (lowercase 8-4-4-4-12) from the same generator as
    /// `random` (two draws).
    #[napi]
    pub fn uuid(&self) -> napi::Result<String> {
        self.inner.steps.context().uuid().map_err(to_js_err)
    }

    /// True while the code repeats what already happened: a replay, or
    /// this replica does not own the workflow (also once the run is gone).
    #[napi(getter)]
    pub fn is_replaying(&self) -> bool {
        self.inner.steps.context().is_replaying()
    }

    /// The position the code's next step takes (0-based): the step a log
    /// line is written before. The core's cursor (0 once the run is gone).
    #[napi(getter)]
    pub fn next_position(&self) -> f64 {
        self.inner.steps.context().next_position() as f64
    }

    /// The workflow returned `value` (encoded).
    #[napi]
    pub fn complete(&self, value: Buffer) -> napi::Result<()> {
        self.reply(Ok(value.to_vec()))
    }

    /// The workflow failed with `message`.
    #[napi]
    pub fn fail(&self, message: String) -> napi::Result<()> {
        self.reply(Err(WorkflowError::Failed(message)))
    }

    /// The workflow failed with an uncaught step failure: its error text
    /// is the one the Rust SDK gives, and the failure is recorded with the
    /// workflow's outcome, structured.
    #[napi]
    pub fn fail_with_step(&self, failed: NativeStepFailure) -> napi::Result<()> {
        let failure = StepFailure {
            workflow_id: self.inner.workflow_id.clone(),
            seq: failed.seq as u64,
            step: failed.step,
            attempts: failed.attempts,
            // Bounded by the core, as every failure it sends.
            failure: failed.failure.into(),
        };
        self.reply(Err(WorkflowError::Client(ClientError::StepFailed(
            Box::new(failure),
        ))))
    }

    /// The workflow function threw its own structured error (an
    /// `ApplicationError`): the workflow fails with it as the Rust SDK's
    /// `WorkflowError::Application` does, its error text `Type: message`
    /// and the failure (type, message, details, non-retryable) recorded
    /// with its outcome, which clients read as `WorkflowInfo.failure`.
    #[napi]
    pub fn fail_with_application_error(&self, failure: NativeFailure) -> napi::Result<()> {
        let failure = Failure::from(failure);
        let mut error = StepError::new(failure.r#type, failure.message);
        if !failure.details_json.is_empty() {
            // JSON.stringify's text; one serde_json cannot read (nested
            // deeper than it goes) is dropped, as details too large are.
            match serde_json::from_str(&failure.details_json) {
                Ok(details) => error = error.details(details),
                Err(e) => tracing::warn!(
                    workflow = %self.inner.workflow_id, error = %e,
                    "the workflow's error details are dropped: not readable as JSON"
                ),
            }
        }
        if failure.non_retryable {
            error = error.non_retryable();
        }
        self.reply(Err(WorkflowError::Application(error)))
    }

    /// The workflow function ended with the SDK's `Cancelled` (with its
    /// reason), or was stopped by a shutdown (no reason). While a cancel
    /// request's cleanup window runs, the first ends the workflow
    /// CANCELLED with that reason (its code re-threw the cancellation it
    /// was delivered, after any compensation); otherwise nothing is
    /// reported as its outcome (cancelled for good already, or resumed
    /// elsewhere after a shutdown).
    #[napi]
    pub fn abandon(&self, cancelled_reason: Option<String>) -> napi::Result<()> {
        let error = match cancelled_reason {
            Some(reason) => ClientError::Cancelled {
                workflow_id: self.inner.workflow_id.clone(),
                reason,
            },
            None => ClientError::Shutdown,
        };
        self.reply(Err(WorkflowError::Client(error)))
    }
}
