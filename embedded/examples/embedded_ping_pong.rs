//! ping_pong in embedded mode: a Raftoral node inside the app, no sidecar.
//!
//! ```text
//! cargo run -p raftoral --example embedded_ping_pong
//! ```

use raftoral::NodeConfig;
use raftoral_client::{WorkflowError, WorkflowRequest, checkpoint};
use raftoral_embedded::EmbeddedNode;

async fn ping_pong(req: WorkflowRequest) -> Result<Vec<u8>, WorkflowError> {
    let input: String = req.input()?;
    let ctx = req.context;
    let output: String = checkpoint!(ctx, "result", {
        if input == "ping" { "pong" } else { "ping" }.to_string()
    });
    Ok(serde_json::to_vec(&output)?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same settings as `raftoral serve`; add peers, a listen address and a
    // storage path for a durable cluster of embedded nodes.
    let node = EmbeddedNode::start(NodeConfig::default(), None).await?;
    let client = node.client();
    client.register_workflow("ping_pong", 1).await?;
    let worker = {
        let client = client.clone();
        tokio::spawn(async move { client.handle_workflows(ping_pong).await })
    };
    let answer: String = client
        .start_workflow("ping_pong", 1, "ping")
        .await?
        .result()
        .await?;
    println!("{answer}");
    node.shutdown().await;
    worker.await??;
    Ok(())
}
