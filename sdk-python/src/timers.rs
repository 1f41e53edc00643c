//! Durable timers (`WorkflowContext.sleep`): the position is taken when the
//! code calls sleep (the core's `request_timer`), the wait is the core's
//! (`timer`), and its end reaches asyncio the way a step's value does
//! (through the `CommitBridge`, in the order the core hands resolutions
//! out).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral_client::{ClientError, WorkflowContext};

/// The rest of a sleep once its position is taken.
pub(crate) type TimerWait = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// A timer position the workflow code took (`Run.request_timer`); awaited
/// once, with `Run.timer` or `Run.timer_to`.
#[pyclass(frozen, module = "raftoral._core")]
pub struct TimerRequest {
    wait: Mutex<Option<TimerWait>>,
    /// 0-based position.
    #[pyo3(get)]
    seq: u64,
}

impl TimerRequest {
    /// Takes the next position of `context`'s run for a timer named `name`
    /// of `seconds`: raises a negative (or not-a-number) duration as a
    /// usage error, and the core's refusals (more than 366 days,
    /// non-determinism, the run gone) at once.
    pub(crate) fn take(context: &WorkflowContext, name: &str, seconds: f64) -> PyResult<Self> {
        let duration = duration(&format!("sleep '{name}'"), context.workflow_id(), seconds)?;
        let req = context
            .request_timer(name, duration)
            .map_err(crate::errors::to_py_err)?;
        let seq = req.seq();
        let context = context.clone();
        let wait: TimerWait = Box::pin(async move { context.timer(&req).await });
        Ok(TimerRequest {
            wait: Mutex::new(Some(wait)),
            seq,
        })
    }

    /// The wait, once: a timer is awaited by one caller.
    pub(crate) fn wait(&self) -> PyResult<TimerWait> {
        self.wait
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this timer was already awaited"))
    }
}

/// `seconds` as a duration of `what` (`sleep 'nap'`, ...): refused when
/// negative or not a number; more than the core can hold is kept beyond
/// the limit, for the core to refuse with its own message (366 days).
/// Rounded to the millisecond, the protocol's unit, so whole milliseconds
/// given as seconds stay exact.
pub(crate) fn duration(what: &str, workflow_id: &str, seconds: f64) -> PyResult<Duration> {
    let refused = if seconds.is_nan() {
        "a duration must be a number of seconds"
    } else if seconds < 0.0 {
        "a duration cannot be negative"
    } else {
        ""
    };
    if !refused.is_empty() {
        return Err(crate::errors::to_py_err(ClientError::Usage(format!(
            "{what} of workflow '{workflow_id}' is {seconds} s: {refused}"
        ))));
    }
    let ms = (seconds * 1000.0).round();
    Ok(if ms >= u64::MAX as f64 {
        Duration::MAX
    } else {
        Duration::from_millis(ms as u64)
    })
}
