//! Raftoral SDK for Rust.
//!
//! Connect to a Raftoral sidecar, register workflows and run them; every
//! checkpoint is committed through Raft before the code goes on, so a workflow
//! survives the loss of its app or node and resumes by replay.
//!
//! - [`RaftoralClient`]: connection, worker loop and client calls.
//! - [`WorkflowContext`] with [`checkpoint!`] / [`checkpoint_compute!`].
//! - [`WorkerCore`]: the FFI-friendly checkpoint core the Python and Node
//!   SDKs bind.

mod children;
mod client;
mod context;
mod core;
mod determinism;
mod error;
mod execute;
mod hand_over;
mod handle;
mod history;
mod link;
mod messages;
mod outbound;
mod race;
mod retry;
mod security;
mod signals;
mod start_options;
mod stream;

pub use children::{ChildHandle, ChildOptions, ParentClose};
pub use client::{RaftoralClient, WorkflowRequest};
pub use context::{WorkflowContext, WorkflowLog};
pub use core::{
    AwakeableRequest, ChildRequest, ComputeToken, EventRequest, MAX_STATUS_BYTES, MAX_TIMER,
    PROTOCOL_VERSION, RunHandle, Slot, SlotRequest, StatusRequest, TimerRequest, WorkerCore,
};
pub use determinism::NOW_STEP;
pub use error::{ClientError, StepError, StepFailure, WorkflowError};
pub use hand_over::{RunOutcome, RunReply, binding_runtime};
pub use handle::WorkflowHandle;
pub use link::{GrpcLink, ResponseStream, SidecarLink};
pub use race::{Durable, Either};
pub use raftoral_proto::freeze::FreezeWatch;
pub use raftoral_proto::sidecar::v1::{ErrorCode, Failure, WorkflowInfo, WorkflowStatus};
pub use retry::{ATTEMPT_TIMEOUT, RetryPolicy};
pub use security::{AppToken, ClientTls};
pub use signals::Signal;
pub use start_options::StartOptions;
pub use stream::StreamOptions;

pub use raftoral_proto as proto;
