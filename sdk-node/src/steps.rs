//! The steps of one run, several in flight at once (branches joined with
//! `Promise.all`), and the way their outcomes reach JavaScript: in the order
//! the core hands them out.
//!
//! Why the order needs care. The core hands out a run's resolutions (a
//! committed value, a step's final failure) in commit order, each once the
//! code asked for it and every earlier one was handed out (the release rule).
//! The branch that receives a resolution first continues first, and so takes
//! the next step position first: that is what makes a replay take the same
//! positions as the live run. An async napi method resolves its promise
//! through a threadsafe function of its own, and the JS thread runs the calls
//! of different threadsafe functions in no promised order (each has its own
//! queue and async handle); promises resolved from different tokio tasks could
//! then reach the code out of order.
//!
//! So every outcome of a wait (`slot`, `commit`, `failStep`, `timer`) goes
//! through one FIFO per worker, [`Deliveries`], instead of a promise of its
//! own:
//!
//! - the task that waits on the core polls it with the run's hand-out lock
//!   held and queues the outcome before releasing the lock ([`InOrder`]), so
//!   a run's outcomes enter the FIFO in the order the core handed them out;
//! - JavaScript awaits one promise per batch (`waitDeliveries`) and takes the
//!   whole FIFO in one synchronous call (`takeDeliveries`), in order;
//! - `slotNow`, which may hand a value out synchronously on the JS thread,
//!   takes the same lock and answers null (wait) while an outcome of the run
//!   is queued and not yet taken, so a value never overtakes an earlier one
//!   still in the FIFO.
//!
//! The TypeScript context then hands each run's outcomes to the code one per
//! turn of the event loop, in that order (`ts/workflow.ts`).
//!
//! Durable timers (`ctx.sleep`) take a position like a step and resolve
//! when the cluster fires them, handed out in the same order:
//! `request_timer` takes the position on the JS thread, under the hand-out
//! lock, as `request` takes a step's (`WorkflowContext::request_timer`);
//! `timer` then waits for the firing on the addon's runtime
//! (`WorkflowContext::timer`), like a step's wait.
//!
//! `first` races positions the code took (sleeps, steps, event waits and
//! awakeables, their waits already started): `WorkflowContext::first_of` answers the index of the
//! one resolved first in commit order, delivered through the same FIFO.
//! The losers are abandoned by the core: their resolutions are skipped by
//! the release rule (a losing step's wait may then never be answered, or
//! answered once it commits), a losing timer is cancelled, and so is a
//! losing event wait (`EVENT_WAIT_CANCELLED`: an event it took goes back
//! to the workflow).
//!
//! Event waits (`ctx.waitEvent`) take a position the same way
//! (`request_event`, `WorkflowContext::request_event`), and `event` waits
//! on the addon's runtime for the cluster to resolve it: the event's
//! payload, or its timeout (`WorkflowContext::event`), handed out in the
//! same order.
//!
//! A status value (`ctx.setStatus`) takes a position the same way
//! (`request_status`, `WorkflowContext::request_status`, which also checks
//! the value's size), and `status` waits on the addon's runtime for its
//! commit, or finds it committed in a replay (`WorkflowContext::status`);
//! its resolution is handed out in the same order.
//!
//! An awakeable (`ctx.awakeable`) takes a position the same way
//! (`request_awakeable`, `WorkflowContext::awakeable`, which gives its id
//! at once), and is waited for like an event wait (`event`, on the
//! addon's runtime: `WorkflowContext::awakeable_value`): the value it was
//! resolved with, or the step failure it was rejected with, handed out in
//! the same order.
//!
//! A child workflow (`ctx.startChild`, `ctx.callChild`) takes a position
//! the same way (`request_child`, `WorkflowContext::request_child`, which
//! also gives the child's id at once), and `child` then starts it and waits
//! on the addon's runtime for its end (`WorkflowContext::child`): its
//! result, or its failure as a step's (`STEP_FAILED`), handed out in the
//! same order. With a second key, `child` also delivers the commit of the
//! child's start (`WorkflowContext::child_started`), which `startChild`
//! resolves with.
//!
//! Interruptions (a cancel request delivered into the code, or a cancel for
//! good) stop the step attempts running in JavaScript, which then ask for
//! their slots again (`slot`): the core answers `CANCELLED` where the
//! cancellation was delivered, a value committed meanwhile, or the attempt
//! to run again. An attempt handed out carries the run's count of
//! interruptions read *before* the hand-out (`NativeSlot.interrupts`), so
//! JavaScript knows which interruptions it must stop for: those counted
//! beyond it (`WorkflowContext::interrupted`, one watcher per run in
//! `ts/attempt.ts`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use raftoral_client::{
    ChildOptions, ChildRequest, ClientError, ComputeToken, Failure, RetryPolicy, Slot, SlotRequest,
    WorkflowContext,
};
use tokio::sync::Notify;

use crate::errors::to_js_err;

/// What the core answers a wait with.
type Outcome = Result<Answer, ClientError>;

/// A resolution from the core: a step's slot, a timer's firing, the
/// winner of a race, an event wait's payload (none: it timed out), or a
/// status value's commit.
enum Answer {
    Slot(Slot),
    Fired,
    First(usize),
    Event(Option<Bytes>),
    StatusSet,
}

/// A sleep whose position is taken (its future polled once) and whose
/// wait for the firing has not started yet.
type TimerWait = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// An event wait (or an awakeable: its value, never a timeout) whose
/// position is taken and whose wait has not started yet.
type EventWait = Pin<Box<dyn Future<Output = Result<Option<Bytes>, ClientError>> + Send>>;

/// A status value whose position is taken and whose commit is not waited
/// for yet.
type StatusWait = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// The answer to `slotNow` and of a delivered wait: the committed value, or
/// none when this replica must compute the step (then `seq` is its position
/// and `attempt` the attempt to run); for a `timer` wait, `fired`; for a
/// `firstOf` wait, `winner`; for an `event` wait, the event's payload as
/// `value`, or `timedOut`; for a `status` wait, nothing (the status is
/// committed).
#[napi(object)]
pub struct NativeSlot {
    /// The committed value to continue with; absent: compute, then `commit`
    /// (or `failStep` if the step's code throws). For an `event` wait: the
    /// event's encoded payload (possibly empty).
    pub value: Option<Buffer>,
    /// 0-based position of the checkpoint to compute.
    pub seq: Option<f64>,
    /// 1-based attempt to compute (more than 1 after failed attempts, also
    /// those of a previous owner).
    pub attempt: Option<u32>,
    /// True when the timer waited for fired (the outcome of a `timer`
    /// wait; absent otherwise). A timer that lost a race is resolved by
    /// its cancellation and answers `fired` too.
    pub fired: Option<bool>,
    /// The index (into the `seqs` of `firstOf`) of the operation resolved
    /// first in commit order (the outcome of a `firstOf` wait; absent
    /// otherwise).
    pub winner: Option<u32>,
    /// For an attempt to compute: the run's interruptions counted before
    /// it was handed out. An interruption beyond this count (`interrupted`)
    /// stops the attempt: its outcome is not wanted, ask for the slot again.
    pub interrupts: Option<f64>,
    /// True when the event wait's timeout passed before an event came (the
    /// outcome of an `event` wait without `value`; absent otherwise).
    pub timed_out: Option<bool>,
}

/// The outcome of one wait started with `key` (`slot`, `commit`,
/// `failStep`, `timer`, `firstOf`, `event`, `status`): a slot, or the error a native call
/// would have thrown.
#[napi(object)]
pub struct NativeDelivery {
    /// The key the wait was started with.
    pub key: u32,
    /// The slot: a committed value, or the attempt to compute.
    pub slot: Option<NativeSlot>,
    /// The message of the error to throw (the SDK's error details, as in
    /// the errors native calls throw); absent when `slot` is set.
    pub error: Option<String>,
}

/// A slot as it leaves the run: a value, or the attempt to compute (its
/// token stays with the run, for `commit` or `failStep`), a timer's
/// firing, the winner of a race, an event wait's timeout (a received
/// event is a `Value`: its payload), or a status value's commit.
enum Handed {
    Value(Bytes),
    Compute {
        seq: u64,
        attempt: u32,
        interrupts: u64,
    },
    Fired,
    First(u32),
    TimedOut,
    StatusSet,
}

impl From<Handed> for NativeSlot {
    fn from(h: Handed) -> Self {
        let none = NativeSlot {
            value: None,
            seq: None,
            attempt: None,
            fired: None,
            winner: None,
            interrupts: None,
            timed_out: None,
        };
        match h {
            Handed::Value(value) => NativeSlot {
                value: Some(value.to_vec().into()),
                ..none
            },
            Handed::Compute {
                seq,
                attempt,
                interrupts,
            } => NativeSlot {
                seq: Some(seq as f64),
                attempt: Some(attempt),
                interrupts: Some(interrupts as f64),
                ..none
            },
            Handed::Fired => NativeSlot {
                fired: Some(true),
                ..none
            },
            Handed::First(index) => NativeSlot {
                winner: Some(index),
                ..none
            },
            Handed::TimedOut => NativeSlot {
                timed_out: Some(true),
                ..none
            },
            Handed::StatusSet => none,
        }
    }
}

/// The outcomes of a worker's waits, in the order they were queued.
pub(crate) struct Deliveries {
    queue: Mutex<VecDeque<Delivered>>,
    /// Signalled at each push; a permit left behind only costs a look at an
    /// empty queue.
    ready: Notify,
}

struct Delivered {
    key: u32,
    /// Its run's count of queued outcomes not yet taken.
    untaken: Arc<AtomicUsize>,
    outcome: Result<Handed, ClientError>,
}

impl Deliveries {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Deliveries {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        })
    }

    fn push(&self, delivered: Delivered) {
        self.queue.lock().expect("lock").push_back(delivered);
        self.ready.notify_one();
    }

    /// Returns once an outcome is queued.
    pub(crate) async fn wait(&self) {
        loop {
            if !self.queue.lock().expect("lock").is_empty() {
                return;
            }
            self.ready.notified().await;
        }
    }

    /// Everything queued, in order. On the JS thread, which also runs
    /// `slotNow`: a run's count of untaken outcomes drops here, as its
    /// outcomes reach JavaScript.
    pub(crate) fn take(&self) -> Vec<NativeDelivery> {
        let taken: Vec<Delivered> = self.queue.lock().expect("lock").drain(..).collect();
        taken
            .into_iter()
            .map(|d| {
                d.untaken.fetch_sub(1, Ordering::SeqCst);
                match d.outcome {
                    Ok(handed) => NativeDelivery {
                        key: d.key,
                        slot: Some(handed.into()),
                        error: None,
                    },
                    Err(e) => NativeDelivery {
                        key: d.key,
                        slot: None,
                        error: Some(to_js_err(e).reason),
                    },
                }
            })
            .collect()
    }
}

/// The steps of one run.
pub(crate) struct Steps {
    context: WorkflowContext,
    deliveries: Arc<Deliveries>,
    /// Outcomes of this run queued in `deliveries` and not taken yet.
    untaken: Arc<AtomicUsize>,
    /// The steps asked for and not resolved, by seq. Its lock is also the
    /// run's hand-out lock: held while the core may hand a resolution out
    /// and until that resolution is queued (or returned by `slot_now`).
    open: Mutex<HashMap<u64, Open>>,
    /// Sleeps whose position is taken and whose wait is not started, by
    /// seq. Locked after `open` when both are.
    timers: Mutex<HashMap<u64, TimerWait>>,
    /// Event waits and awakeables whose position is taken and whose wait is
    /// not started, by seq. Locked after `open` when both are.
    events: Mutex<HashMap<u64, EventWait>>,
    /// Status values whose position is taken and whose commit is not
    /// waited for, by seq. Locked after `open` when both are.
    statuses: Mutex<HashMap<u64, StatusWait>>,
    /// Children whose position is taken and whose start is not sent yet,
    /// by seq. Locked after `open` when both are.
    children: Mutex<HashMap<u64, ChildRequest>>,
}

/// A step asked for and not resolved.
struct Open {
    req: SlotRequest,
    /// The permission to compute its current attempt, once handed out;
    /// spent by `commit` or `fail`.
    token: Option<ComputeToken>,
}

impl Steps {
    pub(crate) fn new(context: WorkflowContext, deliveries: Arc<Deliveries>) -> Arc<Self> {
        Arc::new(Steps {
            context,
            deliveries,
            untaken: Arc::new(AtomicUsize::new(0)),
            open: Mutex::new(HashMap::new()),
            timers: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
            children: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn context(&self) -> &WorkflowContext {
        &self.context
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().expect("lock")
    }

    /// Takes the next step position for a step named `name`.
    pub(crate) fn request(&self, name: &str) -> Result<u64, ClientError> {
        let mut open = self.lock();
        let req = self.context.request(name)?;
        let seq = req.seq();
        open.insert(seq, Open { req, token: None });
        Ok(seq)
    }

    /// The slot of step `seq` when it is decided now and no outcome of this
    /// run is queued ahead of it; `None`: wait with [`slot`](Self::slot).
    pub(crate) fn slot_now(&self, seq: u64) -> Result<Option<NativeSlot>, ClientError> {
        let mut open = self.lock();
        if self.untaken.load(Ordering::SeqCst) > 0 {
            return Ok(None);
        }
        let req = self.req(&open, seq)?;
        // Read before the hand-out: see `NativeSlot::interrupts`.
        let interrupts = self.context.interrupts();
        match self.context.try_slot(&req) {
            None => Ok(None),
            Some(outcome) => settle(&mut open, Some(seq), outcome.map(Answer::Slot), interrupts)
                .map(|h| Some(h.into())),
        }
    }

    /// Waits for the slot of step `seq`; the outcome is delivered with `key`.
    /// Also asks again after an interruption stopped the attempt handed out
    /// (its token is dropped: its outcome is not wanted).
    pub(crate) fn slot(self: &Arc<Self>, seq: u64, key: u32) -> Result<(), ClientError> {
        let req = {
            let mut open = self.lock();
            let req = self.req(&open, seq)?;
            if let Some(step) = open.get_mut(&seq) {
                step.token = None;
            }
            req
        };
        let context = self.context.clone();
        self.deliver_counted(Some(seq), key, async move {
            context.slot(&req).await.map(Answer::Slot)
        });
        Ok(())
    }

    /// Proposes `value` for the attempt of step `seq` handed out to compute;
    /// the committed value is delivered with `key`.
    pub(crate) fn commit(
        self: &Arc<Self>,
        seq: u64,
        value: Bytes,
        key: u32,
    ) -> Result<(), ClientError> {
        let token = self.token(seq, "commit")?;
        let context = self.context.clone();
        self.deliver(Some(seq), key, async move {
            context
                .commit(token, value)
                .await
                .map(|v| Answer::Slot(Slot::Committed(v)))
        });
        Ok(())
    }

    /// The attempt of step `seq` handed out to compute threw `failure`; the
    /// next attempt, another owner's value or the step's failure is
    /// delivered with `key`.
    pub(crate) fn fail(
        self: &Arc<Self>,
        seq: u64,
        failure: Failure,
        policy: RetryPolicy,
        key: u32,
    ) -> Result<(), ClientError> {
        let token = self.token(seq, "failStep")?;
        let context = self.context.clone();
        self.deliver_counted(Some(seq), key, async move {
            context
                .fail(token, failure, &policy)
                .await
                .map(Answer::Slot)
        });
        Ok(())
    }

    /// Takes the next position for a durable timer named `name` of
    /// `duration`, at once, and returns it (then [`timer`](Self::timer)).
    /// The core refuses a duration beyond its `MAX_TIMER` (366 days) here,
    /// before any position is taken, and a position whose history holds a
    /// step (non-determinism).
    pub(crate) fn request_timer(&self, name: &str, duration: Duration) -> Result<u64, ClientError> {
        // The hand-out lock, as `request` takes it: positions are taken
        // one at a time.
        let _open = self.lock();
        let req = self.context.request_timer(name, duration)?;
        let seq = req.seq();
        let context = self.context.clone();
        let wait: TimerWait = Box::pin(async move { context.timer(&req).await });
        self.timers.lock().expect("lock").insert(seq, wait);
        Ok(seq)
    }

    /// Waits for the timer at `seq` (from [`request_timer`](Self::request_timer))
    /// to fire; the firing (or the error) is delivered with `key`.
    pub(crate) fn timer(self: &Arc<Self>, seq: u64, key: u32) -> Result<(), ClientError> {
        let wait = self
            .timers
            .lock()
            .expect("lock")
            .remove(&seq)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "workflow '{}': timer {seq} was not requested, or is waited for already",
                    self.context.workflow_id()
                ))
            })?;
        self.deliver(
            Some(seq),
            key,
            async move { wait.await.map(|()| Answer::Fired) },
        );
        Ok(())
    }

    /// Takes the next position for a wait for the event `name`, with an
    /// optional timeout, at once, and returns it (then
    /// [`event`](Self::event)). The core refuses a timeout beyond its
    /// `MAX_TIMER` (366 days) here, before any position is taken, and a
    /// position whose history holds another operation or a wait for
    /// another name (non-determinism).
    pub(crate) fn request_event(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<u64, ClientError> {
        // The hand-out lock, as `request` takes it: positions are taken
        // one at a time.
        let _open = self.lock();
        let req = self.context.request_event(name, timeout)?;
        let seq = req.seq();
        let context = self.context.clone();
        let wait: EventWait = Box::pin(async move { context.event(&req).await });
        self.events.lock().expect("lock").insert(seq, wait);
        Ok(seq)
    }

    /// Waits for the event wait at `seq` (from
    /// [`request_event`](Self::request_event), or an awakeable from
    /// [`request_awakeable`](Self::request_awakeable)) to resolve; the
    /// payload, the timeout (or the error: an awakeable's rejection is
    /// `STEP_FAILED`) is delivered with `key`.
    pub(crate) fn event(self: &Arc<Self>, seq: u64, key: u32) -> Result<(), ClientError> {
        let wait = self
            .events
            .lock()
            .expect("lock")
            .remove(&seq)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "workflow '{}': event wait {seq} was not requested, or is waited for already",
                    self.context.workflow_id()
                ))
            })?;
        self.deliver(Some(seq), key, async move { wait.await.map(Answer::Event) });
        Ok(())
    }

    /// Takes the next position for setting the status `key` to the encoded
    /// `value`, at once, and returns it (then [`status`](Self::status)).
    /// The core refuses a value over its `MAX_STATUS_BYTES` (64 KiB) here,
    /// before any position is taken, and a position whose history holds
    /// another operation or key (non-determinism).
    pub(crate) fn request_status(&self, key: &str, value: Bytes) -> Result<u64, ClientError> {
        // The hand-out lock, as `request` takes it: positions are taken
        // one at a time.
        let _open = self.lock();
        let req = self.context.request_status(key, value)?;
        let seq = req.seq();
        let context = self.context.clone();
        let wait: StatusWait = Box::pin(async move { context.status(&req).await });
        self.statuses.lock().expect("lock").insert(seq, wait);
        Ok(seq)
    }

    /// Creates an awakeable at the next position, at once, and returns the
    /// position and the awakeable's id (then [`event`](Self::event), which
    /// delivers the value it is resolved with, or the step failure it is
    /// rejected with). A position whose history holds another operation is
    /// non-determinism.
    pub(crate) fn request_awakeable(&self) -> Result<(u64, String), ClientError> {
        // The hand-out lock, as `request` takes it: positions are taken
        // one at a time.
        let _open = self.lock();
        let req = self.context.awakeable()?;
        let seq = req.seq();
        let id = req.id().to_owned();
        let context = self.context.clone();
        let wait: EventWait =
            Box::pin(async move { context.awakeable_value(&req).await.map(Some) });
        self.events.lock().expect("lock").insert(seq, wait);
        Ok((seq, id))
    }

    /// Takes the next position for a child workflow of type `workflow`
    /// with the encoded `input`, at once, and returns the position and the
    /// child's id (then [`child`](Self::child)). The core refuses an empty
    /// id or the workflow's own here, before any position is taken, and a
    /// position whose history holds another operation or a child of another
    /// type (non-determinism).
    pub(crate) fn request_child(
        &self,
        workflow: &str,
        input: Bytes,
        options: &ChildOptions,
    ) -> Result<(u64, String), ClientError> {
        // The hand-out lock, as `request` takes it: positions are taken
        // one at a time.
        let _open = self.lock();
        let req = self.context.request_child(workflow, input, options)?;
        let (seq, id) = (req.seq(), req.id().to_owned());
        self.children.lock().expect("lock").insert(seq, req);
        Ok((seq, id))
    }

    /// Starts the child at `seq` (from [`request_child`](Self::request_child):
    /// the owner proposes its start once) and waits for its end; its result
    /// (or its failure, `STEP_FAILED`) is delivered with `key`. With
    /// `started_key`, the commit of its start (or the error that ended the
    /// wait first, such as `CANCELLED`) is delivered with that key too.
    pub(crate) fn child(
        self: &Arc<Self>,
        seq: u64,
        key: u32,
        started_key: Option<u32>,
    ) -> Result<(), ClientError> {
        let req = self
            .children
            .lock()
            .expect("lock")
            .remove(&seq)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "workflow '{}': child {seq} was not requested, or is waited for already",
                    self.context.workflow_id()
                ))
            })?;
        if let Some(started_key) = started_key {
            let (context, req) = (self.context.clone(), req.clone());
            self.deliver(Some(seq), started_key, async move {
                context
                    .child_started(&req)
                    .await
                    .map(|()| Answer::StatusSet)
            });
        }
        let context = self.context.clone();
        self.deliver(Some(seq), key, async move {
            context.child(&req).await.map(|v| Answer::Event(Some(v)))
        });
        Ok(())
    }

    /// Waits for the status value at `seq` (from
    /// [`request_status`](Self::request_status)) to be committed (a replay
    /// finds it committed); the commit (or the error) is delivered with
    /// `key`.
    pub(crate) fn status(self: &Arc<Self>, seq: u64, key: u32) -> Result<(), ClientError> {
        let wait = self
            .statuses
            .lock()
            .expect("lock")
            .remove(&seq)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "workflow '{}': status {seq} was not set, or is waited for already",
                    self.context.workflow_id()
                ))
            })?;
        self.deliver(Some(seq), key, async move {
            wait.await.map(|()| Answer::StatusSet)
        });
        Ok(())
    }

    /// Races the operations at positions `seqs` (sleeps, steps, event
    /// waits and awakeables taken and waited for): the index of the one
    /// resolved first in commit order, the same on every replica and in
    /// every replay, is delivered with `key` (`WorkflowContext::first_of`).
    /// The others are abandoned: a losing timer or event wait is cancelled
    /// (the wait ends once the cancellation is committed), a losing step
    /// runs on to its commit. An empty or
    /// repeated `seqs` is a usage error.
    pub(crate) fn first(self: &Arc<Self>, seqs: Vec<u64>, key: u32) -> Result<(), ClientError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(seq) = seqs.iter().find(|s| !seen.insert(**s)) {
            return Err(ClientError::Usage(format!(
                "workflow '{}': first() got the operation at position {seq} twice",
                self.context.workflow_id()
            )));
        }
        if seqs.is_empty() {
            return Err(ClientError::Usage(
                "first() needs at least one operation".into(),
            ));
        }
        let context = self.context.clone();
        self.deliver(None, key, async move {
            context.first_of(&seqs).await.map(Answer::First)
        });
        Ok(())
    }

    fn req(&self, open: &HashMap<u64, Open>, seq: u64) -> Result<SlotRequest, ClientError> {
        open.get(&seq).map(|o| o.req.clone()).ok_or_else(|| {
            ClientError::Usage(format!(
                "workflow '{}': step {seq} was not asked for, or is resolved already",
                self.context.workflow_id()
            ))
        })
    }

    fn token(&self, seq: u64, what: &str) -> Result<ComputeToken, ClientError> {
        self.lock()
            .get_mut(&seq)
            .and_then(|o| o.token.take())
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "workflow '{}': {what} of step {seq} without a slot to compute",
                    self.context.workflow_id()
                ))
            })
    }

    /// Runs `wait` on the addon's runtime and queues its outcome with `key`;
    /// `seq`: the step (or timer) it is the wait of, none for a race.
    fn deliver<F>(self: &Arc<Self>, seq: Option<u64>, key: u32, wait: F)
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        self.spawn(seq, key, false, wait);
    }

    /// [`deliver`](Self::deliver) for a wait that may hand out an attempt
    /// to compute: the run's interruptions are read before each poll, so
    /// the attempt carries the count from before its hand-out.
    fn deliver_counted<F>(self: &Arc<Self>, seq: Option<u64>, key: u32, wait: F)
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        self.spawn(seq, key, true, wait);
    }

    fn spawn<F>(self: &Arc<Self>, seq: Option<u64>, key: u32, counted: bool, wait: F)
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        napi::bindgen_prelude::spawn(InOrder {
            steps: self.clone(),
            seq,
            key,
            counted,
            wait: Box::pin(wait),
        });
    }
}

/// Notes what a step's outcome leaves behind: a token to compute with is
/// kept; a resolution or an error closes the step (`seq`: none for a
/// race, which closes nothing). `interrupts`: the run's interruptions
/// counted before the outcome was handed out.
fn settle(
    open: &mut HashMap<u64, Open>,
    seq: Option<u64>,
    outcome: Outcome,
    interrupts: u64,
) -> Result<Handed, ClientError> {
    match outcome {
        Ok(Answer::Slot(Slot::Compute(token))) => {
            let handed = Handed::Compute {
                seq: token.seq(),
                attempt: token.attempt(),
                interrupts,
            };
            if let Some(step) = seq.and_then(|seq| open.get_mut(&seq)) {
                step.token = Some(token);
            }
            Ok(handed)
        }
        Ok(Answer::Slot(Slot::Committed(value))) => {
            if let Some(seq) = seq {
                open.remove(&seq);
            }
            Ok(Handed::Value(value))
        }
        // A timer is not among the open steps.
        Ok(Answer::Fired) => Ok(Handed::Fired),
        Ok(Answer::First(index)) => Ok(Handed::First(index as u32)),
        // An event wait is not among the open steps either.
        Ok(Answer::Event(Some(payload))) => Ok(Handed::Value(payload)),
        Ok(Answer::Event(None)) => Ok(Handed::TimedOut),
        // Nor is a status value.
        Ok(Answer::StatusSet) => Ok(Handed::StatusSet),
        Err(e) => {
            if let Some(seq) = seq {
                open.remove(&seq);
            }
            Err(e)
        }
    }
}

/// A wait on the core whose outcome is queued for JavaScript before the
/// core can hand out the run's next one: each poll holds the run's hand-out
/// lock, and the poll that completes queues the outcome under it. The lock
/// is held only while polling (never across an await), and always taken
/// before the core's own, as `slot_now` does.
struct InOrder<F> {
    steps: Arc<Steps>,
    seq: Option<u64>,
    key: u32,
    /// Read the run's interruptions before each poll (a wait that may hand
    /// out an attempt to compute).
    counted: bool,
    wait: Pin<Box<F>>,
}

impl<F: Future<Output = Outcome>> Future for InOrder<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut open = this.steps.lock();
        // Read before the poll that may hand an attempt out, so no
        // interruption after the hand-out goes unnoticed; one between this
        // read and the hand-out stops the attempt for nothing (the slot is
        // asked for again), which costs a rerun at worst.
        let interrupts = if this.counted {
            this.steps.context.interrupts()
        } else {
            0
        };
        let Poll::Ready(outcome) = this.wait.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let outcome = settle(&mut open, this.seq, outcome, interrupts);
        // Counted before it can be taken (taking it uncounts it).
        this.steps.untaken.fetch_add(1, Ordering::SeqCst);
        this.steps.deliveries.push(Delivered {
            key: this.key,
            untaken: this.steps.untaken.clone(),
            outcome,
        });
        Poll::Ready(())
    }
}
