//! `NativeLocalNode`: a Raftoral node inside the Node.js process (the engine
//! is linked into the addon), for tests and single-process apps.

use std::sync::Mutex;

use napi_derive::napi;
use raftoral::NodeConfig;
use raftoral_client::ClientError;
use raftoral_embedded::EmbeddedNode;

use crate::client::NativeClient;
use crate::errors::{to_js_err, usage};

/// An in-process, in-memory single-node cluster.
#[napi]
pub struct NativeLocalNode {
    node: Mutex<Option<EmbeddedNode>>,
}

#[napi]
impl NativeLocalNode {
    /// Starts a node with the engine's defaults and no storage.
    #[napi(factory)]
    pub async fn start() -> napi::Result<Self> {
        crate::init_logging();
        let node = EmbeddedNode::start_on_engine_runtime(NodeConfig::default())
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
