//! Readable status values (`WorkflowContext.set_status`, app protocol 6):
//! the position is taken when the code calls it (the core's
//! `request_status`, which also checks the value's size), at once, as a
//! step's is (so statuses, steps, sleeps and waits started side by side
//! keep their call order); the commit is the core's (`status`), and its
//! end reaches asyncio the way a step's value does (through the
//! `CommitBridge`, in the order the core hands resolutions out). The value
//! is the workflow codec's bytes, committed as they are. Clients read the
//! values with `Client.get_status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ClientError, WorkflowContext};

use crate::errors::to_py_err;

/// The rest of a status set once its position is taken: its commit.
pub(crate) type StatusSet = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// A status position the workflow code took (`Run.request_status`);
/// awaited once, with `Run.status` or `Run.status_to`.
#[pyclass(frozen, module = "raftoral._core")]
pub struct StatusRequest {
    set: Mutex<Option<StatusSet>>,
    /// 0-based position.
    #[pyo3(get)]
    seq: u64,
}

impl StatusRequest {
    /// Takes the next position of `context`'s run for setting status `key`
    /// to `value` (encoded). Raises the core's refusals at once: a value
    /// over `MAX_STATUS_BYTES` (`InvalidArgument`, before any position is
    /// taken), non-determinism, the run gone.
    pub(crate) fn take(context: &WorkflowContext, key: &str, value: Vec<u8>) -> PyResult<Self> {
        let req = context
            .request_status(key, Bytes::from(value))
            .map_err(to_py_err)?;
        let seq = req.seq();
        let context = context.clone();
        let set: StatusSet = Box::pin(async move { context.status(&req).await });
        Ok(StatusRequest {
            set: Mutex::new(Some(set)),
            seq,
        })
    }

    /// The commit, once: a status set is awaited by one caller.
    pub(crate) fn set(&self) -> PyResult<StatusSet> {
        self.set
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this status set was already awaited"))
    }
}
