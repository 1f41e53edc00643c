//! `NativeLocalNode`: a Raftoral node inside the Node.js process (the engine
//! is linked into the addon), for tests and single-process apps.

use std::path::PathBuf;
use std::sync::Mutex;

use napi_derive::napi;
use raftoral::NodeConfig;
use raftoral_client::ClientError;
use raftoral_embedded::EmbeddedNode;

use crate::client::NativeClient;
use crate::errors::{to_js_err, usage};

/// An in-process single-node cluster, in memory or on disk.
#[napi]
pub struct NativeLocalNode {
    node: Mutex<Option<EmbeddedNode>>,
}

#[napi]
impl NativeLocalNode {
    /// Starts a node with the engine's defaults; with `storagePath`, its
    /// Raft log and snapshots live in that directory (fsynced, created if
    /// missing) and a node started again on it resumes every workflow,
    /// otherwise it runs in memory.
    #[napi(factory)]
    pub async fn start(storage_path: Option<String>) -> napi::Result<Self> {
        crate::init_logging();
        let config = NodeConfig {
            storage_path: storage_path.filter(|p| !p.is_empty()).map(PathBuf::from),
            ..NodeConfig::default()
        };
        let node = EmbeddedNode::start_on_engine_runtime(config)
            .await
            .map_err(|e| usage(format!("cannot start the local node: {e}")))?;
        Ok(Self {
            node: Mutex::new(Some(node)),
        })
    }

    /// A client connected in-process (no gRPC for the app stream).
    #[napi]
    pub fn client(&self) -> napi::Result<NativeClient> {
        match &*self.node.lock().expect("lock") {
            Some(node) => Ok(NativeClient {
                inner: node.client(),
            }),
            None => Err(to_js_err(ClientError::Shutdown)),
        }
    }

    /// Stops the node; safe to call twice.
    #[napi]
    pub async fn shutdown(&self) {
        let node = self.node.lock().expect("lock").take();
        if let Some(node) = node {
            node.shutdown().await;
        }
    }
}
