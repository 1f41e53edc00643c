//! Raftoral engine: durable workflows replicated by Raft.
//!
//! A [`Node`] runs one raft-rs group whose log holds workflow commands
//! (start, checkpoint, finish, cancel, worker registration); every node applies
//! them to the same [`StateMachine`]. [`WorkerSession`] speaks the app protocol
//! (`raftoral.sidecar.v1`) against a node and is shared by the sidecar (over
//! gRPC) and embedded apps (over an in-process channel).

mod client_api;
mod cluster_api;
mod config;
pub mod embedded;
mod error;
mod event;
mod failover;
mod flush_thread;
pub mod limits;
mod membership;
pub mod metrics;
mod node;
pub mod probes;
mod raft_guard;
mod raft_log;
mod raft_loop;
mod read_index;
pub mod snapshot_transfer;
mod startup;
mod state_machine;
mod status;
pub mod storage;
#[cfg(test)]
mod store_fault_tests;
pub mod tls;
pub mod transport;
mod worker_session;
mod workflow_ops;

pub use client_api::ClientApi;
pub use cluster_api::ClusterApi;
pub use config::NodeConfig;
pub use error::{EngineError, Rejection, status_name};
pub use event::{Event, EventAt};
pub use node::{ListFilter, Node, Started};
pub use raft_loop::RaftStatus;
pub use state_machine::{
    Applied, Archive, ArchiveError, Checkpoint, NodeId, PageFilter, RestoreError, StateMachine,
    Workflow, is_terminal,
};
pub use status::to_status;
pub use worker_session::{SessionEnd, SessionStream, WorkerSession, serve_app_stream};

pub use raftoral_proto as proto;
