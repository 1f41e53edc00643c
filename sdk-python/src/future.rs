//! Rust futures as Python awaitables, with a clean interpreter exit.
//!
//! pyo3-async-runtimes hands each future's result to asyncio from a tokio
//! blocking thread (`call_soon_threadsafe`). If the interpreter finalizes
//! while such a thread is inside that call, CPython ends the thread from
//! under Rust and the process aborts. So every awaitable of this module is
//! counted while its future runs, and an `atexit` hook ([`quiesce`]) lets
//! the last results land, with the GIL released, before finalization.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Time left to blocking threads to hand over a result once every future
/// has finished: they only need the GIL for a moment.
const HAND_OVER: Duration = Duration::from_millis(20);

struct Counted;

impl Counted {
    fn new() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `fut` as an asyncio awaitable on the binding's tokio runtime.
pub(crate) fn into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let counted = Counted::new();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let _counted = counted;
        fut.await
    })
}

/// Waits (GIL released) up to `timeout` seconds for running futures to
/// finish and hand their results over. Registered with `atexit` by the
/// package; harmless to call at any time.
#[pyfunction]
pub(crate) fn quiesce(py: Python<'_>, timeout: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    py.detach(|| {
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(HAND_OVER);
    });
}
