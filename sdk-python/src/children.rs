//! Child workflows (`WorkflowContext.start_child` / `call_child`, app
//! protocol 8): the code starts a workflow at a position like a step; the
//! cluster starts the child in the same entry as the parent's
//! `CHILD_STARTED`, and the child's end resolves the position
//! (`CHILD_COMPLETED` with its result, `CHILD_FAILED` with its failure,
//! raised as `StepFailed`).
//!
//! The position is taken when the code calls `Run.request_child`, at once,
//! like a step's (the core's `request_child`); the rest is the core's:
//! `child` proposes the start and waits for the child's end (it runs from
//! the call on, so the start goes out whether the result is awaited or
//! not), and `child_started` waits for the start's commit (`start_child`
//! returns then). Both reach asyncio through the `CommitBridge`, as a
//! step's value does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ChildOptions, ClientError, ParentClose, WorkflowContext};

use crate::errors::to_py_err;

/// The child's encoded result, or its failure (`ClientError::StepFailed`).
pub(crate) type ChildWait = Pin<Box<dyn Future<Output = Result<Bytes, ClientError>> + Send>>;

/// Resolves once the child's start is committed (or its position resolved).
pub(crate) type StartedWait = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// A child workflow the code started (`Run.request_child`): its result is
/// awaited once (`Run.child` / `Run.child_to`), and so is the commit of its
/// start (`Run.child_started` / `Run.child_started_to`).
#[pyclass(frozen, module = "raftoral._core")]
pub struct ChildRequest {
    result: Mutex<Option<ChildWait>>,
    started: Mutex<Option<StartedWait>>,
    /// 0-based position in the parent.
    #[pyo3(get)]
    seq: u64,
    /// The child's workflow id.
    #[pyo3(get)]
    id: String,
}

/// The policy named `name` (`cancel`, `abandon`, `terminate`).
fn policy(name: &str) -> PyResult<ParentClose> {
    match name {
        "cancel" => Ok(ParentClose::Cancel),
        "abandon" => Ok(ParentClose::Abandon),
        "terminate" => Ok(ParentClose::Terminate),
        other => Err(to_py_err(ClientError::Usage(format!(
            "parent_close is 'cancel', 'abandon' or 'terminate', got '{other}'; nothing was started"
        )))),
    }
}

impl ChildRequest {
    /// Takes the next position of `context`'s run for the child workflow
    /// `workflow` (version 0 means 1) with the encoded `input`, named `id`
    /// (None: `PARENT_ID/SEQ`), ended by `parent_close` if the parent ends
    /// first, and starts the core's `child` (which proposes the start).
    /// Raises the core's refusals at once (its own id, an empty id,
    /// non-determinism, the run gone) and an unknown policy; nothing is
    /// taken then.
    pub(crate) fn take(
        context: &WorkflowContext,
        workflow: &str,
        version: u32,
        input: Vec<u8>,
        id: Option<String>,
        parent_close: &str,
    ) -> PyResult<Self> {
        let options = ChildOptions {
            id,
            version,
            parent_close: policy(parent_close)?,
        };
        let req = context
            .request_child(workflow, Bytes::from(input), &options)
            .map_err(to_py_err)?;
        let (seq, id) = (req.seq(), req.id().to_owned());
        // The start is proposed by `child`, which `child_started` needs
        // running: it runs from now on, awaited or not.
        let (ctx, r) = (context.clone(), req.clone());
        let running =
            pyo3_async_runtimes::tokio::get_runtime().spawn(async move { ctx.child(&r).await });
        let result: ChildWait = Box::pin(async move {
            running.await.map_err(|e| {
                ClientError::Usage(format!("the wait for a child workflow failed: {e}"))
            })?
        });
        let context = context.clone();
        let started: StartedWait = Box::pin(async move { context.child_started(&req).await });
        Ok(ChildRequest {
            result: Mutex::new(Some(result)),
            started: Mutex::new(Some(started)),
            seq,
            id,
        })
    }

    /// The wait for the child's result, once.
    pub(crate) fn result(&self) -> PyResult<ChildWait> {
        self.result
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this child's result was already awaited"))
    }

    /// The wait for the child's start to commit, once.
    pub(crate) fn started(&self) -> PyResult<StartedWait> {
        self.started
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this child's start was already awaited"))
    }
}
