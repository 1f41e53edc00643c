//! The native half of the Node SDK (`@raftoral/client`).
//!
//! A thin binding of `raftoral-client` (the one SDK core) and of the engine
//! (for `LocalNode`). The stream, reconnects, heartbeats, replay, ownership,
//! retries, cancellation and non-determinism checks all run here, on the
//! addon's tokio thread; the TypeScript layer only adds the API surface
//! (workflow definitions, context, codec, error classes, types). A step that
//! blocks the JS thread therefore never stalls the heartbeats.

mod client;
mod errors;
mod local;
mod retry;
mod steps;
mod worker;

use napi_derive::napi;

/// The addon's runtime, which drives every async method and the SDK
/// core's stream: one worker thread off the JS thread (see
/// `binding_runtime`); `LocalNode`'s engine runs on a runtime of its own.
#[napi_derive::module_init]
fn init_runtime() {
    match raftoral_client::binding_runtime().build() {
        Ok(runtime) => napi::bindgen_prelude::create_custom_tokio_runtime(runtime),
        // napi then builds its default runtime on first use.
        Err(e) => {
            init_logging();
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
