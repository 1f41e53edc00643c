//! Handing workflows to the app and forwarding what is committed about them.

use raftoral_proto::sidecar::v1::{
    CheckpointEvent, CheckpointRecord, ExecuteWorkflowRequest, OwnershipChange,
    WorkflowCancellation, WorkflowStatus, workflow_stream_response::Message as SidecarMsg,
};

use std::sync::Arc;

use super::{End, Run, WorkerSession};

/// Most checkpoint bytes (values and names) one execute request carries;
/// the rest of a longer history follows as checkpoint events. Documented in
/// `app.proto` (`ExecuteWorkflowRequest.history`).
pub(super) const HISTORY_BYTES: usize = 4 * 1024 * 1024;
use crate::workflows::state_machine::{Checkpoint, Workflow};
use crate::workflows::state_machine::{Event, EventAt};

/// A history entry as an execute request carries it.
fn record_of(c: &Checkpoint) -> CheckpointRecord {
    CheckpointRecord {
        seq: c.seq,
        checkpoint_name: c.name.clone(),
        value: c.value.clone(),
        kind: c.kind as i32,
        failure: c.failure.as_deref().cloned(),
        attempt: c.attempt,
        next_attempt_at_ms: attempt_at(c),
        committed_at_ms: c.committed_at_ms,
        fire_at_ms: c.fire_at_ms(),
    }
}

/// A history entry as a checkpoint event carries it.
fn event_of(workflow_id: &str, history_index: u64, c: &Checkpoint) -> CheckpointEvent {
    CheckpointEvent {
        workflow_id: workflow_id.to_owned(),
        seq: c.seq,
        checkpoint_name: c.name.clone(),
        value: c.value.clone(),
        kind: c.kind as i32,
        failure: c.failure.as_deref().cloned(),
        attempt: c.attempt,
        next_attempt_at_ms: attempt_at(c),
        committed_at_ms: c.committed_at_ms,
        history_index,
        fire_at_ms: c.fire_at_ms(),
    }
}

/// `next_attempt_at_ms` as apps read it: set on failed attempts only (the
/// engine keeps a timer's deadline in the same field).
fn attempt_at(c: &Checkpoint) -> u64 {
    if c.is_timer() {
        0
    } else {
        c.next_attempt_at_ms
    }
}

impl WorkerSession {
    /// Sends every running workflow this app can run and nobody on this node
    /// runs yet, with its history. Nothing before the session is in sync.
    pub(super) async fn dispatch_all(&mut self) -> Result<(), End> {
        if !self.synced {
            return Ok(());
        }
        // Shared records: histories are copied after the lock is released.
        let (candidates, since): (Vec<std::sync::Arc<Workflow>>, u64) = self.node.read(|sm| {
            let running = sm
                .active_shared()
                .filter(|w| {
                    w.status == WorkflowStatus::Running
                        && !self.active.contains_key(&w.id)
                        && self.registered.contains(&(w.name.clone(), w.version))
                })
                .filter(|w| self.reads(w))
                .cloned()
                .collect();
            (running, sm.applied_index())
        });
        for wf in candidates {
            self.execute(wf, since).await?;
        }
        Ok(())
    }

    /// Sends the current state of one workflow if this session may run it.
    async fn dispatch_one(&mut self, workflow_id: &str) -> Result<(), End> {
        if !self.synced || self.active.contains_key(workflow_id) {
            return Ok(());
        }
        let (wf, since) = self
            .node
            .read(|sm| (sm.workflow(workflow_id), sm.applied_index()));
        match wf {
            Some(wf)
                if wf.status == WorkflowStatus::Running
                    && self.registered.contains(&(wf.name.clone(), wf.version))
                    && self.reads(&wf) =>
            {
                self.execute(wf, since).await
            }
            _ => Ok(()),
        }
    }

    /// Sends `wf` as seen at applied index `since`. The request carries at
    /// most [`HISTORY_BYTES`] of history, so one long history cannot make a
    /// message the app refuses (which ended the stream at every dispatch and
    /// starved the workflows after it). The rest follows as checkpoint
    /// events; an owner is told it owns the workflow only after them, so it
    /// never computes a step that is committed. A run the app declared it
    /// holds gets only the history after what it knows.
    async fn execute(&mut self, wf: Arc<Workflow>, since: u64) -> Result<(), End> {
        self.send_run(&wf, since).await?;
        // A cancel requested before the run was sent follows it.
        self.cancel_requested(&wf).await
    }

    async fn send_run(&mut self, wf: &Workflow, since: u64) -> Result<(), End> {
        if !self.node.claim(&wf.id, self.id) {
            return Ok(());
        }
        let start = self
            .held
            .remove(&wf.id)
            .filter(|known| *known as usize <= wf.checkpoints.len())
            .unwrap_or(0) as usize;
        let mut bytes = 0usize;
        let carried = start
            + wf.checkpoints[start..]
                .iter()
                .take_while(|c| {
                    bytes += c.value.len() + c.name.len();
                    bytes <= HISTORY_BYTES
                })
                .count();
        let history: Vec<CheckpointRecord> = wf.checkpoints[start..carried]
            .iter()
            .map(record_of)
            .collect();
        let owner = wf.owner == self.node.id();
        let complete = carried == wf.checkpoints.len();
        let is_owner = owner && complete;
        self.active.insert(
            wf.id.clone(),
            Run {
                sent: carried as u64,
                since,
                is_owner,
            },
        );
        let id = wf.id.clone();
        self.send(SidecarMsg::ExecuteWorkflow(ExecuteWorkflowRequest {
            workflow_id: wf.id.clone(),
            workflow_name: wf.name.clone(),
            version: wf.version,
            input: wf.input.clone(),
            is_owner,
            history,
            history_start: start as u64,
            random_seed: wf.random_seed(),
        }))
        .await?;
        if complete {
            return Ok(());
        }
        for (index, c) in wf.checkpoints.iter().enumerate().skip(carried) {
            self.send(SidecarMsg::CheckpointEvent(event_of(&id, index as u64, c)))
                .await?;
        }
        if let Some(run) = self.active.get_mut(&id) {
            run.sent = wf.checkpoints.len() as u64;
        }
        self.set_owner(&id, owner).await
    }

    /// Brings the app back in line after a snapshot replaced the state:
    /// the events of the entries it covers never happened here. Each active
    /// workflow gets its missing checkpoints (so a replica completes in
    /// step), its cancellation or its new ownership; then whatever this app
    /// can run and does not yet is dispatched.
    async fn resync(&mut self) -> Result<(), End> {
        let me = self.node.id();
        let ids: Vec<String> = self.active.keys().cloned().collect();
        for id in ids {
            let (wf, index) = self.node.read(|sm| (sm.workflow(&id), sm.applied_index()));
            let wf = wf.map(Arc::unwrap_or_clone);
            let Some(wf) = wf else {
                self.active.remove(&id);
                self.node.release(&id, self.id);
                continue;
            };
            if !self.reads(&wf) {
                self.drop_unreadable(&id);
                continue;
            }
            let next = self.active.get(&id).map_or(0, |run| run.sent);
            for (index, c) in wf.checkpoints.iter().enumerate().skip(next as usize) {
                self.send(SidecarMsg::CheckpointEvent(event_of(&id, index as u64, c)))
                    .await?;
            }
            if let Some(run) = self.active.get_mut(&id) {
                run.sent = run.sent.max(wf.checkpoints.len() as u64);
                run.since = index;
            }
            match wf.status {
                WorkflowStatus::Running => {
                    self.set_owner(&id, wf.owner == me).await?;
                    self.cancel_requested(&wf).await?;
                }
                WorkflowStatus::Cancelled => {
                    self.active.remove(&id);
                    self.node.release(&id, self.id);
                    self.send(SidecarMsg::WorkflowCancellation(WorkflowCancellation {
                        workflow_id: id.clone(),
                        reason: wf.error.clone(),
                        ..WorkflowCancellation::default()
                    }))
                    .await?;
                }
                WorkflowStatus::Completed | WorkflowStatus::Failed => {
                    self.active.remove(&id);
                    self.node.release(&id, self.id);
                    if let Some(r) = self.replica_results.remove(&id) {
                        self.compare_with_owner(&wf, &r);
                    }
                }
                // Back to pending (its owner was removed): it keeps its
                // place here and resumes when placed again.
                _ => {}
            }
        }
        self.dispatch_all().await
    }

    /// True when the app can read `wf`'s history: its protocol is at least
    /// the one the history needs.
    fn reads(&self, wf: &Workflow) -> bool {
        let needed = wf.protocol_needed();
        if self.protocol >= needed {
            return true;
        }
        tracing::warn!(
            workflow = %wf.id,
            session = self.id,
            app_protocol = self.protocol,
            needed,
            "this workflow's history needs a newer app protocol than the app declared (failed or out-of-order steps need 2, timers 3, cancel deliveries 4, event waits 5, status values 6, cancelled waits 7): it is left to apps that read it (upgrade the SDK)"
        );
        false
    }

    /// Stops running a workflow whose history this app cannot read any
    /// more (a newer app on another node recorded a failed step or a timer).
    fn drop_unreadable(&mut self, workflow_id: &str) {
        tracing::warn!(
            workflow = %workflow_id,
            session = self.id,
            app_protocol = self.protocol,
            "the workflow's history now has entries this app's protocol cannot read (failed or out-of-order steps need 2, timers 3, cancel deliveries 4, event waits 5, status values 6, cancelled waits 7): it stops receiving it (upgrade the SDK)"
        );
        self.active.remove(workflow_id);
        self.node.release(workflow_id, self.id);
    }

    /// Tells the app its ownership of an active workflow, when it changed.
    async fn set_owner(&mut self, workflow_id: &str, is_owner: bool) -> Result<(), End> {
        let Some(run) = self.active.get_mut(workflow_id) else {
            return Ok(());
        };
        if run.is_owner == is_owner {
            return Ok(());
        }
        run.is_owner = is_owner;
        if is_owner {
            tracing::info!(workflow = %workflow_id, "this node took over the workflow");
        }
        self.send(SidecarMsg::OwnershipChange(OwnershipChange {
            workflow_id: workflow_id.to_owned(),
            is_owner,
        }))
        .await
    }

    pub(super) async fn on_event(&mut self, at: &EventAt) -> Result<(), End> {
        let me = self.node.id();
        // Events already reflected in the execute request of a workflow are
        // stale for it: acting on them would, say, tell the owner it is not
        // the owner any more.
        let stale = |id: &str| self.active.get(id).is_some_and(|run| at.index <= run.since);
        match &at.event {
            Event::WorkflowRunning { workflow_id, owner } => {
                if stale(workflow_id) {
                    return Ok(());
                }
                if self.active.contains_key(workflow_id) {
                    // Placed again (it had gone back to pending).
                    return self.set_owner(workflow_id, *owner == me).await;
                }
                self.dispatch_one(workflow_id).await
            }
            Event::CheckpointCommitted {
                workflow_id,
                history_index,
                entry,
            } => {
                let Some(run) = self.active.get_mut(workflow_id) else {
                    return Ok(());
                };
                // The execute request may already have carried this entry.
                if *history_index < run.sent {
                    return Ok(());
                }
                run.sent = history_index + 1;
                if self.protocol < entry.protocol_at(*history_index) {
                    self.drop_unreadable(workflow_id);
                    return Ok(());
                }
                self.send(SidecarMsg::CheckpointEvent(event_of(
                    workflow_id,
                    *history_index,
                    entry,
                )))
                .await
            }
            Event::WorkflowCancelled {
                workflow_id,
                reason,
            } => {
                if stale(workflow_id) || self.active.remove(workflow_id).is_none() {
                    return Ok(());
                }
                self.node.release(workflow_id, self.id);
                self.send(SidecarMsg::WorkflowCancellation(WorkflowCancellation {
                    workflow_id: workflow_id.clone(),
                    reason: reason.clone(),
                    ..WorkflowCancellation::default()
                }))
                .await
            }
            Event::WorkflowCancelRequested { workflow_id, .. } => {
                if stale(workflow_id) {
                    return Ok(());
                }
                match self.node.workflow(workflow_id) {
                    Some(wf) => self.cancel_requested(&wf).await,
                    None => Ok(()),
                }
            }
            Event::WorkflowFinished { workflow_id, .. } => {
                if !stale(workflow_id) && self.active.remove(workflow_id).is_some() {
                    self.node.release(workflow_id, self.id);
                }
                if let Some(r) = self.replica_results.remove(workflow_id)
                    && let Some(wf) = self.node.workflow(workflow_id)
                {
                    self.compare_with_owner(&wf, &r);
                }
                Ok(())
            }
            Event::OwnerChanged {
                workflow_id, new, ..
            } => {
                if stale(workflow_id) {
                    return Ok(());
                }
                if *new == me
                    && let Some(r) = self.replica_results.remove(workflow_id)
                {
                    // This replica finished the run before the owner's result
                    // was committed, and the app has forgotten the run: the
                    // result it reported then is now the owner's. Without
                    // this the workflow stayed running with all its work done.
                    tracing::info!(workflow = %workflow_id, "this node took over a workflow its replica had finished; committing that result");
                    self.propose_result(r);
                    return Ok(());
                }
                if self.active.contains_key(workflow_id) {
                    self.set_owner(workflow_id, *new == me).await?;
                    // An older app that now owns a workflow whose cancel is
                    // requested has it finished (a newer one knows it).
                    return match self.node.workflow(workflow_id) {
                        Some(wf) if *new == me => self.cancel_requested(&wf).await,
                        _ => Ok(()),
                    };
                }
                if *new == me {
                    return self.dispatch_one(workflow_id).await;
                }
                Ok(())
            }
            Event::SessionsChanged => self.dispatch_all().await,
            Event::StateReplaced => self.resync().await,
            Event::WorkerRegistered { .. } | Event::PresenceChanged { .. } => Ok(()),
        }
    }
}
