//! The control for the bindings: the Rust bench worker with its workflow
//! functions on threads of their own, as the Python and Node bindings run
//! theirs (`raftoral-bench worker --language-thread`, the `rust-thread`
//! rows of `sdks`).
//!
//! The core runs on the runtime the bindings use
//! ([`raftoral_client::binding_runtime`]: one worker thread); each
//! workflow function runs on a blocking thread and waits for each
//! checkpoint with [`Handle::block_on`], so a checkpoint crosses from that
//! thread to the core's and back, as a binding's does, with no language
//! runtime's work in between. The difference between these rows and the
//! `rust` rows is what the two thread crossings cost; the difference
//! between the `python` or `node` rows and these is what the language's own
//! work costs.

use std::time::Instant;

use anyhow::Context;
use raftoral_client::{WorkflowError, WorkflowRequest};
use tokio::runtime::Handle;

use crate::workflows::{handler, serve_worker};

/// Serves the bench workflows with their functions on threads of their own
/// until the stream ends; blocks the calling thread, which must not be a
/// runtime's worker (a `spawn_blocking` thread will do).
pub fn serve() -> anyhow::Result<()> {
    let runtime = raftoral_client::binding_runtime()
        .build()
        .context("build the binding runtime")?;
    runtime.block_on(serve_worker(on_a_thread))
}

/// `ping_pong` and `steps` of [`handler`], run on a blocking thread;
/// `hold` (which never finishes and would keep a thread each) as usual.
async fn on_a_thread(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    if req.workflow_name == "hold" {
        return handler(req).await;
    }
    let core = Handle::current();
    tokio::task::spawn_blocking(move || run(&core, req))
        .await
        .map_err(|e| WorkflowError::Failed(format!("the workflow's thread died: {e}")))?
}

/// The workflow function on the "language" thread: every checkpoint is
/// handed to the core's runtime and waited for here.
fn run(core: &Handle, req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let ctx = req.context.clone();
    match req.workflow_name.as_str() {
        "ping_pong" => {
            let input: String = req.input()?;
            let out: String = core.block_on(ctx.checkpoint("result", || {
                if input == "ping" { "pong" } else { "ping" }.to_string()
            }))?;
            Ok(serde_json::to_vec(&out)?)
        }
        "steps" => {
            let n: u64 = req.input()?;
            let mut nanos = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                let _: u64 = core.block_on(ctx.checkpoint(&format!("step-{i}"), || i + 1))?;
                nanos.push(t.elapsed().as_nanos() as u64);
            }
            Ok(serde_json::to_vec(&nanos)?)
        }
        other => Err(format!("no workflow '{other}'").into()),
    }
}
