//! `NativeWorker` and `NativeRun`: hand workflow executions to JavaScript.
//!
//! The Rust core runs the stream (registration, heartbeats, reconnect,
//! replay, ownership, retries) on a tokio thread. Each execution it starts is
//! queued here as a [`NativeRun`]; JavaScript pulls runs in batches with `nextRuns()`,
//! runs the workflow function, and for each checkpoint asks the core for a
//! slot (a committed value, or permission to compute when this replica owns
//! the workflow). The outcome goes back through `complete` / `fail` /
//! `abandon`, which the core reports exactly as for a Rust workflow.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use raftoral_client::{
    ClientError, ComputeToken, RaftoralClient, RunOutcome, RunReply, Slot, WorkflowContext,
    WorkflowError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::NativeClient;
use crate::errors::{to_js_err, usage};

/// Runs queued for JavaScript. Bounded: when JavaScript falls behind, the
/// core's per-run tasks wait here, never the stream reader.
const RUN_QUEUE: usize = 1024;

/// Most runs one `nextRuns` call hands to JavaScript.
const RUN_BATCH: usize = 256;

/// The worker side of a client: registrations and the run queue.
#[napi]
pub struct NativeWorker {
    client: RaftoralClient,
    runs_tx: Mutex<Option<mpsc::Sender<NativeRun>>>,
    runs_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<NativeRun>>>,
    task: Mutex<Option<JoinHandle<Result<(), ClientError>>>>,
}

/// One execution of a workflow on this worker.
#[napi]
pub struct NativeRun {
    inner: Arc<RunInner>,
}

struct RunInner {
    context: WorkflowContext,
    workflow_id: String,
    workflow_name: String,
    version: u32,
    input: Bytes,
    /// The permission to compute the checkpoint `slot` asked for; spent by
    /// `commit`. Checkpoints of one run are sequential (the TypeScript
    /// context queues them), so one is enough.
    token: Mutex<Option<ComputeToken>>,
    reply: Mutex<Option<RunReply>>,
}

/// The answer to `slot`: the committed value, or none when this replica
/// must compute it (then `seq` is its position).
#[napi(object)]
pub struct NativeSlot {
    /// The committed value to continue with; absent: compute, then `commit`.
    pub value: Option<Buffer>,
    /// 0-based position of the checkpoint to compute.
    pub seq: Option<f64>,
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
        let client = self.client.clone();
        // A run dropped without an outcome (its JS side was collected) is
        // not an outcome: the workflow resumes elsewhere or after a restart.
        let task = tokio::spawn(client.hand_over_workflows(runs, |req, reply| NativeRun {
            inner: Arc::new(RunInner {
                workflow_id: req.workflow_id,
                workflow_name: req.workflow_name,
                version: req.version,
                input: req.input,
                context: req.context,
                token: Mutex::new(None),
                reply: Mutex::new(Some(reply)),
            }),
        }));
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

    /// Number of runs in progress in the core.
    #[napi(getter)]
    pub fn running(&self) -> u32 {
        self.client.core().running() as u32
    }

    /// Stops the stream and waits for the core's loop to end. Running
    /// workflows stay running in the cluster and resume by replay when a
    /// worker connects again.
    #[napi]
    pub async fn shutdown(&self) -> napi::Result<()> {
        self.client.shutdown().await;
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

impl RunInner {
    /// The slot as JS sees it; a compute token is kept for `commit`.
    fn native_slot(&self, slot: Slot) -> NativeSlot {
        match slot {
            Slot::Committed(value) => NativeSlot {
                value: Some(value.to_vec().into()),
                seq: None,
            },
            Slot::Compute(token) => {
                let seq = token.seq() as f64;
                *self.token.lock().expect("lock") = Some(token);
                NativeSlot {
                    value: None,
                    seq: Some(seq),
                }
            }
        }
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

    /// The slot for the next checkpoint, named `name`. Rejects with
    /// `CANCELLED`, `NON_DETERMINISM`, `SHUTTING_DOWN`.
    #[napi]
    pub async fn slot(&self, name: String) -> napi::Result<NativeSlot> {
        let slot = self
            .inner
            .context
            .checkpoint_slot(&name)
            .await
            .map_err(to_js_err)?;
        Ok(self.inner.native_slot(slot))
    }

    /// `slot` without waiting: null when the slot is not decided yet (a
    /// replica waiting for the owner's commit; then await `slot`). The
    /// owner's common case costs no round trip through the event loop.
    #[napi]
    pub fn slot_now(&self, name: String) -> napi::Result<Option<NativeSlot>> {
        match self.inner.context.try_checkpoint_slot(&name) {
            None => Ok(None),
            Some(slot) => Ok(Some(self.inner.native_slot(slot.map_err(to_js_err)?))),
        }
    }

    /// Proposes `value` for the checkpoint `slot` asked to compute and waits
    /// for the commit; returns the committed value.
    #[napi]
    pub async fn commit(&self, value: Buffer) -> napi::Result<Buffer> {
        let inner = self.inner.clone();
        let Some(token) = inner.token.lock().expect("lock").take() else {
            return Err(usage(format!(
                "workflow '{}': commit without a slot to compute",
                inner.workflow_id
            )));
        };
        let committed = inner
            .context
            .commit(token, Bytes::from(value.to_vec()))
            .await
            .map_err(to_js_err)?;
        Ok(committed.to_vec().into())
    }

    /// Resolves with the reason once the workflow is cancelled, or null when
    /// the run ends first (drives the context's `AbortSignal`).
    #[napi]
    pub async fn cancelled(&self) -> Option<String> {
        let inner = self.inner.clone();
        inner.context.cancelled().await
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

    /// The workflow was interrupted, not finished: cancelled (with the
    /// reason) or stopped by a shutdown (no reason). Nothing is reported as
    /// its outcome.
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
