//! What a workflow exchanges with the outside while it runs (`impl
//! WorkflowContext`): events it waits for, one by one or as a stream;
//! awakeables it hands out; the status values it publishes. Each takes a
//! position like a step (see the SDK core's `core_events.rs` and
//! `core_status.rs`).

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::error::ClientError;

impl WorkflowContext {
    /// Waits durably for the event `name` sent to this workflow
    /// ([`RaftoralClient::signal_workflow`](crate::RaftoralClient::signal_workflow)):
    /// its payload (JSON), or `None` when `timeout` passed first. An event
    /// sent before the wait waits in the workflow's inbox; events of a
    /// name are taken first in, first out. Which of the event and the
    /// timeout comes first is decided by the log, the same in every replay;
    /// an event that comes after the timeout stays for the next wait. Takes
    /// a position like a step.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// let approved: Option<bool> = ctx
    ///     .wait_event("approval", Some(Duration::from_secs(24 * 60 * 60)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_event<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ClientError> {
        let req = self.core.request_event(&self.run, name, timeout)?;
        match self.core.event(&self.run, &req).await? {
            Some(payload) => Ok(Some(serde_json::from_slice(&payload)?)),
            None => Ok(None),
        }
    }

    /// Sets this workflow's readable status `key` to `value` (JSON, at most
    /// 64 KiB): committed like a step, read by any client from any node
    /// with [`RaftoralClient::get_status`](crate::RaftoralClient::get_status),
    /// also while this workflow's node is down and after it ended. Takes a
    /// position like a step; a replay does not set it again.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// ctx.set_status("stage", &"charged").await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_status<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), ClientError> {
        let value = Bytes::from(serde_json::to_vec(value)?);
        self.set_status_raw(key, value).await
    }

    /// For bindings: [`set_status`](Self::set_status) with an encoded
    /// value.
    pub async fn set_status_raw(&self, key: &str, value: Bytes) -> Result<(), ClientError> {
        self.core.set_status(&self.run, key, value).await
    }

    /// For bindings: the synchronous half of a status (checks the value's
    /// size and takes the position now); commit with
    /// [`status`](Self::status).
    pub fn request_status(
        &self,
        key: &str,
        value: Bytes,
    ) -> Result<crate::StatusRequest, ClientError> {
        self.core.request_status(&self.run, key, value)
    }

    /// For bindings: commits the status of `req` (see
    /// [`WorkerCore::status`](crate::WorkerCore::status)).
    pub async fn status(&self, req: &crate::StatusRequest) -> Result<(), ClientError> {
        self.core.status(&self.run, req).await
    }

    /// Creates an awakeable: a durable future that anyone holding its id
    /// completes once, through any node, with
    /// [`RaftoralClient::resolve_awakeable`](crate::RaftoralClient::resolve_awakeable)
    /// or `reject_awakeable` (a webhook's callback, say). Takes a position
    /// like a step; hand [`id`](crate::AwakeableRequest::id) out (in a
    /// step, or with [`set_status`](Self::set_status)), then wait with
    /// [`wait_awakeable`](Self::wait_awakeable).
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// let paid = ctx.awakeable()?;
    /// ctx.set_status("payment_callback", paid.id()).await?;
    /// let receipt: String = ctx.wait_awakeable(&paid).await?;
    /// # Ok(()) }
    /// ```
    pub fn awakeable(&self) -> Result<crate::AwakeableRequest, ClientError> {
        self.core.request_awakeable(&self.run)
    }

    /// Waits for the awakeable `req` to be completed: its value (JSON), or
    /// [`ClientError::StepFailed`] with the failure it was rejected with.
    pub async fn wait_awakeable<T: DeserializeOwned>(
        &self,
        req: &crate::AwakeableRequest,
    ) -> Result<T, ClientError> {
        let value = self.core.awakeable(&self.run, req).await?;
        Ok(serde_json::from_slice(&value)?)
    }

    /// For bindings: the encoded value of the awakeable `req` (see
    /// [`WorkerCore::awakeable`](crate::WorkerCore::awakeable)).
    pub async fn awakeable_value(
        &self,
        req: &crate::AwakeableRequest,
    ) -> Result<Bytes, ClientError> {
        self.core.awakeable(&self.run, req).await
    }

    /// For bindings: the synchronous half of a wait for an event (takes
    /// its position now); wait with [`event`](Self::event).
    pub fn request_event(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<crate::EventRequest, ClientError> {
        self.core.request_event(&self.run, name, timeout)
    }

    /// For bindings: the encoded payload of the event of `req`, or `None`
    /// on timeout (see [`WorkerCore::event`](crate::WorkerCore::event)).
    pub async fn event(&self, req: &crate::EventRequest) -> Result<Option<Bytes>, ClientError> {
        self.core.event(&self.run, req).await
    }

    /// The events named `name` as a stream, first in first out: each item
    /// is one durable wait ([`wait_event`](Self::wait_event)), taken when
    /// the stream is polled for it, so the history is the same as waits
    /// one after another. With `timeout`, the stream ends when an item's
    /// wait times out (the late event stays for the next wait); without
    /// one it never ends: stop taking items (`take`, a `break`) when the
    /// code has what it needs. An error ends it after that item.
    ///
    /// ```no_run
    /// # async fn f(ctx: raftoral_client::WorkflowContext) -> Result<(), raftoral_client::ClientError> {
    /// use futures::StreamExt;
    /// let items: Vec<String> = ctx
    ///     .events::<String>("item", None)
    ///     .take(3)
    ///     .collect::<Vec<_>>()
    ///     .await
    ///     .into_iter()
    ///     .collect::<Result<_, _>>()?;
    /// # Ok(()) }
    /// ```
    pub fn events<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> impl Stream<Item = Result<T, ClientError>> + '_ {
        let name = name.to_owned();
        futures::stream::unfold(Some(name), move |name| async move {
            let name = name?;
            match self.wait_event::<T>(&name, timeout).await {
                Ok(Some(item)) => Some((Ok(item), Some(name))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}
