//! Consensus: everything that makes one ordered, durable log on every node.
//!
//! Holds the Raft loop that drives raft-rs (`raft_loop.rs`) and what it
//! hands work to (the proposals it takes, `proposal.rs`, stamped by
//! `log_clock.rs`; the thread that
//! flushes the state store, `flush_thread.rs`), the checks on Raft messages
//! from the network (`raft_guard.rs`), raft-rs's log bridged into `tracing`
//! (`raft_log.rs`), the pause points of background work that the
//! simulation interleaves with the loop (`pause.rs`), opening a node's group at start (`startup.rs`), the log
//! store and write-ahead log (`storage/`), snapshots sent between nodes
//! (`snapshot_transfer/`), the node-to-node transport (`transport.rs`) and
//! its TLS (`tls/`). The node's consensus operations sit here too, as
//! `impl Node` blocks: membership changes (`membership.rs`) and
//! linearizable reads (`read_index.rs`).
//!
//! May import: the workflow state machine (what the log applies to) and the
//! leader's workflow services (`workflows::failover`), `config`, `error`.
//! May not import: `api/`, the workflows' operations and sessions, or
//! `node.rs` (except `membership.rs` and `read_index.rs`, which extend
//! `Node`). `scripts/check_layout.py` checks it.

pub(crate) mod environment;
pub(crate) mod flush_thread;
pub(crate) mod log_clock;
pub(crate) mod membership;
pub(crate) mod pause;
pub(crate) mod proposal;
pub(crate) mod raft_guard;
pub(crate) mod raft_log;
pub(crate) mod raft_loop;
pub(crate) mod read_index;
pub mod recovery;
pub mod snapshot_transfer;
pub mod startup;
pub mod storage;
pub mod tls;
pub mod transport;
