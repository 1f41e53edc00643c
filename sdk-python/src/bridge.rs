//! `CommitBridge` and `RunBridge`: commit results and workflow runs handed
//! to asyncio without the GIL.
//!
//! Awaiting a Rust future through pyo3-async-runtimes costs, per await, two
//! tokio spawns, a blocking thread that takes the GIL, and
//! `call_soon_threadsafe`; under load that was most of what the binding
//! added to a checkpoint (a commit) and to a workflow (its run). Both take a
//! shorter path: the tokio task that has the item pushes it onto a queue
//! and, when the queue was empty, writes one byte to a socket the event loop
//! watches (`loop.add_reader`). The loop's callback drains the queue. No
//! Rust thread ever takes the GIL; Python objects (values, exceptions, runs)
//! are made on the loop's thread.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use raftoral_client::{ClientError, Slot};

use crate::errors::to_py_err;
use crate::worker::{Run, slot_to_py};

/// What a wait hands asyncio: a commit's committed value, or (after a
/// failed step) the next attempt's token or another owner's value; or the
/// winner of a race (`Run.first_to`); or a run's interruption
/// (`Run.interrupted_to`); or an event wait's resolution (`Run.event_to`);
/// or the error to raise.
type Outcome = Result<Handed, ClientError>;

/// A successful outcome.
pub(crate) enum Handed {
    /// A slot (committed bytes, or a compute token).
    Slot(Slot),
    /// The index of a race's winner (a Python `int`).
    Winner(usize),
    /// A run's interruption: `(reason, count)` (a Python tuple), or `None`
    /// when the run ended first.
    Interrupted(Option<(String, u64)>),
    /// An event wait's resolution: the payload (Python `bytes`), or `None`
    /// when its timeout passed first.
    Event(Option<Bytes>),
}

impl From<Slot> for Handed {
    fn from(slot: Slot) -> Self {
        Handed::Slot(slot)
    }
}

/// A queue of `T` for one event loop, and the socket that wakes it.
struct Queue<T> {
    items: Mutex<Items<T>>,
    /// Written (one byte) when `items` goes from empty to not empty.
    wake: UnixStream,
    /// What the event loop watches.
    watched: UnixStream,
}

struct Items<T> {
    queued: Vec<T>,
    /// No more items will come.
    closed: bool,
}

impl<T> Queue<T> {
    fn new() -> PyResult<Self> {
        let (wake, watched) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(Queue {
            items: Mutex::new(Items {
                queued: Vec::new(),
                closed: false,
            }),
            wake,
            watched,
        })
    }

    /// Adds `item` (or, with `None`, closes the queue) and wakes the loop
    /// when nothing was waiting; from any thread.
    fn push(&self, item: Option<T>) {
        let first = {
            let mut items = self.items.lock().expect("bridge lock");
            let was_empty = items.queued.is_empty() && !items.closed;
            match item {
                Some(item) => items.queued.push(item),
                None => items.closed = true,
            }
            was_empty
        };
        if first {
            // WouldBlock: bytes are waiting already, so a wake-up is due.
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// What was queued since the last call, and whether the queue is
    /// closed.
    fn drain(&self) -> (Vec<T>, bool) {
        // Bytes first, then the queue: a push after this read writes again.
        // A read shorter than the buffer emptied the socket; reading on to
        // WouldBlock would cost a system call per hand-over for nothing.
        let mut buf = [0u8; 256];
        loop {
            match (&self.watched).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut items = self.items.lock().expect("bridge lock");
        (std::mem::take(&mut items.queued), items.closed)
    }

    fn fileno(&self) -> i32 {
        self.watched.as_raw_fd()
    }
}

/// The queue of finished commits of one event loop (the worker's).
#[pyclass(frozen, module = "raftoral._core")]
pub struct CommitBridge {
    queue: Arc<Queue<(u64, Outcome)>>,
}

impl CommitBridge {
    /// A handle tokio tasks use to hand outcomes over.
    pub(crate) fn sender(&self) -> CommitSender {
        CommitSender(self.queue.clone())
    }
}

/// Hands one outcome to the bridge from any thread.
pub(crate) struct CommitSender(Arc<Queue<(u64, Outcome)>>);

impl CommitSender {
    pub(crate) fn send<T: Into<Handed>>(&self, id: u64, outcome: Result<T, ClientError>) {
        self.0.push(Some((id, outcome.map(Into::into))));
    }

    /// The winner of a race (its index), or the error.
    pub(crate) fn send_winner(&self, id: u64, outcome: Result<usize, ClientError>) {
        self.0.push(Some((id, outcome.map(Handed::Winner))));
    }

    /// A run's interruption (reason and new count), or `None`: the run
    /// ended first.
    pub(crate) fn send_interrupted(&self, id: u64, interruption: Option<(String, u64)>) {
        self.0
            .push(Some((id, Ok(Handed::Interrupted(interruption)))));
    }

    /// An event wait's payload, `None` on timeout, or the error.
    pub(crate) fn send_event(&self, id: u64, outcome: Result<Option<Bytes>, ClientError>) {
        self.0.push(Some((id, outcome.map(Handed::Event))));
    }
}

#[pymethods]
impl CommitBridge {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(CommitBridge {
            queue: Arc::new(Queue::new()?),
        })
    }

    /// The file descriptor to watch for readability.
    fn fileno(&self) -> i32 {
        self.queue.fileno()
    }

    /// The finished commits since the last call: `(id, ok, value)` with the
    /// committed bytes (or, after a failed attempt, the next attempt's
    /// `ComputeToken`; for a race, the winner's index; for an interruption,
    /// `(reason, count)` or None; for an event wait, the payload or None)
    /// when `ok`, else the exception to raise.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, bool, Bound<'py, PyAny>)>> {
        let (done, _) = self.queue.drain();
        done.into_iter()
            .map(|(id, outcome)| match outcome {
                Ok(Handed::Slot(slot)) => Ok((id, true, slot_to_py(py, slot)?)),
                Ok(Handed::Winner(index)) => Ok((id, true, index.into_pyobject(py)?.into_any())),
                Ok(Handed::Interrupted(interruption)) => {
                    Ok((id, true, interruption.into_pyobject(py)?.into_any()))
                }
                Ok(Handed::Event(Some(payload))) => {
                    Ok((id, true, PyBytes::new(py, &payload).into_any()))
                }
                Ok(Handed::Event(None)) => Ok((id, true, py.None().into_bound(py))),
                Err(e) => Ok((
                    id,
                    false,
                    to_py_err(e).into_value(py).into_bound(py).into_any(),
                )),
            })
            .collect()
    }
}

/// The workflow runs the core hands to one event loop (the worker's), in
/// the order it started them. Unbounded: what waits here is at most the
/// workflows placed on this app, each a small Rust value until drained.
#[pyclass(frozen, module = "raftoral._core")]
pub struct RunBridge {
    queue: Arc<Queue<Run>>,
}

impl RunBridge {
    /// A handle the worker's forwarding task pushes runs with.
    pub(crate) fn sender(&self) -> RunSender {
        RunSender(self.queue.clone())
    }
}

/// Hands runs to the bridge from any thread; dropping it closes the bridge.
pub(crate) struct RunSender(Arc<Queue<Run>>);

impl RunSender {
    pub(crate) fn send(&self, run: Run) {
        self.0.push(Some(run));
    }
}

impl Drop for RunSender {
    fn drop(&mut self) {
        self.0.push(None);
    }
}

#[pymethods]
impl RunBridge {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(RunBridge {
            queue: Arc::new(Queue::new()?),
        })
    }

    /// The file descriptor to watch for readability.
    fn fileno(&self) -> i32 {
        self.queue.fileno()
    }

    /// The runs handed over since the last call, and whether the core has
    /// stopped handing any (the worker shut down).
    fn drain(&self, py: Python<'_>) -> PyResult<(Vec<Py<Run>>, bool)> {
        let (runs, closed) = self.queue.drain();
        let runs = runs
            .into_iter()
            .map(|run| Py::new(py, run))
            .collect::<PyResult<_>>()?;
        Ok((runs, closed))
    }
}
