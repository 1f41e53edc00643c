//! The native half of the Node SDK (`@raftoral/client`).
//!
//! A thin binding of `raftoral-client` (the one SDK core) and of the engine
//! (for `LocalNode`). The stream, reconnects, heartbeats, replay, ownership,
//! retries, cancellation and non-determinism checks all run here, on the
//! addon's tokio threads; the TypeScript layer only adds the API surface
//! (workflow definitions, context, codec, error classes, types). A step that
//! blocks the JS thread therefore never stalls the heartbeats.

mod client;
mod errors;
mod local;
mod worker;

use napi_derive::napi;

/// Tokio worker threads of the addon's runtime, which drives every async
/// method and the SDK core's stream. One thread: a checkpoint then crosses
/// from the JS thread to that thread and back, and no further. With napi's
/// default runtime (a worker per core), tokio woke an idle worker to steal
/// each handed-over task, and the extra wake-ups cost 0.11 ms per
/// checkpoint on a 2-vCPU machine (docs/PERFORMANCE.md). `LocalNode`'s
/// engine runs on a runtime of its own.
const RUNTIME_THREADS: usize = 1;

#[napi_derive::module_init]
fn init_runtime() {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("raftoral-core")
        .enable_all()
        .build()
    {
        Ok(runtime) => napi::bindgen_prelude::create_custom_tokio_runtime(runtime),
        // napi then builds its default runtime on first use.
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the addon's runtime; using napi's default")
        }
    }
}

/// Version of the native addon (the crate version).
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Logs of the core go to stderr when `RAFTORAL_LOG` is set (same syntax as
/// `RUST_LOG`); silent otherwise, as a library should be. Called by every
/// entry point that starts Rust work (connect, local node).
pub(crate) fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("RAFTORAL_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
    });
}
