//! Durable waits for events (`WorkflowContext.wait_event`): the position is
//! taken when the code calls the wait (the core's `request_event`), the
//! wait is the core's (`event`), and its resolution (the payload, or none
//! when the timeout passed first) reaches asyncio the way a step's value
//! does (through the `CommitBridge`, in the order the core hands
//! resolutions out). Events are sent with `Client.signal_workflow`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ClientError, WorkflowContext};

/// The rest of a wait once its position is taken: the payload, or `None`
/// when the timeout passed first.
pub(crate) type EventWait =
    Pin<Box<dyn Future<Output = Result<Option<Bytes>, ClientError>> + Send>>;

/// An event wait's position the workflow code took (`Run.request_event`);
/// awaited once, with `Run.event` or `Run.event_to`.
#[pyclass(frozen, module = "raftoral._core")]
pub struct EventRequest {
    wait: Mutex<Option<EventWait>>,
    /// 0-based position.
    #[pyo3(get)]
    seq: u64,
}

impl EventRequest {
    /// Takes the next position of `context`'s run for a wait for the event
    /// `name`, with a timeout of `timeout` seconds (None: none): raises a
    /// negative (or not-a-number) timeout as a usage error, and the core's
    /// refusals (more than 366 days, non-determinism, the run gone) at
    /// once.
    pub(crate) fn take(
        context: &WorkflowContext,
        name: &str,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let timeout = timeout
            .map(|seconds| {
                crate::timers::duration(
                    &format!("the timeout of wait_event '{name}'"),
                    context.workflow_id(),
                    seconds,
                )
            })
            .transpose()?;
        let req = context
            .request_event(name, timeout)
            .map_err(crate::errors::to_py_err)?;
        let seq = req.seq();
        let context = context.clone();
        let wait: EventWait = Box::pin(async move { context.event(&req).await });
        Ok(EventRequest {
            wait: Mutex::new(Some(wait)),
            seq,
        })
    }

    /// The wait, once: a wait is awaited by one caller.
    pub(crate) fn wait(&self) -> PyResult<EventWait> {
        self.wait
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this event wait was already awaited"))
    }
}
