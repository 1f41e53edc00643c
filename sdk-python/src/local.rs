//! `LocalNode`: a Raftoral node inside the Python process (the engine is
//! linked into the extension), for tests and single-process apps.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral::NodeConfig;
use raftoral_embedded::EmbeddedNode;

use crate::client::Client;
use crate::errors::to_py_err;

/// An in-process single-node cluster, in memory or on disk.
#[pyclass(frozen, module = "raftoral._core")]
pub struct LocalNode {
    node: Mutex<Option<EmbeddedNode>>,
}

#[pymethods]
impl LocalNode {
    /// Starts a node with the engine's defaults; with `storage_path`, its
    /// Raft log and snapshots live there (fsynced) and a restart on the same
    /// path resumes every workflow, otherwise it runs in memory.
    #[staticmethod]
    #[pyo3(signature = (storage_path = None))]
    fn start(py: Python<'_>, storage_path: Option<PathBuf>) -> PyResult<Bound<'_, PyAny>> {
        let config = NodeConfig {
            storage_path,
            ..NodeConfig::default()
        };
        crate::future::into_py(py, async move {
            let node = EmbeddedNode::start_on_engine_runtime(config)
                .await
                .map_err(|e| {
                    PyRuntimeError::new_err(format!("cannot start the local node: {e}"))
                })?;
            Ok(LocalNode {
                node: Mutex::new(Some(node)),
            })
        })
    }

    /// A client connected in-process (no gRPC for the app stream).
    fn client(&self) -> PyResult<Client> {
        match &*self.node.lock().expect("lock") {
            Some(node) => Ok(Client {
                inner: node.client(),
            }),
            None => Err(to_py_err(raftoral_client::ClientError::Shutdown)),
        }
    }

    /// Stops the worker and the node; safe to call twice.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node.lock().expect("lock").take();
        crate::future::into_py(py, async move {
            if let Some(node) = node {
                node.shutdown().await;
            }
            Ok(())
        })
    }
}
