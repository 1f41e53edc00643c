//! Talking to running workflows (`impl Node`): the client API's
//! `SignalWorkflow`, `SignalWithStart`, `CompleteAwakeable` and
//! `GetStatus`, checked here, decided in the state machine
//! (`state_machine/inbox.rs`, `status.rs`). An awakeable is an event wait
//! for a reserved name (`raftoral_proto::awakeable`): completing it sends
//! that event once.

use bytes::Bytes;
use raftoral_proto::awakeable;
use raftoral_proto::cluster::v1::{SendEvent, command::Kind};
use raftoral_proto::sidecar::v1::{Failure, StatusValue};

use crate::error::EngineError;
use crate::node::Node;
use crate::workflows::limits::{
    MAX_FAILURE_BYTES, MAX_NAME_BYTES, bounded_failure, check_len, check_name,
};
use crate::workflows::operations::StartOptions;
use crate::workflows::state_machine::{Applied, EVENTS_LEVEL, STATUS_LEVEL, Workflow};

/// An event to send (with [`Node::signal_with_start`]).
#[derive(Debug, Clone, Default)]
pub struct Signal {
    /// The event's name (what the code waits for).
    pub name: String,
    /// Encoded payload.
    pub payload: Bytes,
    /// Idempotency key; empty: none.
    pub idempotency_key: String,
}

/// What a signal-with-start did.
#[derive(Debug, Clone)]
pub struct SignalledWithStart {
    /// True when this call started the workflow.
    pub started: bool,
    /// True when the event's idempotency key was delivered before.
    pub duplicate: bool,
    /// The workflow right after the entry was committed.
    pub workflow: Workflow,
}

/// What sending an event did.
#[derive(Debug, Clone)]
pub struct Signalled {
    /// True when an event with the same idempotency key was delivered
    /// before: nothing was delivered now.
    pub duplicate: bool,
    /// The workflow right after the event was committed.
    pub workflow: Workflow,
}

impl Node {
    /// Sends event `name` with `payload` to workflow `workflow_id`; answers
    /// once it is committed (consumed by a wait, or in the inbox). With a
    /// non-empty `idempotency_key`, a key delivered before makes it a no-op
    /// (`duplicate`). Errors: unknown workflow, one that has ended, a bad
    /// name or key, a payload over the value limit, a full inbox.
    pub async fn signal_workflow(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Bytes,
        idempotency_key: &str,
    ) -> Result<Signalled, EngineError> {
        check_event_name(name)?;
        check_len("idempotency_key", idempotency_key, MAX_NAME_BYTES)?;
        self.check_value_size("event payload", payload.len())?;
        self.wait_events_level().await?;
        let applied = self
            .propose(Kind::SendEvent(SendEvent {
                workflow_id: workflow_id.to_owned(),
                name: name.to_owned(),
                payload,
                idempotency_key: idempotency_key.to_owned(),
                failure: None,
            }))
            .await?;
        let duplicate = matches!(applied, Applied::EventSent { duplicate: true });
        let workflow = self
            .workflow(workflow_id)
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.to_owned()))?;
        Ok(Signalled {
            duplicate,
            workflow,
        })
    }

    /// Starts workflow `workflow_id` unless it exists, then sends it
    /// `signal`, in one log entry (see `SignalWithStart` in
    /// workflow_service.proto). Errors: those of a start and of a send; a
    /// workflow that has ended is refused (its id is not reused).
    pub async fn signal_with_start(
        &self,
        workflow_id: &str,
        workflow_name: &str,
        version: u32,
        input: Bytes,
        options: StartOptions,
        signal: Signal,
    ) -> Result<SignalledWithStart, EngineError> {
        if workflow_id.is_empty() {
            return Err(EngineError::InvalidArgument(
                "signal-with-start needs a workflow_id: the event needs a known target, and a \
                 retry must not start a second workflow"
                    .into(),
            ));
        }
        check_event_name(&signal.name)?;
        check_len("idempotency_key", &signal.idempotency_key, MAX_NAME_BYTES)?;
        self.check_value_size("event payload", signal.payload.len())?;
        let mut start = self.start_command(
            Some(workflow_id.to_owned()),
            workflow_name,
            version,
            input,
            options,
        )?;
        start.signal = Some(Box::new(SendEvent {
            workflow_id: workflow_id.to_owned(),
            name: signal.name,
            payload: signal.payload,
            idempotency_key: signal.idempotency_key,
            failure: None,
        }));
        // Engines before it would start the workflow and drop the event.
        self.wait_command_level(STATUS_LEVEL).await?;
        let applied = self.propose(Kind::StartWorkflow(start)).await?;
        let (started, duplicate) = match applied {
            Applied::SignalledWithStart { started, duplicate } => (started, duplicate),
            _ => (false, false),
        };
        let workflow = self
            .workflow(workflow_id)
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id.to_owned()))?;
        Ok(SignalledWithStart {
            started,
            duplicate,
            workflow,
        })
    }

    /// Completes the awakeable `awakeable_id`: resolves it with `payload`,
    /// or rejects it with `failure` (raised in the code). Once: a second
    /// completion is `AlreadyExists`. A completion that comes before the
    /// code waits is kept until it does. Errors besides: a malformed id,
    /// an unknown or ended workflow, a payload over the value limit.
    pub async fn complete_awakeable(
        &self,
        awakeable_id: &str,
        payload: Bytes,
        failure: Option<Failure>,
    ) -> Result<Workflow, EngineError> {
        let Some((workflow_id, seq)) = awakeable::parse(awakeable_id) else {
            return Err(EngineError::InvalidArgument(format!(
                "'{awakeable_id}' is not an awakeable id; pass the id the workflow's code got \
                 from awakeable() unchanged (it looks like awk/SEQ/WORKFLOW_ID)"
            )));
        };
        self.check_value_size("awakeable payload", payload.len())?;
        let failure = failure
            .map(|f| bounded_failure(f, MAX_FAILURE_BYTES))
            .transpose()?;
        self.wait_command_level(STATUS_LEVEL).await?;
        let name = awakeable::event_name(seq);
        let applied = self
            .propose(Kind::SendEvent(SendEvent {
                workflow_id: workflow_id.clone(),
                name: name.clone(),
                payload,
                idempotency_key: name,
                failure,
            }))
            .await?;
        if matches!(applied, Applied::EventSent { duplicate: true }) {
            return Err(EngineError::AlreadyExists(format!(
                "awakeable '{awakeable_id}' was already completed; an awakeable is resolved or \
                 rejected once"
            )));
        }
        self.workflow(&workflow_id)
            .ok_or_else(|| crate::Rejection::UnknownWorkflow(workflow_id).into())
    }

    /// The status values workflow `workflow_id`'s code set, the latest of
    /// each key in `keys` (every key when empty), with the workflow; `None`
    /// for an unknown workflow. This node's applied state: call
    /// [`read_barrier`](Self::read_barrier) first for a linearizable read.
    pub fn workflow_status_values(
        &self,
        workflow_id: &str,
        keys: &[String],
    ) -> Result<Option<(Workflow, Vec<StatusValue>)>, EngineError> {
        for key in keys {
            check_name("status key", key)?;
        }
        Ok(self.find_workflow(workflow_id)?.map(|wf| {
            let values = wf.status_values(keys);
            (wf, values)
        }))
    }

    /// Events need every member's engine to apply them.
    async fn wait_events_level(&self) -> Result<(), EngineError> {
        self.wait_command_level(EVENTS_LEVEL).await
    }
}

/// A user event's name: 1 to 256 bytes, not one reserved for awakeables.
fn check_event_name(name: &str) -> Result<(), EngineError> {
    check_name("event name", name)?;
    if name.starts_with(awakeable::EVENT_PREFIX) {
        return Err(EngineError::InvalidArgument(format!(
            "event name '{name}' starts with '{}', which is reserved for awakeables: complete \
             an awakeable with CompleteAwakeable, or name the event otherwise",
            awakeable::EVENT_PREFIX
        )));
    }
    Ok(())
}
