//! Cancel requests (`WorkflowCancellation.requested`): passed to apps that
//! take them, finished at once on behalf of older apps.
//!
//! An app of protocol 4 delivers the cancellation into the code itself (its
//! core commits `raftoral.Cancelled` entries) and reports how the code
//! ended. An older app cannot: for it the owner's session cancels the
//! workflow at once (no cleanup window), which tells every app the plain
//! way, as every cancel did before requests existed.

use raftoral_proto::sidecar::v1::{
    WorkflowCancellation, workflow_stream_response::Message as SidecarMsg,
};

use std::time::Duration;

use super::{End, WorkerSession};
use crate::workflows::state_machine::Workflow;

/// The app protocol that takes cancel requests.
const CANCEL_PROTOCOL: u32 = 4;

impl WorkerSession {
    /// Tells the app running `wf` (if this session runs it) that its
    /// cancel is requested. Repeating it is harmless (the SDK core takes it
    /// once), so it follows every execute request and state resync too.
    pub(super) async fn cancel_requested(&mut self, wf: &Workflow) -> Result<(), End> {
        if !wf.cancel_requested() || !self.active.contains_key(&wf.id) {
            return Ok(());
        }
        if self.protocol >= CANCEL_PROTOCOL {
            return self
                .send(SidecarMsg::WorkflowCancellation(WorkflowCancellation {
                    workflow_id: wf.id.clone(),
                    reason: wf.cancel_reason.clone(),
                    requested: true,
                    cleanup_until_ms: wf.cancel_deadline_ms,
                }))
                .await;
        }
        if wf.owner == self.node.id() {
            // Cancelled at once, as before requests existed: the
            // WorkflowCancelled event then tells every app (this one
            // included) the plain way, and the workflow is CANCELLED
            // before this app can report anything else.
            tracing::info!(workflow = %wf.id, session = self.id, app_protocol = self.protocol, "the app predates cancel requests: the workflow is cancelled without cleanup");
            let (node, id, reason) = (self.node.clone(), wf.id.clone(), wf.cancel_reason.clone());
            tokio::spawn(async move {
                let cancel = || node.cancel_workflow_with(&id, &reason, Some(Duration::ZERO));
                let retrying = |e: &crate::EngineError| {
                    tracing::debug!(workflow = %id, error = %e, "cancel not committed yet; retrying");
                };
                if let Some(Err(e)) = super::retry::until_settled(&node, cancel, retrying).await {
                    tracing::debug!(workflow = %id, error = %e, "cancel refused");
                }
            });
        }
        Ok(())
    }
}
