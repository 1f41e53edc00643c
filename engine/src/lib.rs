//! Raftoral engine: durable workflows replicated by Raft.
//!
//! A [`Node`] runs one raft-rs group whose log holds workflow commands
//! (start, checkpoint, finish, cancel, worker registration); every node applies
//! them to the same [`StateMachine`]. [`WorkerSession`] speaks the app protocol
//! (`raftoral.sidecar.v1`) against a node and is shared by the sidecar (over
//! gRPC) and embedded apps (over an in-process channel, in the
//! `raftoral-embedded` crate).
//!
//! The engine has three parts, one folder each, and imports flow down:
//!
//! - [`api`]: how the world reaches a node (client calls, the node-to-node
//!   service, probes, metrics, gRPC statuses);
//! - [`workflows`]: what the log means (the state machine, failover,
//!   workflow operations, app sessions, limits);
//! - [`consensus`]: one durable, ordered log on every node (the Raft loop,
//!   storage, snapshots, membership, reads, transport, TLS).
//!
//! `node.rs` ties them together into a [`Node`]; `config.rs` and `error.rs`
//! are shared by all. `scripts/check_layout.py` checks that no two files
//! import each other and that no layer imports one above it.

pub mod api;
mod config;
pub mod consensus;
mod error;
mod node;
mod shutdown;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod store_fault_tests;
pub mod workflows;

pub use api::client::ClientApi;
pub use api::cluster::ClusterApi;
pub use api::status::to_status;
pub use config::NodeConfig;
pub use consensus::raft_loop::RaftStatus;
pub use error::{EngineError, Rejection, status_name};
pub use node::{ListFilter, Node, Started};
pub use workflows::operations::StartOptions;
pub use workflows::signals::{Signal, Signalled, SignalledWithStart};
pub use workflows::state_machine::{
    Applied, Archive, ArchiveError, Checkpoint, Event, EventAt, NodeId, PageFilter, RestoreError,
    StateMachine, Workflow, is_terminal,
};
pub use workflows::worker_session::{SessionEnd, SessionStream, WorkerSession, serve_app_stream};

pub use raftoral_proto as proto;
