//! Generates the Rust protocol code from the `.proto` files beside this crate.
//! `protox` parses them in pure Rust, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "raftoral/sidecar/v1/failure.proto",
        "raftoral/sidecar/v1/app.proto",
        "raftoral/sidecar/v1/workflow_service.proto",
        "raftoral/cluster/v1/command.proto",
        "raftoral/cluster/v1/snapshot.proto",
        "raftoral/cluster/v1/cluster_service.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .compile_well_known_types(false)
        // Values are shared by every session that receives them: `Bytes` makes
        // those copies reference counts instead of memcpy.
        .bytes(".")
        // Every command travels by value through the Raft loop's queue: a
        // signal-with-start's event (with its optional failure) boxed keeps
        // the common command small.
        .boxed(".raftoral.cluster.v1.StartWorkflow.signal")
        // Likewise a child workflow's start, on the few steps that have one.
        .boxed(".raftoral.cluster.v1.RecordStep.child")
        .compile_fds(descriptors)?;
    Ok(())
}
