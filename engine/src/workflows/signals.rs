//! Sending events to workflows (`impl Node`): the client API's
//! `SignalWorkflow`, checked here, decided in the state machine
//! (`state_machine/inbox.rs`).

use bytes::Bytes;
use raftoral_proto::cluster::v1::{SendEvent, command::Kind};

use crate::error::EngineError;
use crate::node::Node;
use crate::workflows::limits::{MAX_NAME_BYTES, check_len, check_name};
use crate::workflows::state_machine::{Applied, EVENTS_LEVEL, Workflow};

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
        check_name("event name", name)?;
        check_len("idempotency_key", idempotency_key, MAX_NAME_BYTES)?;
        self.check_value_size("event payload", payload.len())?;
        self.wait_events_level().await?;
        let applied = self
            .propose(Kind::SendEvent(SendEvent {
                workflow_id: workflow_id.to_owned(),
                name: name.to_owned(),
                payload,
                idempotency_key: idempotency_key.to_owned(),
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

    /// Events need every member's engine to apply them.
    async fn wait_events_level(&self) -> Result<(), EngineError> {
        self.wait_command_level(EVENTS_LEVEL).await
    }
}
