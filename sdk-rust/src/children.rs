//! Workflows that start workflows: [`WorkflowContext::start_child`] and
//! [`WorkflowContext::call_child`]. The child's start is committed in the
//! same entry as the parent's record of it; its result or failure reaches
//! the parent through the log.

use bytes::Bytes;
use raftoral_proto::sidecar::v1::ParentClosePolicy;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::core::ChildRequest;
use crate::error::ClientError;
use crate::race::Durable;

/// What happens to a child workflow still running when its parent ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParentClose {
    /// Cancel it (the default): a child nobody waits for should stop; its
    /// code gets the cancel request and may clean up for 30 s.
    #[default]
    Cancel,
    /// Let it run to its end on its own.
    Abandon,
    /// End it at once, cancelled, without cleanup.
    Terminate,
}

impl ParentClose {
    fn policy(self) -> ParentClosePolicy {
        match self {
            ParentClose::Cancel => ParentClosePolicy::Cancel,
            ParentClose::Abandon => ParentClosePolicy::Abandon,
            ParentClose::Terminate => ParentClosePolicy::Terminate,
        }
    }
}

/// How a child workflow is started.
#[derive(Debug, Clone, Default)]
pub struct ChildOptions {
    /// The child's id; none: `{parent_id}/{position}`, the same in every
    /// replay.
    pub id: Option<String>,
    /// The child's workflow version (0 means 1).
    pub version: u32,
    /// What happens to the child if the parent ends first.
    pub parent_close: ParentClose,
}

/// A started child workflow: its id, and its result to await (or race
/// with [`WorkflowContext::first`] through [`into_durable`](Self::into_durable)).
pub struct ChildHandle<T> {
    id: String,
    result: Durable<T>,
}

impl<T> ChildHandle<T> {
    /// The child's workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the child's result: its value, or
    /// [`ClientError::StepFailed`] with its failure (type
    /// `raftoral.ChildCancelled` for a cancelled child,
    /// `raftoral.WorkflowTimeout` for a timed-out one).
    pub async fn result(self) -> Result<T, ClientError> {
        self.result.wait().await
    }

    /// The result as a durable operation, to race.
    pub fn into_durable(self) -> Durable<T> {
        self.result
    }
}

impl WorkflowContext {
    /// Starts the child workflow `workflow` with `input` and returns once
    /// its start is committed (with this workflow's record of it, in one
    /// entry). A replay starts nothing: the child of this position exists.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use raftoral_client::ChildOptions;
    /// let mut shipments = Vec::new();
    /// for parcel in ["p1", "p2"] {
    ///     shipments.push(ctx.start_child::<_, String>("ship", &parcel, ChildOptions::default()).await?);
    /// }
    /// for s in shipments {
    ///     let tracking = s.result().await?;
    ///     ctx.log().info(format!("shipped: {tracking}"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn start_child<I, T>(
        &self,
        workflow: &str,
        input: &I,
        options: ChildOptions,
    ) -> Result<ChildHandle<T>, ClientError>
    where
        I: Serialize + ?Sized,
        T: DeserializeOwned + Send + 'static,
    {
        let input = Bytes::from(serde_json::to_vec(input)?);
        let req = self.request_child(workflow, input, &options)?;
        let (core, run, r) = (self.core.clone(), self.run.clone(), req.clone());
        let task = tokio::spawn(async move {
            let value = core.child(&run, &r).await?;
            Ok(serde_json::from_slice(&value)?)
        });
        self.core.child_started(&self.run, &req).await?;
        Ok(ChildHandle {
            id: req.id().to_owned(),
            result: Durable {
                seq: req.seq(),
                task,
            },
        })
    }

    /// Starts the child workflow `workflow` and waits for its result.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let receipt: String = ctx
    ///     .call_child("charge", &42, raftoral_client::ChildOptions::default())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call_child<I, T>(
        &self,
        workflow: &str,
        input: &I,
        options: ChildOptions,
    ) -> Result<T, ClientError>
    where
        I: Serialize + ?Sized,
        T: DeserializeOwned + Send + 'static,
    {
        let input = Bytes::from(serde_json::to_vec(input)?);
        let req = self.request_child(workflow, input, &options)?;
        let value = self.core.child(&self.run, &req).await?;
        Ok(serde_json::from_slice(&value)?)
    }

    /// For bindings: waits until the child of `req` is started (see
    /// [`WorkerCore::child_started`](crate::WorkerCore::child_started));
    /// [`child`](Self::child) must run meanwhile.
    pub async fn child_started(&self, req: &ChildRequest) -> Result<(), ClientError> {
        self.core.child_started(&self.run, req).await
    }

    /// For bindings: starts the child of `req` and waits for its encoded
    /// result (see [`WorkerCore::child`](crate::WorkerCore::child)).
    pub async fn child(&self, req: &ChildRequest) -> Result<Bytes, ClientError> {
        self.core.child(&self.run, req).await
    }

    /// For bindings: takes the position of a child workflow with the
    /// encoded `input` (see [`WorkerCore::request_child`](crate::WorkerCore::request_child));
    /// then [`WorkerCore::child`](crate::WorkerCore::child) starts it and
    /// waits for its end.
    pub fn request_child(
        &self,
        workflow: &str,
        input: Bytes,
        options: &ChildOptions,
    ) -> Result<ChildRequest, ClientError> {
        self.core.request_child(
            &self.run,
            workflow,
            options.version,
            input,
            options.id.clone(),
            options.parent_close.policy(),
        )
    }
}
