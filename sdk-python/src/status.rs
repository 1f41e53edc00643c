//! Readable status values (`WorkflowContext.set_status`, app protocol 6):
//! the position is taken when the code calls it, at once, as a step's is
//! (so statuses, steps, sleeps and waits started side by side keep their
//! call order); the commit is the core's, and its end reaches asyncio the
//! way a step's value does (through the `CommitBridge`, in the order the
//! core hands resolutions out). Clients read the values with
//! `Client.get_status`.
//!
//! The core has no synchronous half for a status (`set_status` is one
//! `async fn` that checks the size, takes the position, then commits), so
//! the binding polls it once here, on the caller's thread: that first poll
//! takes the position (or fails: too big, non-determinism, the run gone)
//! and stops at the core's yield before the commit; the rest runs on the
//! binding's runtime. The value is the workflow codec's bytes, handed to
//! the core's serde_json serializer as a `RawValue`, which writes them as
//! they are: a status value is JSON (what every SDK's `get_status`
//! decodes), so bytes that are not are refused before any position is
//! taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ClientError, WorkflowContext};
use serde_json::value::RawValue;

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
    /// to `value` (encoded JSON). Raises at once, before any position is
    /// taken, a value that is not JSON or is over the core's
    /// `MAX_STATUS_BYTES` (`InvalidArgument`), and the core's refusals at
    /// the position (non-determinism, the run gone).
    pub(crate) fn take(context: &WorkflowContext, key: &str, value: Vec<u8>) -> PyResult<Self> {
        let not_json = |reason: String| {
            to_py_err(ClientError::Usage(format!(
                "status '{key}' of workflow '{}': the value is not JSON ({reason}); a status \
                 is read as JSON by every SDK's get_status: use a codec that writes JSON",
                context.workflow_id()
            )))
        };
        let text = String::from_utf8(value).map_err(|e| not_json(e.to_string()))?;
        let raw = RawValue::from_string(text).map_err(|e| not_json(e.to_string()))?;
        let seq = context.next_position();
        let mut set: StatusSet = {
            let (context, key) = (context.clone(), key.to_owned());
            Box::pin(async move { context.set_status(&key, &*raw).await })
        };
        // The first poll runs the core's checks and takes the position,
        // then stops at its yield (a no-op waker: the runtime polls it
        // again when it is awaited).
        let set = match set.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Err(e)) => return Err(to_py_err(e)),
            Poll::Ready(Ok(())) => Box::pin(async { Ok(()) }),
            Poll::Pending => set,
        };
        // A core that no longer took the position in its first poll would
        // let the position depend on thread timing: refuse loudly instead.
        if context.next_position() != seq + 1 {
            return Err(PyRuntimeError::new_err(format!(
                "status '{key}' of workflow '{}': the SDK core's set_status did not take its \
                 position at once, which this binding needs (see sdk-python/src/status.rs)",
                context.workflow_id()
            )));
        }
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
