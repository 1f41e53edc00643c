//! The steady load: `steps` workflows started through random nodes, each
//! start retried with the same id (starts are idempotent on the id) until it
//! is acknowledged or gives up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftoral_client::proto::sidecar::v1::{
    StartWorkflowRequest, workflow_service_client::WorkflowServiceClient,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use super::rng::Rng;
use crate::StepsInput;

/// How long one client call may take: a SIGSTOPped node answers nothing.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a start is retried before it counts as not acknowledged.
const START_RETRY_FOR: Duration = Duration::from_secs(15);

/// Client API channels to every node, reconnecting by themselves when a node
/// comes back on its address.
#[derive(Clone)]
pub struct Nodes {
    channels: Vec<(u64, Channel)>,
}

impl Nodes {
    /// Lazy channels to `(node id, app API URL)`.
    pub fn new(urls: &[(u64, String)]) -> anyhow::Result<Self> {
        let channels = urls
            .iter()
            .map(|(id, url)| {
                let channel = Endpoint::from_shared(url.clone())?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(CALL_TIMEOUT)
                    .connect_lazy();
                Ok((*id, channel))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Nodes { channels })
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.channels.iter().map(|(id, _)| *id).collect()
    }

    /// A client API client for node `id`.
    pub fn client(&self, id: u64) -> WorkflowServiceClient<Channel> {
        let (_, channel) = self
            .channels
            .iter()
            .find(|(n, _)| *n == id)
            .expect("known node");
        WorkflowServiceClient::new(channel.clone())
    }
}

/// One start the load made.
#[derive(Debug, Clone)]
pub struct Started {
    /// Workflow id (chosen by the load, so retries find the same workflow).
    pub workflow_id: String,
    /// Number of steps.
    pub n: u64,
    /// True when some attempt was answered OK.
    pub acknowledged: bool,
    /// The last error when not acknowledged.
    pub last_error: Option<String>,
}

/// Shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    /// Time between two starts.
    pub every: Duration,
    /// Fewest and most steps of one workflow.
    pub steps: (u64, u64),
    /// Shortest and longest work time of one step, in milliseconds.
    pub step_delay_ms: (u64, u64),
}

/// Starts workflows every `shape.every` until `stop` turns true, then waits
/// for every start in flight and returns them all.
pub async fn run(
    nodes: Nodes,
    seed: u64,
    mut rng: Rng,
    shape: LoadShape,
    mut stop: watch::Receiver<bool>,
) -> Vec<Started> {
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    let ids = nodes.ids();
    let mut tick = tokio::time::interval(shape.every);
    for k in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let input = StepsInput::slow(
            rng.range(shape.steps.0, shape.steps.1),
            rng.range(shape.step_delay_ms.0, shape.step_delay_ms.1),
        );
        let first = rng.range(0, ids.len() as u64 - 1) as usize;
        let order: Vec<u64> = (0..ids.len())
            .map(|i| ids[(first + i) % ids.len()])
            .collect();
        let workflow_id = format!("fr{seed}-{k:05}");
        let (nodes, started) = (nodes.clone(), started.clone());
        tasks.spawn(async move {
            let result = start(&nodes, &order, &workflow_id, &input).await;
            started.lock().expect("lock").push(Started {
                workflow_id,
                n: input.n,
                acknowledged: result.is_ok(),
                last_error: result.err(),
            });
        });
        // Reap finished starts as we go.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut all = std::mem::take(&mut *started.lock().expect("lock"));
    all.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
    all
}

/// Starts one workflow, trying the nodes in `order` round and round until
/// one acknowledges or the retry time is over.
async fn start(
    nodes: &Nodes,
    order: &[u64],
    workflow_id: &str,
    input: &StepsInput,
) -> Result<(), String> {
    let request = StartWorkflowRequest {
        workflow_id: workflow_id.to_owned(),
        workflow_name: "steps".into(),
        version: 1,
        input: serde_json::to_vec(input).expect("json").into(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + START_RETRY_FOR;
    let mut last = String::new();
    for node in order.iter().cycle() {
        match nodes.client(*node).start_workflow(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(status) => last = format!("node {node}: {:?} {}", status.code(), status.message()),
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
        // A pause between tries: the retry is for a leader change or a node
        // coming back, not a busy loop.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}
