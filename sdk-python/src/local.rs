//! `LocalNode`: a Raftoral node inside the Python process (the engine is
//! linked into the extension), for tests and single-process apps.

use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use raftoral::NodeConfig;
use raftoral::embedded::EmbeddedNode;

use crate::client::Client;
use crate::errors::to_py_err;

/// An in-process, in-memory single-node cluster.
#[pyclass(frozen, module = "raftoral._core")]
pub struct LocalNode {
    node: Mutex<Option<EmbeddedNode>>,
}

#[pymethods]
impl LocalNode {
    /// Starts a node with the engine's defaults and no storage.
    #[staticmethod]
    fn start(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        crate::future::into_py(py, async move {
            let node = EmbeddedNode::start(NodeConfig::default(), None)
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
