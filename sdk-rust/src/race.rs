//! Durable operations started now and awaited later, and
//! [`WorkflowContext::first`], which races them: the winner is the one
//! whose resolution the history committed first, the same on every replica
//! and in every replay.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::core::Slot;
use crate::error::ClientError;

/// A durable operation (a sleep, a step or an event wait) that took its position and runs
/// on its own; await it with [`wait`](Self::wait), or race it with
/// [`WorkflowContext::first`].
#[must_use = "a durable operation is awaited with wait() or raced with first()"]
pub struct Durable<T> {
    pub(crate) seq: u64,
    pub(crate) task: tokio::task::JoinHandle<Result<T, ClientError>>,
}

impl<T> Durable<T> {
    /// The operation's position in the workflow's history.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits for the operation's result.
    pub async fn wait(self) -> Result<T, ClientError> {
        self.task
            .await
            .map_err(|e| ClientError::Usage(format!("a durable operation's task failed: {e}")))?
    }
}

/// Which of two raced operations won, with its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first operation given to [`WorkflowContext::first`].
    First(A),
    /// The second.
    Second(B),
}

impl WorkflowContext {
    /// Starts a durable sleep of `duration` named `name` now (its position
    /// is taken here), to await later or race with [`first`](Self::first).
    pub fn start_sleep(&self, name: &str, duration: Duration) -> Result<Durable<()>, ClientError> {
        let req = self.core.request_timer(&self.run, name, duration)?;
        let (core, run) = (self.core.clone(), self.run.clone());
        Ok(Durable {
            seq: req.seq(),
            task: tokio::spawn(async move { core.timer(&run, &req).await }),
        })
    }

    /// Starts a step now (its position is taken here; `compute` runs on
    /// the owner only), to await later or race with [`first`](Self::first).
    /// A step that loses a race still runs to its commit; only its result
    /// is dropped.
    pub fn start_checkpoint<T, Fut>(
        &self,
        name: &str,
        compute: Fut,
    ) -> Result<Durable<T>, ClientError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let req = self.core.request(&self.run, name)?;
        let (core, run) = (self.core.clone(), self.run.clone());
        let seq = req.seq();
        let task = tokio::spawn(async move {
            let bytes: Bytes = match core.slot(&run, &req).await? {
                Slot::Committed(value) => value,
                Slot::Compute(token) => {
                    let value = serde_json::to_vec(&compute.await)?;
                    core.commit(&run, token, value.into()).await?
                }
            };
            Ok(serde_json::from_slice(&bytes)?)
        });
        Ok(Durable { seq, task })
    }

    /// Starts a wait for the event `name` now (its position is taken
    /// here), to await later or race with [`first`](Self::first): the
    /// payload, or `None` when `timeout` passed first. A wait that loses a
    /// race is cancelled, and an event it took meanwhile goes back to the
    /// workflow for its next wait of that name.
    pub fn start_event<T>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Durable<Option<T>>, ClientError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let req = self.core.request_event(&self.run, name, timeout)?;
        let (core, run) = (self.core.clone(), self.run.clone());
        Ok(Durable {
            seq: req.seq(),
            task: tokio::spawn(async move {
                match core.event(&run, &req).await? {
                    Some(payload) => Ok(Some(serde_json::from_slice(&payload)?)),
                    None => Ok(None),
                }
            }),
        })
    }

    /// Starts waiting for the awakeable `req` (created with
    /// [`awakeable`](Self::awakeable)), to await later or race with
    /// [`first`](Self::first): its value, or [`ClientError::StepFailed`]
    /// when it was rejected. An awakeable that loses a race still takes
    /// its one completion; nothing waits for it any more.
    pub fn start_awakeable<T>(&self, req: &crate::AwakeableRequest) -> Durable<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let (core, run, req) = (self.core.clone(), self.run.clone(), req.clone());
        Durable {
            seq: req.seq(),
            task: tokio::spawn(async move {
                let value = core.awakeable(&run, &req).await?;
                Ok(serde_json::from_slice(&value)?)
            }),
        }
    }

    /// The lower-level race for language bindings: among the operations
    /// at positions `seqs` (started and not awaited), the index of the one
    /// resolved first in commit order; the others are abandoned (see
    /// [`first`](Self::first) and [`WorkerCore::first`](crate::WorkerCore::first)).
    pub async fn first_of(&self, seqs: &[u64]) -> Result<usize, ClientError> {
        self.core.first(&self.run, seqs).await
    }

    /// Races two durable operations: the result of the one resolved first
    /// in the workflow's history (commit order), the same on the owner, on
    /// every replica and in every replay. The loser is abandoned: a losing
    /// sleep is cancelled (its timer never fires), a losing event wait is
    /// cancelled (an event it took goes back to the workflow), a losing
    /// step runs on to its commit.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// use raftoral_client::Either;
    /// let approval = ctx.start_event::<bool>("approval", None)?;
    /// let reminder = ctx.start_sleep("reminder", Duration::from_secs(24 * 60 * 60))?;
    /// if let Either::Second(()) = ctx.first(approval, reminder).await? {
    ///     ctx.log().info("no answer in a day: reminding");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// use raftoral_client::Either;
    /// let deadline = ctx.start_sleep("deadline", Duration::from_secs(30 * 60))?;
    /// let payment = ctx.start_checkpoint("payment", async { "paid".to_string() })?;
    /// match ctx.first(deadline, payment).await? {
    ///     Either::First(()) => ctx.log().info("gave up on the payment"),
    ///     Either::Second(receipt) => ctx.log().info(format!("paid: {receipt}")),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn first<A, B>(
        &self,
        a: Durable<A>,
        b: Durable<B>,
    ) -> Result<Either<A, B>, ClientError> {
        let winner = self.core.first(&self.run, &[a.seq, b.seq]).await?;
        Ok(if winner == 0 {
            Either::First(a.wait().await?)
        } else {
            Either::Second(b.wait().await?)
        })
    }
}
