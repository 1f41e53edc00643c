//! [`WorkflowContext`]: what a workflow function uses to checkpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{ComputeToken, RunHandle, Slot, SlotRequest, TimerRequest, WorkerCore};
use crate::determinism::NOW_STEP;
use crate::error::{ClientError, StepError};
use crate::retry::RetryPolicy;

/// The context of one workflow run.
///
/// Every checkpoint is committed through Raft before the function goes on.
/// On the owner, `compute` runs once per successful commit; on replicas and on
/// replay the committed value is returned without running it.
#[derive(Clone)]
pub struct WorkflowContext {
    pub(crate) core: Arc<WorkerCore>,
    pub(crate) run: RunHandle,
    /// The worker's client: what steps that reach other workflows call
    /// (`outbound.rs`).
    pub(crate) client: crate::RaftoralClient,
}

impl WorkflowContext {
    pub(crate) fn new(
        core: Arc<WorkerCore>,
        run: RunHandle,
        client: crate::RaftoralClient,
    ) -> Self {
        Self { core, run, client }
    }

    /// Id of the workflow instance.
    pub fn workflow_id(&self) -> &str {
        &self.run.workflow_id
    }

    /// Workflow type.
    pub fn workflow_name(&self) -> &str {
        &self.run.workflow_name
    }

    /// Workflow version.
    pub fn version(&self) -> u32 {
        self.run.version
    }

    /// Durable step: `compute` runs on the owner only, its value (JSON) is
    /// committed, and every replica returns the committed value.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let answer: String = ctx.checkpoint("answer", || "pong".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn checkpoint<T, F>(&self, name: &str, compute: F) -> Result<T, ClientError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.checkpoint_compute(name, async move { compute() })
            .await
    }

    /// Like [`checkpoint`](Self::checkpoint) for an async computation; the
    /// future is polled only on the owner.
    pub async fn checkpoint_compute<T, Fut>(
        &self,
        name: &str,
        compute: Fut,
    ) -> Result<T, ClientError>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = T>,
    {
        let bytes = self
            .checkpoint_raw(name, async move {
                let value = compute.await;
                serde_json::to_vec(&value)
                    .map(Bytes::from)
                    .map_err(ClientError::from)
            })
            .await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The lower-level form the language bindings use, where the value is
    /// computed outside Rust: the slot for the next checkpoint, named
    /// `name`. [`Slot::Committed`] carries the value to continue with;
    /// [`Slot::Compute`] means this replica owns the workflow and must
    /// compute the value and hand it to [`commit`](Self::commit).
    pub async fn checkpoint_slot(&self, name: &str) -> Result<Slot, ClientError> {
        self.core.checkpoint_slot(&self.run, name).await
    }

    /// Takes the next step position for a step named `name`, at once (so
    /// steps started side by side get positions in call order); then
    /// [`try_slot`](Self::try_slot) or [`slot`](Self::slot). For bindings.
    pub fn request(&self, name: &str) -> Result<SlotRequest, ClientError> {
        self.core.request(&self.run, name)
    }

    /// The slot of `req` when it is decided now; `None` when it must be
    /// awaited with [`slot`](Self::slot).
    pub fn try_slot(&self, req: &SlotRequest) -> Option<Result<Slot, ClientError>> {
        self.core.try_slot(&self.run, req)
    }

    /// The slot of `req`, waiting for it.
    pub async fn slot(&self, req: &SlotRequest) -> Result<Slot, ClientError> {
        self.core.slot(&self.run, req).await
    }

    /// Proposes the value computed for `token` (from
    /// [`checkpoint_slot`](Self::checkpoint_slot)) and waits for its commit;
    /// returns the committed value.
    pub async fn commit(&self, token: ComputeToken, value: Bytes) -> Result<Bytes, ClientError> {
        self.core.commit(&self.run, token, value).await
    }

    /// A step that may fail: `compute` runs on the owner, and an `Err` is
    /// retried with the default [`RetryPolicy`] (1 s, ×2, up to 60 s, 10
    /// attempts). Once it fails for good (non-retryable, or the attempts
    /// are spent) the failure is committed and returned as
    /// [`ClientError::StepFailed`], here and on every replica and replay:
    /// catch it to compensate.
    ///
    /// ```no_run
    /// # use raftoral_client::{ClientError, StepError, WorkflowContext};
    /// # async fn f(ctx: WorkflowContext) -> Result<(), ClientError> {
    /// let charged = ctx
    ///     .try_checkpoint("charge", || -> Result<u64, StepError> {
    ///         Err(StepError::new("CardDeclined", "declined").non_retryable())
    ///     })
    ///     .await;
    /// if let Err(ClientError::StepFailed(_)) = charged {
    ///     ctx.checkpoint("refund", || true).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_checkpoint<T, E, F>(
        &self,
        name: &str,
        mut compute: F,
    ) -> Result<T, ClientError>
    where
        T: Serialize + DeserializeOwned,
        E: Into<StepError>,
        F: FnMut() -> Result<T, E>,
    {
        self.try_checkpoint_compute(name, &RetryPolicy::default(), |_| {
            std::future::ready(compute())
        })
        .await
    }

    /// [`try_checkpoint`](Self::try_checkpoint) for async code, with a
    /// policy: `compute` gets the attempt number (1-based, counted across
    /// owners) and runs once per attempt on the owner only.
    pub async fn try_checkpoint_compute<T, E, F, Fut>(
        &self,
        name: &str,
        policy: &RetryPolicy,
        mut compute: F,
    ) -> Result<T, ClientError>
    where
        T: Serialize + DeserializeOwned,
        E: Into<StepError>,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        policy.validate()?;
        let req = self.core.request(&self.run, name)?;
        let mut slot = self.core.first_slot(&self.run, &req).await?;
        loop {
            let token = match slot {
                Slot::Committed(bytes) => return Ok(serde_json::from_slice(&bytes)?),
                Slot::Compute(token) => token,
            };
            let attempt = token.attempt();
            let run_attempt = async {
                match policy.attempt_timeout {
                    None => compute(attempt).await.map_err(|e| e.into().into_failure()),
                    // Dropping the attempt's future stops it.
                    Some(limit) => match tokio::time::timeout(limit, compute(attempt)).await {
                        Ok(done) => done.map_err(|e| e.into().into_failure()),
                        Err(_) => Err(policy.timeout_failure(attempt)),
                    },
                }
            };
            let outcome = match self.attempt(&req, &token, run_attempt).await {
                Some(outcome) => outcome,
                // Stopped: the cancellation was delivered here, or the
                // position resolved elsewhere.
                None => {
                    slot = self.core.slot(&self.run, &req).await?;
                    continue;
                }
            };
            match outcome {
                Ok(value) => {
                    let bytes = Bytes::from(serde_json::to_vec(&value)?);
                    let committed = self.core.commit(&self.run, token, bytes).await?;
                    return Ok(serde_json::from_slice(&committed)?);
                }
                Err(failure) => {
                    slot = self
                        .core
                        .fail(&self.run, token, failure, policy, jitter())
                        .await?;
                }
            }
        }
    }

    /// The failure-aware form of [`commit`](Self::commit) for bindings:
    /// the step's code raised `failure` in the attempt of `token`; see
    /// [`WorkerCore::fail`].
    pub async fn fail(
        &self,
        token: ComputeToken,
        failure: raftoral_proto::sidecar::v1::Failure,
        policy: &RetryPolicy,
    ) -> Result<Slot, ClientError> {
        self.core
            .fail(&self.run, token, failure, policy, jitter())
            .await
    }

    /// Resolves with the reason once the workflow's cancel is requested
    /// (or it is cancelled for good); `None` when the run ends first.
    ///
    /// A cancel request reaches the code as [`ClientError::Cancelled`] at
    /// the step or sleep it awaits (a running step is stopped), or at its
    /// next one; catch it to run compensation steps, which run as usual,
    /// then return the error so the workflow ends CANCELLED:
    ///
    /// ```no_run
    /// # use raftoral_client::{ClientError, WorkflowContext};
    /// # async fn f(ctx: WorkflowContext) -> Result<(), ClientError> {
    /// match ctx.checkpoint_compute("charge", async { 42u64 }).await {
    ///     Err(cancel @ ClientError::Cancelled { .. }) => {
    ///         ctx.checkpoint("refund", || true).await?;
    ///         Err(cancel)
    ///     }
    ///     other => other.map(|_| ()),
    /// }
    /// # }
    /// ```
    pub async fn cancelled(&self) -> Option<String> {
        self.core.cancelled(&self.run).await
    }

    /// For bindings: the run's interruptions so far (see
    /// [`WorkerCore::interrupted`]).
    pub fn interrupts(&self) -> u64 {
        self.core.interrupts(&self.run)
    }

    /// For bindings: resolves once the run has more than `after`
    /// interruptions (stop the running step attempts and ask for their
    /// slots again), with the reason and the new count; `None` when the
    /// run ends first. See [`WorkerCore::interrupted`].
    pub async fn interrupted(&self, after: u64) -> Option<(String, u64)> {
        self.core.interrupted(&self.run, after).await
    }

    /// The current time, recorded: on the owner the clock is read and
    /// committed as a step (named [`NOW_STEP`]), so replicas and every
    /// replay get the same instant. It costs a step; read it once and keep
    /// it rather than in a loop.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let started = ctx.now().await?;
    /// # Ok(()) }
    /// ```
    pub async fn now(&self) -> Result<SystemTime, ClientError> {
        let ms: u64 = self
            .checkpoint(NOW_STEP, || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            })
            .await?;
        Ok(UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Sleeps durably for `duration`: the timer is committed with its
    /// deadline and fired by the cluster, so the wait survives any owner
    /// or leader failover and a replay of a finished sleep returns at
    /// once. Takes a position like a step (named `"sleep"`; see
    /// [`sleep_named`](Self::sleep_named)). At most [`MAX_TIMER`](crate::MAX_TIMER).
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// ctx.sleep(Duration::from_secs(24 * 60 * 60)).await?;
    /// ctx.checkpoint("reminder", || "sent".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn sleep(&self, duration: Duration) -> Result<(), ClientError> {
        self.sleep_named("sleep", duration).await
    }

    /// [`sleep`](Self::sleep) with the timer's own name, checked on replay
    /// like a step's (a changed duration is not non-determinism; a step
    /// where the history has a timer is).
    pub async fn sleep_named(&self, name: &str, duration: Duration) -> Result<(), ClientError> {
        self.core.sleep(&self.run, name, duration).await
    }

    /// The synchronous half of a sleep, for language bindings: takes the
    /// timer's position now (so sleeps and steps started side by side take
    /// positions in call order); wait with [`timer`](Self::timer).
    pub fn request_timer(
        &self,
        name: &str,
        duration: Duration,
    ) -> Result<TimerRequest, ClientError> {
        self.core.request_timer(&self.run, name, duration)
    }

    /// Waits for the timer of `req` to fire (see [`WorkerCore::timer`]).
    pub async fn timer(&self, req: &TimerRequest) -> Result<(), ClientError> {
        self.core.timer(&self.run, req).await
    }

    /// Sleeps durably until `at`: the duration is taken on the owner when
    /// the timer starts (0 when `at` has passed) and committed, so a
    /// replay waits for the same deadline whatever its clock says.
    pub async fn sleep_until(&self, at: SystemTime) -> Result<(), ClientError> {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        self.sleep_named("sleep", left).await
    }

    /// A float in `[0, 1)`, the same on every replica and in every replay:
    /// drawn from a generator seeded per workflow (no step is committed).
    /// Not for secrets.
    pub fn random(&self) -> Result<f64, ClientError> {
        self.core.random(&self.run)
    }

    /// A version 4 UUID from the same generator as
    /// [`random`](Self::random): stable across replays, so it can serve as
    /// an idempotency key for a call a step makes.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let key = ctx.uuid()?;
    /// ctx.checkpoint("charge", || format!("charged with key {key}")).await?;
    /// # Ok(()) }
    /// ```
    pub fn uuid(&self) -> Result<String, ClientError> {
        self.core.uuid(&self.run)
    }

    /// True while the code repeats what already happened (a replay, or
    /// this replica does not own the workflow).
    pub fn is_replaying(&self) -> bool {
        self.core.is_replaying(&self.run)
    }

    /// The position (0-based) the code's next step takes: the step a log
    /// line is written before.
    pub fn next_position(&self) -> u64 {
        self.core.next_position(&self.run)
    }

    /// A logger that writes each line once: on the owner, when the code
    /// is past its replay; tagged with the workflow id and the position of
    /// the next step.
    ///
    /// ```no_run
    /// # fn f(ctx: raftoral_client::WorkflowContext) {
    /// ctx.log().info("charging the card");
    /// # }
    /// ```
    pub fn log(&self) -> WorkflowLog<'_> {
        WorkflowLog { ctx: self }
    }

    /// The codec-free form: `compute` yields encoded bytes. Use it to plug in
    /// another encoding than JSON.
    pub async fn checkpoint_raw<Fut>(&self, name: &str, compute: Fut) -> Result<Bytes, ClientError>
    where
        Fut: Future<Output = Result<Bytes, ClientError>>,
    {
        let req = self.core.request(&self.run, name)?;
        let mut slot = self.core.first_slot(&self.run, &req).await?;
        let mut compute = std::pin::pin!(compute);
        loop {
            let token = match slot {
                Slot::Committed(value) => return Ok(value),
                Slot::Compute(token) => token,
            };
            match self.attempt(&req, &token, compute.as_mut()).await {
                Some(value) => return self.core.commit(&self.run, token, value?).await,
                // The core decides what the position gets (a computation
                // given back goes on with the same future).
                None => slot = self.core.slot(&self.run, &req).await?,
            }
        }
    }

    /// Runs a step attempt until it ends (`Some`), or until it must stop
    /// (`None`): a cancel request delivered at its position, the position
    /// resolved by another owner, the run's end. A cancellation reaches
    /// the code at once this way, even while a step hangs.
    async fn attempt<T>(
        &self,
        req: &SlotRequest,
        token: &ComputeToken,
        attempt: impl Future<Output = T>,
    ) -> Option<T> {
        debug_assert_eq!(req.seq(), token.seq());
        tokio::select! {
            biased;
            outcome = attempt => Some(outcome),
            () = self.core.interrupted_at(&self.run, token.seq()) => None,
        }
    }
}

/// The replay-aware logger of a run ([`WorkflowContext::log`]): `tracing`
/// events with target `raftoral::workflow` and the fields `workflow_id`
/// and `step`, none while replaying.
pub struct WorkflowLog<'a> {
    ctx: &'a WorkflowContext,
}

impl WorkflowLog<'_> {
    /// Writes `message` at `level`, unless replaying.
    pub fn event(&self, level: tracing::Level, message: impl std::fmt::Display) {
        let ctx = self.ctx;
        if ctx.is_replaying() {
            return;
        }
        let (workflow_id, step) = (ctx.workflow_id(), ctx.next_position());
        // `tracing`'s macros take the level as a constant.
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "raftoral::workflow", workflow_id, step, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "raftoral::workflow", workflow_id, step, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "raftoral::workflow", workflow_id, step, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "raftoral::workflow", workflow_id, step, "{message}")
            }
            _ => tracing::trace!(target: "raftoral::workflow", workflow_id, step, "{message}"),
        }
    }

    /// An info line.
    pub fn info(&self, message: impl std::fmt::Display) {
        self.event(tracing::Level::INFO, message);
    }

    /// A warning.
    pub fn warn(&self, message: impl std::fmt::Display) {
        self.event(tracing::Level::WARN, message);
    }

    /// An error line.
    pub fn error(&self, message: impl std::fmt::Display) {
        self.event(tracing::Level::ERROR, message);
    }

    /// A debug line.
    pub fn debug(&self, message: impl std::fmt::Display) {
        self.event(tracing::Level::DEBUG, message);
    }
}

/// Checkpoints a value: `checkpoint!(ctx, "name", expr)` computes `expr` on
/// the owner only and evaluates to the committed value; errors return early
/// with `?`.
///
/// ```no_run
/// # use raftoral_client::{checkpoint, WorkflowContext, WorkflowError};
/// # async fn f(ctx: WorkflowContext) -> Result<(), WorkflowError> {
/// let n: u64 = checkpoint!(ctx, "roll", 4);
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! checkpoint {
    ($ctx:expr, $name:expr, $value:expr) => {
        $ctx.checkpoint($name, || $value).await?
    };
}

/// Checkpoints the output of an async block:
/// `checkpoint_compute!(ctx, "name", async { ... })`.
///
/// ```no_run
/// # use raftoral_client::{checkpoint_compute, WorkflowContext, WorkflowError};
/// # async fn f(ctx: WorkflowContext) -> Result<(), WorkflowError> {
/// let body: String = checkpoint_compute!(ctx, "fetch", async { "data".to_string() });
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! checkpoint_compute {
    ($ctx:expr, $name:expr, $future:expr) => {
        $ctx.checkpoint_compute($name, $future).await?
    };
}

/// A number in `[0, 1)` for a retry delay's jitter: not replayed (the
/// delay drawn is committed), so any source will do.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
