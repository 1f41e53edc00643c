//! Runs handed over to code in another language: what the Python and Node
//! bindings build on. The core still drives everything (stream, replay,
//! ownership, retries); the binding only pulls runs from a channel, runs the
//! user's function in its own event loop and sends the outcome back through
//! the run's [`RunReply`].

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::client::{RaftoralClient, WorkflowRequest};
use crate::error::{ClientError, WorkflowError};

/// The runtime a language binding drives this core on: one tokio worker
/// thread (named `raftoral-core`), I/O and timers enabled.
///
/// The stream (heartbeats included) runs there, never on the language's
/// event loop, so a step that blocks that loop does not stall it. One
/// worker, because a checkpoint then crosses from the language thread to
/// it and back, and no further: with more, tokio wakes an idle worker to
/// steal each task handed in from outside (a commit) and each task a
/// commit's answer wakes, and on a 2-vCPU machine those wake-ups cost the
/// Python and Node bindings 0.07-0.11 ms per checkpoint
/// (docs/PERFORMANCE.md). Do not run an engine (its fsyncs) on it: see
/// `EmbeddedNode::start_on_engine_runtime` in the `raftoral-embedded` crate.
///
/// ```
/// let runtime = raftoral_client::binding_runtime().build().unwrap();
/// assert_eq!(runtime.metrics().num_workers(), 1);
/// runtime.block_on(async { /* connect, register, hand over runs */ });
/// ```
pub fn binding_runtime() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(1)
        .thread_name("raftoral-core")
        .enable_all();
    builder
}

/// The outcome of one run: the encoded result, or why it did not complete.
pub type RunOutcome = Result<Vec<u8>, WorkflowError>;

/// Where a handed-over run reports its outcome (once).
///
/// Dropped without a reply (the binding's run object was collected, or its
/// task died), the run counts as interrupted, not finished: the workflow
/// resumes elsewhere or after a restart, exactly as when an app dies.
#[derive(Debug)]
pub struct RunReply(oneshot::Sender<RunOutcome>);

impl RunReply {
    /// Reports the run's outcome to the core.
    pub fn send(self, outcome: RunOutcome) {
        // The core stopped waiting (shutdown): nothing to report to.
        let _ = self.0.send(outcome);
    }
}

impl RaftoralClient {
    /// Runs workflows like [`handle_workflows`](Self::handle_workflows), but
    /// hands each run over instead of running a Rust function: `wrap` turns
    /// the request and its reply into the binding's run object, which is
    /// sent to `runs` for the binding's event loop to pull. Returns when the
    /// client shuts down; a closed `runs` refuses new runs with
    /// [`ClientError::Shutdown`].
    ///
    /// ```no_run
    /// # async fn demo(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    /// tokio::spawn(async move {
    ///     while let Some((request, reply)) = rx.recv().await {
    ///         let request: raftoral_client::WorkflowRequest = request;
    ///         let reply: raftoral_client::RunReply = reply;
    ///         // Run the user's function elsewhere, then:
    ///         reply.send(Ok(request.input.to_vec()));
    ///     }
    /// });
    /// client.hand_over_workflows(tx, |request, reply| (request, reply)).await
    /// # }
    /// ```
    pub fn hand_over_workflows<R, W>(
        &self,
        runs: mpsc::Sender<R>,
        wrap: W,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static
    where
        R: Send + 'static,
        W: Fn(WorkflowRequest, RunReply) -> R + Send + Sync + 'static,
    {
        let client = self.clone();
        let wrap = std::sync::Arc::new(wrap);
        async move {
            client
                .handle_workflows(move |request| {
                    let (runs, wrap) = (runs.clone(), wrap.clone());
                    async move {
                        let (reply, outcome) = oneshot::channel();
                        if runs.send(wrap(request, RunReply(reply))).await.is_err() {
                            return Err(WorkflowError::Client(ClientError::Shutdown));
                        }
                        outcome
                            .await
                            .unwrap_or(Err(WorkflowError::Client(ClientError::Shutdown)))
                    }
                })
                .await
        }
    }
}
