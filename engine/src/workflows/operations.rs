//! The workflow operations of a [`Node`]: start, register a worker, record
//! a checkpoint, finish, cancel, and the reads and waits the client API
//! needs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftoral_proto::cluster::v1::{
    CancelWorkflow, FinishWorkflow, RecordCheckpoint, RegisterWorker, StartWorkflow, command::Kind,
};
use raftoral_proto::sidecar::v1::{CheckpointProposal, Failure, HistoryEntryKind, WorkflowStatus};
use tokio::sync::broadcast;

use crate::error::EngineError;
use crate::node::{ListFilter, Node, Started};
use crate::workflows::state_machine::Event;
use crate::workflows::state_machine::{
    Applied, CANCEL_LEVEL, Checkpoint, MAX_TIMER_MS, STEPS_LEVEL, TIMERS_LEVEL, Workflow,
};
use crate::workflows::step_proposals::{level_of, needed_level};

/// When a started workflow runs, and how long it may take
/// ([`Node::start_workflow_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Start this long after the start is committed (a delayed start);
    /// zero: at once. At most 366 days.
    pub start_delay: Duration,
    /// Fail the workflow (failure type `raftoral.WorkflowTimeout`) if it
    /// has not finished this long after it started; `None`: no limit. At
    /// most 366 days.
    pub execution_timeout: Option<Duration>,
}

impl StartOptions {
    fn checked(&self) -> Result<(u64, u64), EngineError> {
        let ms = |what: &str, d: Duration| {
            let ms = d.as_millis();
            if ms > u128::from(MAX_TIMER_MS) {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} is {d:?}; at most 366 days"
                )));
            }
            Ok(ms as u64)
        };
        let delay = ms("start_delay", self.start_delay)?;
        let timeout = match self.execution_timeout {
            Some(t) if t.is_zero() => {
                return Err(EngineError::InvalidArgument(
                    "execution_timeout is zero: give a positive timeout, or none".into(),
                ));
            }
            Some(t) => ms("execution_timeout", t)?,
            None => 0,
        };
        Ok((delay, timeout))
    }
}

impl Node {
    /// Starts a workflow; idempotent on `workflow_id`. `None` (or an empty id)
    /// generates a unique id.
    pub async fn start_workflow(
        &self,
        workflow_id: Option<String>,
        workflow_name: &str,
        version: u32,
        input: Bytes,
    ) -> Result<Started, EngineError> {
        self.start_workflow_with(
            workflow_id,
            workflow_name,
            version,
            input,
            StartOptions::default(),
        )
        .await
    }

    /// [`start_workflow`](Self::start_workflow) with a delayed start or an
    /// execution timeout. A retried start of an existing id changes
    /// nothing, whatever its options.
    pub async fn start_workflow_with(
        &self,
        workflow_id: Option<String>,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        let start = self.start_command(workflow_id, workflow_name, version, input, options)?;
        // Fast path: a retried start does not need a log entry.
        if let Some(workflow) = self.workflow(&start.workflow_id) {
            return Ok(Started {
                workflow,
                already_started: true,
            });
        }
        if start.start_delay_ms > 0 || start.execution_timeout_ms > 0 {
            // An engine before timers would start it at once, unbounded.
            self.wait_command_level(TIMERS_LEVEL).await?;
        }
        let workflow_id = start.workflow_id.clone();
        let applied = self.propose(Kind::StartWorkflow(start)).await?;
        let already_started = matches!(
            applied,
            Applied::Started {
                already_started: true,
                ..
            }
        );
        let workflow = self
            .workflow(&workflow_id)
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.clone()))?;
        Ok(Started {
            workflow,
            already_started,
        })
    }

    /// The checked `StartWorkflow` command of a start request (a
    /// generated id when `workflow_id` is `None` or empty).
    pub(crate) fn start_command(
        &self,
        workflow_id: Option<String>,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        options: StartOptions,
    ) -> Result<StartWorkflow, EngineError> {
        let (start_delay_ms, execution_timeout_ms) = options.checked()?;
        crate::workflows::limits::check_name("workflow_name", workflow_name)?;
        let version = crate::workflows::limits::version_or_first(version);
        self.check_value_size("input", input.len())?;
        let workflow_id = match workflow_id {
            Some(id) if !id.is_empty() => id,
            // Time-ordered (UUIDv7), as the SDKs generate them.
            _ => uuid::Uuid::now_v7().to_string(),
        };
        crate::workflows::limits::check_len(
            "workflow_id",
            &workflow_id,
            crate::workflows::limits::MAX_ID_BYTES,
        )?;
        Ok(StartWorkflow {
            workflow_id,
            workflow_name: workflow_name.to_owned(),
            version,
            input,
            origin_node_id: self.id(),
            start_delay_ms,
            execution_timeout_ms,
            signal: None,
        })
    }

    /// Registers that this node's app runs (name, version).
    pub async fn register_worker(
        &self,
        workflow_name: &str,
        version: u32,
    ) -> Result<(), EngineError> {
        crate::workflows::limits::check_name("workflow_name", workflow_name)?;
        let version = crate::workflows::limits::version_or_first(version);
        if self.read(|sm| sm.is_registered(self.id(), workflow_name, version)) {
            return Ok(());
        }
        self.propose(Kind::RegisterWorker(RegisterWorker {
            node_id: self.id(),
            workflow_name: workflow_name.to_owned(),
            version,
        }))
        .await
        .map(|_| ())
    }

    /// Proposes one history entry of a workflow owned by this node: a
    /// step's value, its final failure or one failed attempt (see
    /// `CheckpointProposal` in app.proto). A value that extends a plain
    /// history is written as before kinds existed (`RecordCheckpoint`), so
    /// every engine applies it; anything else needs every member's engine
    /// to know `RecordStep` and waits up to the proposal timeout for that
    /// (a cluster in the middle of a rolling upgrade), then fails as
    /// retryable.
    pub async fn record_step(&self, p: CheckpointProposal) -> Result<(), EngineError> {
        let step = self.step_command(p)?;
        // Once every member applies RecordStep, it is the only form: steps
        // side by side commit in any order. Before (a rolling upgrade), a
        // value that extends a plain history is written as every engine
        // applies it; should a concurrent step commit first (its seq is no
        // longer the history's length), it waits for the upgrade instead.
        let level = needed_level(&step);
        let upgraded = self.read(|sm| sm.command_level()) >= STEPS_LEVEL;
        let plain_next = !upgraded
            && step.kind() == HistoryEntryKind::Unspecified
            && step.attempt <= 1
            && self.read(|sm| {
                sm.workflow(&step.workflow_id)
                    .is_some_and(|w| w.is_plain_history() && w.checkpoints.len() as u64 == step.seq)
            });
        if plain_next {
            let command = Kind::RecordCheckpoint(RecordCheckpoint {
                workflow_id: step.workflow_id.clone(),
                seq: step.seq,
                checkpoint_name: step.checkpoint_name.clone(),
                value: step.value.clone(),
                node_id: self.id(),
            });
            match self.propose(command).await {
                Err(EngineError::Rejected(crate::Rejection::UnexpectedSeq { .. }))
                    if self.read(|sm| {
                        sm.workflow(&step.workflow_id)
                            .is_some_and(|w| !w.is_step_resolved(step.seq))
                    }) => {}
                other => return other.map(|_| ()),
            }
        }
        self.wait_command_level(level).await?;
        self.propose(Kind::RecordStep(step)).await.map(|_| ())
    }

    /// [`record_step`](Self::record_step) for proposals an app sent
    /// together (steps side by side): once every member applies
    /// `RecordStep`, they go to the Raft loop as one input, so they share an
    /// append and an fsync. One outcome per proposal, in order.
    pub async fn record_steps(
        &self,
        proposals: Vec<CheckpointProposal>,
    ) -> Vec<Result<(), EngineError>> {
        let wanted = proposals
            .iter()
            .map(|p| level_of(p.kind()))
            .max()
            .unwrap_or(STEPS_LEVEL);
        if proposals.len() == 1 || self.read(|sm| sm.command_level()) < wanted {
            // One at a time: the upgrade path decides per proposal.
            let each = proposals.into_iter().map(|p| self.record_step(p));
            return futures::future::join_all(each).await;
        }
        let mut outcomes: Vec<Option<Result<(), EngineError>>> = Vec::new();
        let (mut kinds, mut proposed) = (Vec::new(), Vec::new());
        for p in proposals {
            match self.step_command(p) {
                Ok(step) => {
                    proposed.push(outcomes.len());
                    outcomes.push(None);
                    kinds.push(Kind::RecordStep(step));
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        for (i, outcome) in proposed.into_iter().zip(self.propose_all(kinds).await) {
            outcomes[i] = Some(outcome.map(|_| ()));
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(EngineError::ShuttingDown)))
            .collect()
    }

    /// Waits (up to the proposal timeout) until every member recorded a
    /// command level of at least `level`: checked again each time this
    /// node applies entries (its published status changes).
    pub(crate) async fn wait_command_level(&self, level: u32) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + self.config().proposal_timeout;
        let mut applied = self.status_changes();
        loop {
            let now_level = self.read(|sm| sm.command_level());
            if now_level >= level {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(EngineError::ShuttingDown),
                Err(_) => {
                    return Err(EngineError::Upgrading(format!(
                        "a member's engine does not apply failed or out-of-order steps yet (cluster level {now_level}, needed {level}): finish upgrading every node, then retry"
                    )));
                }
            }
        }
    }

    /// Proposes the outcome of a workflow owned by this node.
    pub async fn finish_workflow(
        &self,
        workflow_id: &str,
        outcome: Result<Bytes, String>,
        failure: Option<Failure>,
    ) -> Result<(), EngineError> {
        let failure = match failure {
            Some(f) if outcome.is_err() => Some(crate::workflows::limits::bounded_failure(
                f,
                crate::workflows::limits::MAX_FAILURE_BYTES,
            )?),
            _ => None,
        };
        let (success, result, error) = match outcome {
            Ok(result) => {
                self.check_value_size("result", result.len())?;
                (true, result, String::new())
            }
            Err(error) => (
                false,
                Bytes::new(),
                crate::workflows::limits::bounded_error(error),
            ),
        };
        self.propose(Kind::FinishWorkflow(FinishWorkflow {
            workflow_id: workflow_id.to_owned(),
            node_id: self.id(),
            success,
            result,
            error,
            failure,
        }))
        .await
        .map(|_| ())
    }

    /// Cancels a pending or running workflow with this node's cleanup
    /// window ([`NodeConfig::cancel_cleanup`](crate::NodeConfig)); see
    /// [`cancel_workflow_with`](Self::cancel_workflow_with).
    pub async fn cancel_workflow(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<Workflow, EngineError> {
        self.cancel_workflow_with(workflow_id, reason, None).await
    }

    /// Cancels a workflow; a finished one is returned as is. A pending
    /// workflow is cancelled at once, and so is a running one when
    /// `cleanup` is zero. Otherwise (`None`: this node's default) the
    /// cancel is a request: the workflow stays RUNNING while its code gets
    /// the cancellation and may clean up, and ends CANCELLED when the code
    /// ends with it or when `cleanup` has passed (log time). While a member
    /// runs an engine without cancel requests the cancel is immediate.
    pub async fn cancel_workflow_with(
        &self,
        workflow_id: &str,
        reason: &str,
        cleanup: Option<Duration>,
    ) -> Result<Workflow, EngineError> {
        let cleanup = cleanup.unwrap_or(self.config().cancel_cleanup);
        if cleanup.as_millis() > u128::from(MAX_TIMER_MS) {
            return Err(EngineError::InvalidArgument(format!(
                "the cleanup window is {cleanup:?}; at most 366 days"
            )));
        }
        let mut cleanup_ms = cleanup.as_millis() as u64;
        if cleanup_ms > 0 && self.read(|sm| sm.command_level()) < CANCEL_LEVEL {
            // A member that recorded no level yet (a node started a moment
            // ago) is waited for, as a start with options is; one whose
            // engine predates requests gets an immediate cancel.
            let older = self.read(|sm| sm.predates(CANCEL_LEVEL))
                || self.wait_command_level(CANCEL_LEVEL).await.is_err();
            if older {
                tracing::info!(workflow = %workflow_id, "a member's engine predates cancel requests: cancelling at once, with no cleanup");
                cleanup_ms = 0;
            }
        }
        crate::workflows::limits::check_len(
            "reason",
            reason,
            crate::workflows::limits::MAX_ID_BYTES,
        )?;
        let existing = self
            .workflow_linearizable(workflow_id)
            .await?
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.to_owned()))?;
        if existing.is_terminal() {
            return Ok(existing);
        }
        self.propose(Kind::CancelWorkflow(CancelWorkflow {
            workflow_id: workflow_id.to_owned(),
            reason: reason.to_owned(),
            cleanup_ms,
        }))
        .await?;
        self.workflow(workflow_id)
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.to_owned()).into())
    }

    /// The workflow with this id, missing only if no start of it completed
    /// before the call, wherever it was made. A workflow this node has
    /// applied is returned at once, as applied here (a start is never
    /// undone, but its status may lag the leader's: callers that need the
    /// latest state take [`read_barrier`](Self::read_barrier) first, as the
    /// client API does); an id it does not know yet costs a read barrier
    /// before it is called missing: a start acknowledged by another node
    /// may not be applied here yet.
    pub async fn workflow_linearizable(
        &self,
        workflow_id: &str,
    ) -> Result<Option<Workflow>, EngineError> {
        if let Some(wf) = self.find_workflow(workflow_id)? {
            return Ok(Some(wf));
        }
        self.read_barrier().await?;
        self.find_workflow(workflow_id)
    }

    /// The workflow with this id, if any, or the storage failure that
    /// keeps this node from knowing (an answer to a client).
    pub fn find_workflow(&self, workflow_id: &str) -> Result<Option<Workflow>, EngineError> {
        self.read_checked(|sm| sm.workflow(workflow_id))
            .map(|found| found.map(Arc::unwrap_or_clone))
    }

    /// The workflow with this id, if any (this node's applied state).
    pub fn workflow(&self, workflow_id: &str) -> Option<Workflow> {
        self.read(|sm| sm.workflow(workflow_id))
            .map(Arc::unwrap_or_clone)
    }

    /// The committed checkpoints of a workflow.
    pub fn history(&self, workflow_id: &str) -> Result<Option<Vec<Checkpoint>>, EngineError> {
        self.read_checked(|sm| sm.workflow(workflow_id).map(|w| w.checkpoints.clone()))
    }

    /// One page of workflows ordered by id, and whether more follow. The
    /// records are shared with the state: nothing is copied under its lock,
    /// and a filter on PENDING or RUNNING reads only the active index.
    pub fn list_workflows(
        &self,
        filter: &ListFilter,
    ) -> Result<(Vec<Arc<Workflow>>, bool), EngineError> {
        let size = match filter.page_size {
            0 => 100,
            n => n.min(1000),
        };
        let page = crate::workflows::state_machine::PageFilter {
            status: (filter.status != WorkflowStatus::Unspecified).then_some(filter.status),
            name: (!filter.workflow_name.is_empty()).then_some(filter.workflow_name.as_str()),
            sleeping: filter.sleeping,
            parent: (!filter.parent.is_empty()).then_some(filter.parent.as_str()),
        };
        self.read_checked(|sm| sm.page(&filter.after, &page, size))
    }

    /// Waits until the workflow is completed, failed or cancelled.
    pub async fn wait_workflow(
        &self,
        workflow_id: &str,
        timeout: Duration,
    ) -> Result<Workflow, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // A workflow started through another node may not be applied here
        // yet: make sure before answering that it does not exist.
        self.workflow_linearizable(workflow_id).await?;
        loop {
            let (mut events, current) =
                self.subscribe_with(|sm| sm.workflow(workflow_id).map(Arc::unwrap_or_clone));
            let current =
                current.ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.to_owned()))?;
            if current.is_terminal() {
                return Ok(current);
            }
            let mut shutdown = self.shutdown_signal();
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout_at(deadline, events.recv()) => next,
                    _ = crate::shutdown::stopped(&mut shutdown) => return Err(EngineError::ShuttingDown),
                };
                match next {
                    Err(_) => {
                        let now = self.workflow(workflow_id).unwrap_or(current);
                        if now.is_terminal() {
                            return Ok(now);
                        }
                        return Err(EngineError::WaitTimeout {
                            workflow_id: workflow_id.to_owned(),
                            timeout,
                            status: now.status,
                            pending_reason: now.pending_reason,
                        });
                    }
                    Ok(Ok(event)) => match &event.event {
                        Event::WorkflowFinished {
                            workflow_id: id, ..
                        } if id == workflow_id => break,
                        // A snapshot replaced the state: the finish may be
                        // inside it, with no event of its own.
                        Event::StateReplaced => break,
                        _ => {}
                    },
                    // Lagged: re-read the state and subscribe again.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(EngineError::ShuttingDown);
                    }
                }
            }
        }
    }
}
