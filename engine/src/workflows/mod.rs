//! Workflows: what the log means, and the work it drives.
//!
//! Holds the replicated state machine that applies committed commands, its
//! store of finished workflows, its snapshots and the events applying
//! produces (`state_machine/`); owner failover and the timer service,
//! which the leader runs (`failover.rs`, `timer_service.rs`); the node's workflow operations, start, wait, cancel,
//! read (`operations.rs`, `impl Node`), send events (`signals.rs`); the app protocol's session, one
//! per connected worker (`worker_session/`); the size limits on what apps
//! and clients send (`limits.rs`). A new leader-run service goes beside
//! `failover.rs`; a new replicated record in `state_machine/`.
//!
//! May import: `consensus/` (sessions and operations use the node), `node.rs`,
//! `config`, `error`. May not import: `api/`. The state machine imports
//! nothing outside `state_machine/` but `error` and `limits`: it is pure
//! apply, and knows neither the log nor who listens to its events.
//! `scripts/check_layout.py` checks it.

pub(crate) mod failover;
pub mod limits;
pub mod operations;
pub mod signals;
pub mod state_machine;
mod step_proposals;
pub(crate) mod timer_service;
pub(crate) mod worker_session;
