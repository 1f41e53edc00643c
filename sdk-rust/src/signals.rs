//! Talking to running workflows from a client: events
//! ([`RaftoralClient::signal_workflow`]), signal-with-start, awakeables'
//! completions ([`RaftoralClient::resolve_awakeable`]), and the status
//! values the code sets ([`RaftoralClient::get_status`]).

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CompleteAwakeableRequest, Failure, GetStatusRequest, GetStatusResponse, SignalWithStartRequest,
    SignalWithStartResponse, SignalWorkflowRequest, SignalWorkflowResponse, StartWorkflowRequest,
    WorkflowInfo,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::RaftoralClient;
use crate::error::ClientError;
use crate::start_options::StartOptions;

/// An event to send to a workflow: its name, encoded payload and optional
/// idempotency key (for [`RaftoralClient::signal_with_start`]).
///
/// ```
/// let approval = raftoral_client::Signal::json("approval", &true)
///     .unwrap()
///     .with_key("approval-1");
/// assert_eq!(approval.name, "approval");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signal {
    /// The event's name (what the code waits for).
    pub name: String,
    /// Encoded payload (JSON for the SDKs' `wait_event`).
    pub payload: Bytes,
    /// A key delivered once per workflow; `None`: every send delivers.
    pub idempotency_key: Option<String>,
}

impl Signal {
    /// The event `name` with `payload` encoded as JSON.
    pub fn json<P: Serialize + ?Sized>(name: &str, payload: &P) -> Result<Self, ClientError> {
        Ok(Signal {
            name: name.to_owned(),
            payload: Bytes::from(serde_json::to_vec(payload)?),
            idempotency_key: None,
        })
    }

    /// The same event with an idempotency key.
    pub fn with_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }
}

impl RaftoralClient {
    /// Sends event `name` with `payload` (JSON) to a workflow; returns once
    /// it is committed in the workflow's durable inbox (or consumed by a
    /// waiting `wait_event`). With `idempotency_key`, a second event with
    /// the same key is not delivered again (`duplicate` in the answer).
    /// Errors: `NOT_FOUND` for an unknown workflow, `FAILED_PRECONDITION`
    /// for one that has ended, `RESOURCE_EXHAUSTED` for a full inbox.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// client
    ///     .signal_workflow("order-42", "approval", &true, Some("approval-1"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal_workflow<P: Serialize + ?Sized>(
        &self,
        workflow_id: &str,
        name: &str,
        payload: &P,
        idempotency_key: Option<&str>,
    ) -> Result<SignalWorkflowResponse, ClientError> {
        let payload = Bytes::from(serde_json::to_vec(payload)?);
        self.signal_workflow_raw(workflow_id, name, payload, idempotency_key)
            .await
    }

    /// [`signal_workflow`](Self::signal_workflow) with an encoded payload.
    pub async fn signal_workflow_raw(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<SignalWorkflowResponse, ClientError> {
        self.link()
            .signal_workflow(SignalWorkflowRequest {
                workflow_id: workflow_id.to_owned(),
                name: name.to_owned(),
                payload,
                idempotency_key: idempotency_key.unwrap_or_default().to_owned(),
            })
            .await
            .map_err(|s| ClientError::status("SignalWorkflow", s))
    }

    /// Starts the workflow `options.workflow_id` (required) unless it
    /// exists, then sends it `signal`, in one committed entry: concurrent
    /// calls start one workflow and deliver every event. A workflow that
    /// exists keeps its input; one that has ended is refused
    /// (`FAILED_PRECONDITION`). `started` in the answer says whether this
    /// call started it.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// use raftoral_client::{Signal, StartOptions};
    /// let options = StartOptions {
    ///     workflow_id: Some("cart-7".into()),
    ///     ..StartOptions::default()
    /// };
    /// let item = Signal::json("add_item", &"book")?;
    /// client.signal_with_start("cart", 1, &(), &options, item).await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal_with_start<I: Serialize + ?Sized>(
        &self,
        workflow_name: &str,
        version: u32,
        input: &I,
        options: &StartOptions,
        signal: Signal,
    ) -> Result<SignalWithStartResponse, ClientError> {
        let input = Bytes::from(serde_json::to_vec(input)?);
        self.signal_with_start_raw(workflow_name, version, input, options, signal)
            .await
    }

    /// [`signal_with_start`](Self::signal_with_start) with an encoded
    /// input.
    pub async fn signal_with_start_raw(
        &self,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        options: &StartOptions,
        signal: Signal,
    ) -> Result<SignalWithStartResponse, ClientError> {
        let Some(workflow_id) = options.workflow_id.clone().filter(|id| !id.is_empty()) else {
            return Err(ClientError::Usage(
                "signal_with_start needs StartOptions::workflow_id: the event needs a known \
                 target, and a retry must find the workflow it started"
                    .into(),
            ));
        };
        let (start_delay_ms, execution_timeout_ms) = options.millis()?;
        let request = SignalWithStartRequest {
            start: Some(StartWorkflowRequest {
                workflow_id,
                workflow_name: workflow_name.to_owned(),
                version,
                input,
                start_delay_ms,
                execution_timeout_ms,
            }),
            name: signal.name,
            payload: signal.payload,
            idempotency_key: signal.idempotency_key.unwrap_or_default(),
        };
        self.link()
            .signal_with_start(request)
            .await
            .map_err(|s| ClientError::status("SignalWithStart", s))
    }

    /// Resolves the awakeable `awakeable_id` (as the workflow's code got it
    /// from `ctx.awakeable()`) with `value` (JSON): the code's wait returns
    /// it. Once: a second completion fails with `ALREADY_EXISTS`. Any node
    /// takes it, also while the workflow's owner is down.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// client.resolve_awakeable("awk/3/order-42", &"receipt-9").await?;
    /// # Ok(()) }
    /// ```
    pub async fn resolve_awakeable<T: Serialize + ?Sized>(
        &self,
        awakeable_id: &str,
        value: &T,
    ) -> Result<WorkflowInfo, ClientError> {
        let payload = Bytes::from(serde_json::to_vec(value)?);
        self.complete_awakeable(awakeable_id, payload, None).await
    }

    /// Rejects the awakeable `awakeable_id`: the code's wait fails with a
    /// step failure of `error_type` and `message`. Once, as
    /// [`resolve_awakeable`](Self::resolve_awakeable).
    pub async fn reject_awakeable(
        &self,
        awakeable_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<WorkflowInfo, ClientError> {
        let failure = Failure {
            r#type: error_type.to_owned(),
            message: message.to_owned(),
            ..Failure::default()
        };
        self.complete_awakeable(awakeable_id, Bytes::new(), Some(failure))
            .await
    }

    /// Completes an awakeable with an encoded value, or rejects it with
    /// `failure` (see `CompleteAwakeable`).
    pub async fn complete_awakeable(
        &self,
        awakeable_id: &str,
        payload: Bytes,
        failure: Option<Failure>,
    ) -> Result<WorkflowInfo, ClientError> {
        self.link()
            .complete_awakeable(CompleteAwakeableRequest {
                awakeable_id: awakeable_id.to_owned(),
                payload,
                failure,
            })
            .await
            .map_err(|s| ClientError::status("CompleteAwakeable", s))
            .map(|r| r.workflow.unwrap_or_default())
    }

    /// The status values a workflow's code set (`ctx.set_status`): the
    /// latest value of each key in `keys` (every key when empty), read from
    /// the replicated history, so any node answers, also while the
    /// workflow's owner is down and after it ended.
    pub async fn get_status(
        &self,
        workflow_id: &str,
        keys: &[&str],
    ) -> Result<GetStatusResponse, ClientError> {
        self.link()
            .get_status(GetStatusRequest {
                workflow_id: workflow_id.to_owned(),
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            })
            .await
            .map_err(|s| ClientError::status("GetStatus", s))
    }

    /// The latest value of status `key`, decoded from JSON; `None` while
    /// the code has not set it.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// let stage: Option<String> = client.status_value("order-42", "stage").await?;
    /// # Ok(()) }
    /// ```
    pub async fn status_value<T: DeserializeOwned>(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<T>, ClientError> {
        let found = self.get_status(workflow_id, &[key]).await?;
        match found.values.into_iter().find(|v| v.key == key) {
            Some(v) => Ok(Some(serde_json::from_slice(&v.value)?)),
            None => Ok(None),
        }
    }
}
