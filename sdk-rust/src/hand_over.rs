//! Runs handed over to code in another language: what the Python and Node
//! bindings build on. The core still drives everything (stream, replay,
//! ownership, retries); the binding only pulls runs from a channel, runs the
//! user's function in its own event loop and sends the outcome back through
//! the run's [`RunReply`].

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::client::{RaftoralClient, WorkflowRequest};
use crate::error::{ClientError, WorkflowError};

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
