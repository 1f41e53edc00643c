//! [`RaftoralClient`]: the connection to a sidecar, as a worker (register and
//! run workflows) and as a client (start, wait, cancel).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::sidecar::v1::{
    CancelWorkflowRequest, GetWorkflowHistoryRequest, GetWorkflowRequest, HistoryEntry,
    ListWorkflowsRequest, ListWorkflowsResponse, RegisterWorkflowRequest, StartWorkflowRequest,
    WorkflowInfo, workflow_stream_request::Message as AppMsg,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::context::WorkflowContext;
use crate::core::{RunHandle, WorkerCore};
use crate::error::{ClientError, WorkflowError};
use crate::handle::WorkflowHandle;
use crate::link::{GrpcLink, SidecarLink};
use crate::start_options::StartOptions;
use crate::stream::{StreamOptions, StreamShared, run_stream};

/// Longest wait for a registration to be acknowledged.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a start is retried while the sidecar answers UNAVAILABLE (no
/// leader yet, a leader change) before the error reaches the caller.
const START_RETRY_FOR: Duration = Duration::from_secs(10);
/// Longest pause between connection attempts of
/// [`RaftoralClient::connect_retrying`].
const CONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// First pause between start attempts; doubled up to a second.
const START_RETRY_MIN: Duration = Duration::from_millis(50);

/// A workflow execution handed to the handler of
/// [`RaftoralClient::handle_workflows`].
pub struct WorkflowRequest {
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow type.
    pub workflow_name: String,
    /// Workflow version.
    pub version: u32,
    /// Encoded input (JSON when started by an SDK).
    pub input: Bytes,
    /// Checkpoint through this.
    pub context: WorkflowContext,
}

impl WorkflowRequest {
    /// Decodes the JSON input.
    pub fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        Ok(serde_json::from_slice(&self.input)?)
    }
}

/// Connection to a Raftoral sidecar.
///
/// ```no_run
/// use raftoral_client::{RaftoralClient, WorkflowError, checkpoint};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = RaftoralClient::connect("http://127.0.0.1:9001").await?;
/// client.register_workflow("ping_pong", 1).await?;
/// let worker = client.clone();
/// tokio::spawn(async move {
///     worker.handle_workflows(|req| async move {
///         let input: String = req.input()?;
///         let ctx = req.context;
///         let out: String = checkpoint!(ctx, "result", if input == "ping" { "pong" } else { "ping" }.to_string());
///         Ok::<_, WorkflowError>(serde_json::to_vec(&out)?)
///     }).await
/// });
/// let answer: String = client.start_workflow("ping_pong", 1, &"ping").await?.result().await?;
/// assert_eq!(answer, "pong");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RaftoralClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    link: Arc<dyn SidecarLink>,
    options: StreamOptions,
    shared: Arc<StreamShared>,
    /// Runs handed to `handle_workflows`. Unbounded: the runs are held by
    /// the core anyway, and a bound would stop the stream reader before
    /// the registration's acknowledgement when more running workflows are
    /// re-sent than it holds and `handle_workflows` has not started yet
    /// (registering comes first), so `register_workflow` would time out.
    executes_tx: mpsc::UnboundedSender<RunHandle>,
    executes_rx: Mutex<Option<mpsc::UnboundedReceiver<RunHandle>>>,
    stream_task: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
    /// The shutdown grace in force (`options.shutdown_grace` unless
    /// [`shutdown_within`](RaftoralClient::shutdown_within) set another).
    grace: Mutex<Duration>,
}

impl RaftoralClient {
    /// Connects to the sidecar at `endpoint` (e.g. `http://127.0.0.1:9001`).
    /// Fails fast when nothing listens there.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, StreamOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit stream timing, app token
    /// and TLS settings.
    pub async fn connect_with(
        endpoint: impl Into<String>,
        options: StreamOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.into();
        let link = GrpcLink::connect_secure(
            &endpoint,
            options.max_message_bytes,
            options.token.clone(),
            options.tls.as_ref(),
        )
        .await?;
        Ok(Self::with_link(endpoint, Arc::new(link), options))
    }

    /// [`connect_with`](Self::connect_with), tried `attempts` times while
    /// nothing listens at `endpoint` yet (an app that starts beside its
    /// sidecar), with a pause from `first_delay` doubling up to 2 s. Other
    /// errors (bad URL, TLS settings) are returned at once.
    pub async fn connect_retrying(
        endpoint: impl Into<String>,
        options: StreamOptions,
        attempts: u32,
        first_delay: Duration,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.into();
        let mut delay = first_delay;
        let mut attempt = 1;
        loop {
            match Self::connect_with(endpoint.clone(), options.clone()).await {
                Ok(client) => return Ok(client),
                Err(ClientError::Connect { endpoint, reason }) if attempt < attempts.max(1) => {
                    tracing::debug!(%endpoint, %reason, attempt, retry_in = ?delay, "sidecar not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(CONNECT_DELAY_MAX);
                    attempt += 1;
                }
                Err(ClientError::Connect { endpoint, reason }) => {
                    return Err(ClientError::Connect {
                        endpoint,
                        reason: format!("{reason} (gave up after {attempt} attempts)"),
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// A client over any [`SidecarLink`]: embedded mode passes the engine's
    /// in-process link here. `name` is shown as the endpoint.
    pub fn with_link(
        name: impl Into<String>,
        link: Arc<dyn SidecarLink>,
        options: StreamOptions,
    ) -> Self {
        let (executes_tx, executes_rx) = mpsc::unbounded_channel();
        let (acks, _) = broadcast::channel(256);
        let (connected, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                endpoint: name.into(),
                link,
                grace: Mutex::new(options.shutdown_grace),
                options,
                shared: Arc::new(StreamShared {
                    core: Arc::new(WorkerCore::new()),
                    registrations: Mutex::new(Vec::new()),
                    acks,
                    connected,
                }),
                executes_tx,
                executes_rx: Mutex::new(Some(executes_rx)),
                stream_task: Mutex::new(None),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// The sidecar address.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The shared checkpoint core (used by language bindings).
    pub fn core(&self) -> Arc<WorkerCore> {
        self.inner.shared.core.clone()
    }

    /// Declares that this app runs `workflow_name` at `version`, and waits
    /// until the cluster has recorded it. Kept across reconnects.
    pub async fn register_workflow(
        &self,
        workflow_name: &str,
        version: u32,
    ) -> Result<(), ClientError> {
        if workflow_name.is_empty() {
            return Err(ClientError::Usage("workflow_name must not be empty".into()));
        }
        let mut acks = self.inner.shared.acks.subscribe();
        {
            let mut regs = self.inner.shared.registrations.lock().expect("lock");
            if !regs
                .iter()
                .any(|(n, v)| n == workflow_name && *v == version)
            {
                regs.push((workflow_name.to_owned(), version));
            }
        }
        // When the stream is up, register on it now; otherwise the stream task
        // sends every registration as soon as it connects.
        if !self.ensure_stream() && *self.inner.shared.connected.borrow() {
            self.inner
                .shared
                .core
                .send(AppMsg::RegisterWorkflow(RegisterWorkflowRequest {
                    workflow_name: workflow_name.to_owned(),
                    version,
                    // No run of a type is held before its first registration.
                    held_runs: Vec::new(),
                    protocol_version: crate::core::PROTOCOL_VERSION,
                }));
        }
        let wait = async {
            loop {
                match acks.recv().await {
                    Ok(ack) if ack.workflow_name == workflow_name && ack.version == version => {
                        return Ok(());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(ClientError::Shutdown),
                }
            }
        };
        tokio::time::timeout(REGISTER_TIMEOUT, wait)
            .await
            .map_err(|_| {
                ClientError::Timeout(format!(
                    "registration of '{workflow_name}' version {version} was not acknowledged within {REGISTER_TIMEOUT:?}; check the sidecar's log"
                ))
            })?
    }

    /// Starts the stream task once. True when this call started it.
    fn ensure_stream(&self) -> bool {
        let mut task = self.inner.stream_task.lock().expect("lock");
        if task.is_some() {
            return false;
        }
        *task = Some(tokio::spawn(run_stream(
            self.inner.link.clone(),
            self.inner.shared.clone(),
            self.inner.executes_tx.clone(),
            self.inner.options.clone(),
            self.inner.shutdown.subscribe(),
        )));
        true
    }

    /// Runs workflows until [`shutdown`](Self::shutdown): every execution the
    /// sidecar sends runs `handler` in its own task (never inline in the stream
    /// reader), and its outcome is reported. Call it once per client.
    pub async fn handle_workflows<F, Fut>(&self, handler: F) -> Result<(), ClientError>
    where
        F: Fn(WorkflowRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, WorkflowError>> + Send + 'static,
    {
        let mut executes = self
            .inner
            .executes_rx
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| {
                ClientError::Usage("handle_workflows is already running on this client".into())
            })?;
        self.ensure_stream();
        let handler = Arc::new(handler);
        let core = self.core();
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                run = executes.recv() => {
                    let Some(run) = run else { break };
                    let handler = handler.clone();
                    let core = core.clone();
                    let client = self.clone();
                    running.spawn(async move {
                        let request = WorkflowRequest {
                            workflow_id: run.workflow_id.clone(),
                            workflow_name: run.workflow_name.clone(),
                            version: run.version,
                            input: run.input.clone(),
                            context: WorkflowContext::new(core.clone(), run.clone(), client),
                        };
                        let outcome = match handler(request).await {
                            Ok(value) => Ok(Bytes::from(value)),
                            Err(WorkflowError::Client(e)) => Err(e),
                            Err(WorkflowError::Failed(message)) => Err(ClientError::WorkflowFailed {
                                workflow_id: run.workflow_id.clone(),
                                message,
                                failure: None,
                            }),
                            Err(WorkflowError::Application(e)) => {
                                let failure = e.into_failure();
                                Err(ClientError::WorkflowFailed {
                                    workflow_id: run.workflow_id.clone(),
                                    message: format!("{}: {}", failure.r#type, failure.message),
                                    failure: Some(Box::new(failure)),
                                })
                            }
                        };
                        core.finish(&run, outcome);
                    });
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        // Wake every waiting checkpoint with Shutdown and let the tasks end.
        core.shutdown();
        let grace = *self.inner.grace.lock().expect("lock");
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                stuck = running.len(),
                ?grace,
                "workflow functions did not return after shutdown; dropping them (their workflows resume elsewhere)"
            );
            running.shutdown().await;
        }
        Ok(())
    }

    /// [`shutdown`](Self::shutdown) with another grace than the one
    /// connected with: bindings pass their worker's, so a function stuck in
    /// its own code is waited for as long as the user said.
    pub async fn shutdown_within(&self, grace: Duration) {
        *self.inner.grace.lock().expect("lock") = grace;
        self.shutdown().await;
    }

    /// Stops the worker: the stream closes, `handle_workflows` returns after
    /// its in-flight runs unwind. Running workflows stay running in the
    /// cluster and resume (by replay) when a worker connects again.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send_replace(true);
        self.inner.shared.core.shutdown();
        let task = self.inner.stream_task.lock().expect("lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Starts a workflow with a JSON input and a generated id.
    pub async fn start_workflow<I: Serialize + ?Sized>(
        &self,
        workflow_name: &str,
        version: u32,
        input: &I,
    ) -> Result<WorkflowHandle, ClientError> {
        let input = serde_json::to_vec(input)?;
        self.start_workflow_raw("", workflow_name, version, input.into())
            .await
    }

    /// Starts a workflow with a chosen id; starting an existing id returns a
    /// handle to the existing workflow (idempotent).
    pub async fn start_workflow_with_id<I: Serialize + ?Sized>(
        &self,
        workflow_id: &str,
        workflow_name: &str,
        version: u32,
        input: &I,
    ) -> Result<WorkflowHandle, ClientError> {
        let input = serde_json::to_vec(input)?;
        self.start_workflow_raw(workflow_id, workflow_name, version, input.into())
            .await
    }

    /// Starts a workflow with a JSON input and start options: a chosen id,
    /// a delayed start, an execution timeout.
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// use raftoral_client::StartOptions;
    /// let options = StartOptions {
    ///     start_delay: Duration::from_secs(3600),
    ///     execution_timeout: Some(Duration::from_secs(24 * 3600)),
    ///     ..StartOptions::default()
    /// };
    /// client.start_workflow_with("reminder", 1, &"order-7", &options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_workflow_with<I: Serialize + ?Sized>(
        &self,
        workflow_name: &str,
        version: u32,
        input: &I,
        options: &StartOptions,
    ) -> Result<WorkflowHandle, ClientError> {
        let input = serde_json::to_vec(input)?;
        self.start_workflow_raw_with(workflow_name, version, input.into(), options)
            .await
    }

    /// Starts a workflow with encoded input; an empty id is generated.
    ///
    /// The id is generated here, not by the sidecar, and a start that fails
    /// with UNAVAILABLE (no leader yet, a leader change) is retried with the
    /// same id for up to 10 s: starts are idempotent on the id, so a retry
    /// after an answer was lost finds the workflow it started instead of
    /// starting a second one.
    pub async fn start_workflow_raw(
        &self,
        workflow_id: &str,
        workflow_name: &str,
        version: u32,
        input: Bytes,
    ) -> Result<WorkflowHandle, ClientError> {
        let options = StartOptions {
            workflow_id: (!workflow_id.is_empty()).then(|| workflow_id.to_owned()),
            ..StartOptions::default()
        };
        self.start_workflow_raw_with(workflow_name, version, input, &options)
            .await
    }

    /// [`start_workflow_raw`](Self::start_workflow_raw) with start options.
    pub async fn start_workflow_raw_with(
        &self,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        options: &StartOptions,
    ) -> Result<WorkflowHandle, ClientError> {
        let (start_delay_ms, execution_timeout_ms) = options.millis()?;
        let workflow_id = options.workflow_id.as_deref().unwrap_or_default();
        let generated = workflow_id.is_empty();
        let request = StartWorkflowRequest {
            workflow_id: if generated {
                // Time-ordered (UUIDv7): lists come in start order, and the
                // sidecar's store appends instead of inserting at random.
                uuid::Uuid::now_v7().to_string()
            } else {
                workflow_id.to_owned()
            },
            workflow_name: workflow_name.to_owned(),
            version,
            input,
            start_delay_ms,
            execution_timeout_ms,
        };
        let deadline = tokio::time::Instant::now() + START_RETRY_FOR;
        let mut delay = START_RETRY_MIN;
        let mut retried = false;
        let response = loop {
            match self.inner.link.start_workflow(request.clone()).await {
                Ok(response) => break response,
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && tokio::time::Instant::now() + delay < deadline =>
                {
                    tracing::debug!(workflow = %request.workflow_id, message = status.message(), retry_in = ?delay, "start not committed yet; retrying with the same id");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    retried = true;
                }
                Err(status) => return Err(ClientError::status("StartWorkflow", status)),
            }
        };
        let info = response.workflow.unwrap_or_default();
        // A generated id is this call's alone: found on a retry, it is the
        // workflow an earlier attempt of this call started.
        let already_started = response.already_started && !(generated && retried);
        Ok(WorkflowHandle::new(
            self.clone(),
            info.workflow_id.clone(),
            already_started,
        ))
    }

    /// The current state of a workflow.
    pub async fn get_workflow(&self, workflow_id: &str) -> Result<WorkflowInfo, ClientError> {
        self.inner
            .link
            .get_workflow(GetWorkflowRequest {
                workflow_id: workflow_id.to_owned(),
            })
            .await
            .map_err(|s| ClientError::status("GetWorkflow", s))
            .map(|r| r.workflow.unwrap_or_default())
    }

    /// Cancels a workflow with the sidecar's cleanup window (30 s unless
    /// configured); see [`cancel_workflow_with`](Self::cancel_workflow_with).
    pub async fn cancel_workflow(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<WorkflowInfo, ClientError> {
        self.cancel_workflow_with(workflow_id, reason, None).await
    }

    /// Cancels a workflow. A pending one is CANCELLED at once. A running
    /// one gets a request: the returned info is still RUNNING (with
    /// `cancel_reason` and `cancel_deadline_ms`), the step or sleep its
    /// code awaits fails with [`ClientError::Cancelled`], and the code may
    /// catch it to run compensation steps for up to `cleanup` (`None`: the
    /// sidecar's default; zero: no cleanup, cancelled now). The workflow
    /// ends CANCELLED when its function returns that error, or when the
    /// window runs out; wait for it with
    /// [`WorkflowHandle::result`](crate::WorkflowHandle::result).
    ///
    /// ```no_run
    /// # async fn f(client: raftoral_client::RaftoralClient) -> Result<(), raftoral_client::ClientError> {
    /// use std::time::Duration;
    /// client
    ///     .cancel_workflow_with("order-42", "customer asked", Some(Duration::from_secs(60)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_workflow_with(
        &self,
        workflow_id: &str,
        reason: &str,
        cleanup: Option<Duration>,
    ) -> Result<WorkflowInfo, ClientError> {
        self.inner
            .link
            .cancel_workflow(CancelWorkflowRequest {
                workflow_id: workflow_id.to_owned(),
                reason: reason.to_owned(),
                cleanup_ms: cleanup.map(|c| c.as_millis().min(u128::from(u64::MAX)) as u64),
            })
            .await
            .map_err(|s| ClientError::status("CancelWorkflow", s))
            .map(|r| r.workflow.unwrap_or_default())
    }

    /// One page of workflows, filtered by status and name (see
    /// `ListWorkflowsRequest`); pass the response's `next_page_token` back
    /// for the next page.
    pub async fn list_workflows(
        &self,
        request: ListWorkflowsRequest,
    ) -> Result<ListWorkflowsResponse, ClientError> {
        self.inner
            .link
            .list_workflows(request)
            .await
            .map_err(|s| ClientError::status("ListWorkflows", s))
    }

    /// The committed history entries of a workflow, in commit order (steps
    /// side by side may commit out of seq order; failed attempts are
    /// entries too).
    pub async fn get_workflow_history(
        &self,
        workflow_id: &str,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        self.inner
            .link
            .get_workflow_history(GetWorkflowHistoryRequest {
                workflow_id: workflow_id.to_owned(),
            })
            .await
            .map_err(|s| ClientError::status("GetWorkflowHistory", s))
            .map(|r| r.entries)
    }

    /// A handle to an existing workflow (started elsewhere or earlier), to
    /// wait for its result. The id is not checked here; waiting on an
    /// unknown id fails with NOT_FOUND.
    pub fn workflow_handle(&self, workflow_id: &str) -> WorkflowHandle {
        WorkflowHandle::new(self.clone(), workflow_id.to_owned(), true)
    }

    pub(crate) fn link(&self) -> &Arc<dyn SidecarLink> {
        &self.inner.link
    }
}
