//! Awakeables (`WorkflowContext.awakeable`, app protocol 6): a durable
//! future the code hands out by id, completed once from outside
//! (`Client.complete_awakeable`, through any node). The position is taken
//! when the code calls it (the core's `awakeable`), so its id is known at
//! once; the wait is the core's (`awakeable_value`), and its resolution
//! (the encoded value, or the rejection as `StepFailed`) reaches asyncio
//! the way a step's value does (through the `CommitBridge`, in the order
//! the core hands resolutions out).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ClientError, WorkflowContext};

use crate::errors::to_py_err;

/// The rest of an awakeable once its position is taken: the encoded value
/// it was resolved with, or `ClientError::StepFailed` with the failure it
/// was rejected with.
pub(crate) type AwakeableWait = Pin<Box<dyn Future<Output = Result<Bytes, ClientError>> + Send>>;

/// An awakeable the workflow code created (`Run.awakeable`); awaited once,
/// with `Run.awakeable_value` or `Run.awakeable_to`.
#[pyclass(frozen, module = "raftoral._core")]
pub struct AwakeableRequest {
    wait: Mutex<Option<AwakeableWait>>,
    /// 0-based position.
    #[pyo3(get)]
    seq: u64,
    /// The id that completes it: `awk/SEQ/WORKFLOW_ID`.
    #[pyo3(get)]
    id: String,
}

impl AwakeableRequest {
    /// Takes the next position of `context`'s run for an awakeable. Raises
    /// the core's refusals at once (non-determinism, the run gone).
    pub(crate) fn take(context: &WorkflowContext) -> PyResult<Self> {
        let req = context.awakeable().map_err(to_py_err)?;
        let (seq, id) = (req.seq(), req.id().to_owned());
        let context = context.clone();
        let wait: AwakeableWait = Box::pin(async move { context.awakeable_value(&req).await });
        Ok(AwakeableRequest {
            wait: Mutex::new(Some(wait)),
            seq,
            id,
        })
    }

    /// The wait, once: an awakeable is awaited by one caller.
    pub(crate) fn wait(&self) -> PyResult<AwakeableWait> {
        self.wait
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this awakeable was already awaited"))
    }
}
