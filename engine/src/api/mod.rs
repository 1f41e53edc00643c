//! The engine's APIs: how the world outside a node reaches it.
//!
//! Holds the client API as plain calls (`client.rs`: start, get, wait,
//! cancel, list, history), the node-to-node gRPC service (`cluster.rs`:
//! Raft messages, snapshots, join, remove, transfer), engine errors as gRPC
//! statuses (`status.rs`), liveness and readiness (`probes.rs`) and
//! Prometheus metrics (`metrics.rs`). A new client call goes in
//! `client.rs`, with its engine side in `workflows/operations.rs`.
//!
//! May import everything below it (`node.rs`, `consensus/`, `workflows/`);
//! nothing in the engine imports `api/` but `lib.rs` and tests.
//! `scripts/check_layout.py` checks it.

pub(crate) mod client;
pub(crate) mod cluster;
pub mod metrics;
pub mod probes;
pub(crate) mod status;
