//! `CommitBridge`: commit results handed to asyncio without the GIL.
//!
//! Awaiting a Rust future through pyo3-async-runtimes costs, per await, two
//! tokio spawns, a blocking thread that takes the GIL, and
//! `call_soon_threadsafe`; under load that was most of what the binding
//! added to a checkpoint. A commit is the one await of every step, so it
//! takes a shorter path: the tokio task that waits for the commit pushes the
//! outcome onto a queue and, when the queue was empty, writes one byte to a
//! socket the event loop watches (`loop.add_reader`). The loop's callback
//! drains the queue and resolves the futures. No Rust thread ever takes the
//! GIL; Python objects (values, exceptions) are made on the loop's thread.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use raftoral_client::ClientError;

use crate::errors::to_py_err;

type Outcome = Result<Bytes, ClientError>;

struct Shared {
    done: Mutex<Vec<(u64, Outcome)>>,
    /// Written (one byte) when `done` goes from empty to not empty.
    wake: UnixStream,
    /// What the event loop watches.
    watched: UnixStream,
}

/// The queue of finished commits of one event loop (the worker's).
#[pyclass(frozen, module = "raftoral._core")]
pub struct CommitBridge {
    shared: Arc<Shared>,
}

impl CommitBridge {
    /// A handle tokio tasks use to hand outcomes over.
    pub(crate) fn sender(&self) -> CommitSender {
        CommitSender(self.shared.clone())
    }
}

/// Hands one outcome to the bridge from any thread.
pub(crate) struct CommitSender(Arc<Shared>);

impl CommitSender {
    pub(crate) fn send(&self, id: u64, outcome: Outcome) {
        let first = {
            let mut done = self.0.done.lock().expect("bridge lock");
            done.push((id, outcome));
            done.len() == 1
        };
        if first {
            // WouldBlock: bytes are waiting already, so a wake-up is due.
            let _ = (&self.0.wake).write(&[1]);
        }
    }
}

#[pymethods]
impl CommitBridge {
    #[new]
    fn new() -> PyResult<Self> {
        let (wake, watched) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(CommitBridge {
            shared: Arc::new(Shared {
                done: Mutex::new(Vec::new()),
                wake,
                watched,
            }),
        })
    }

    /// The file descriptor to watch for readability.
    fn fileno(&self) -> i32 {
        self.shared.watched.as_raw_fd()
    }

    /// The finished commits since the last call: `(id, ok, value)` with the
    /// committed bytes when `ok`, else the exception to raise.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, bool, Bound<'py, PyAny>)>> {
        // Bytes first, then the queue: a push after this read writes again.
        let mut buf = [0u8; 256];
        loop {
            match (&self.shared.watched).read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let done = std::mem::take(&mut *self.shared.done.lock().expect("bridge lock"));
        Ok(done
            .into_iter()
            .map(|(id, outcome)| match outcome {
                Ok(value) => (id, true, PyBytes::new(py, &value).into_any()),
                Err(e) => (
                    id,
                    false,
                    to_py_err(e).into_value(py).into_bound(py).into_any(),
                ),
            })
            .collect())
    }
}
