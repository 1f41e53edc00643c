//! `raftoral._core`: the native half of the Python SDK.
//!
//! A thin binding of `raftoral-client` (the one SDK core) and of the engine
//! (for `LocalNode`). The stream, reconnects, heartbeats, replay, ownership,
//! retries, cancellation and non-determinism checks all run here, on tokio
//! threads; the Python package `raftoral` only adds the API surface
//! (decorators, context, codec, exceptions, types).

mod awakeables;
mod bridge;
mod children;
mod client;
mod errors;
mod events;
mod future;
mod local;
mod status;
mod timers;
mod worker;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Logs of the core go to stderr when RAFTORAL_LOG is set (same syntax as
    // RUST_LOG); silent otherwise, as a library should be.
    if let Ok(filter) = std::env::var("RAFTORAL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    // One worker thread for the core, off the asyncio loop (see
    // `binding_runtime`); `LocalNode`'s engine runs on a runtime of its own.
    pyo3_async_runtimes::tokio::init(raftoral_client::binding_runtime());
    m.add_function(wrap_pyfunction!(future::quiesce, m)?)?;
    m.add_class::<client::Client>()?;
    m.add_class::<worker::Worker>()?;
    m.add_class::<worker::Run>()?;
    m.add_class::<worker::ComputeToken>()?;
    m.add_class::<worker::RetryPolicy>()?;
    m.add_class::<worker::SlotRequest>()?;
    m.add_class::<timers::TimerRequest>()?;
    m.add_class::<events::EventRequest>()?;
    m.add_class::<status::StatusRequest>()?;
    m.add_class::<awakeables::AwakeableRequest>()?;
    m.add_class::<children::ChildRequest>()?;
    m.add_class::<bridge::CommitBridge>()?;
    m.add_class::<bridge::RunBridge>()?;
    m.add_class::<local::LocalNode>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The step name `WorkflowContext.now()` commits the clock under.
    m.add("NOW_STEP", raftoral_client::NOW_STEP)?;
    Ok(())
}
