//! Generated protocol types for Raftoral.
//!
//! The `.proto` files in this crate's directory are the contract; this crate is
//! generated from them at build time and never edited by hand.
//!
//! - [`sidecar::v1`]: the app stream ([`sidecar::v1::app_service_client`]) and the
//!   client API ([`sidecar::v1::workflow_service_client`]).
//! - [`cluster::v1`]: the commands stored in the Raft log.
//! - [`cancel`]: the mark of a delivered cancel request in a history.
//! - [`freeze`]: the rule both ends of the app stream keep after this
//!   process was stopped (drop what the stream holds and reconnect).
//!
//! ```
//! use raftoral_proto::sidecar::v1::RegisterWorkflowRequest;
//! let r = RegisterWorkflowRequest {
//!     workflow_name: "ping_pong".into(),
//!     version: 1,
//!     held_runs: Vec::new(),
//!     protocol_version: 2,
//! };
//! assert_eq!(r.version, 1);
//! ```

/// The public API spoken on the sidecar's localhost port.
pub mod sidecar {
    /// Version 1 of the sidecar API.
    // Generated code: its doc comments are the .proto comments verbatim, so
    // clippy's doc-formatting lints do not apply.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("raftoral.sidecar.v1");
    }
}

/// Node-to-node protocol and the replicated log format.
pub mod cluster {
    /// Version 1 of the cluster protocol.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("raftoral.cluster.v1");
    }
}

pub mod awakeable;
pub mod cancel;
pub mod freeze;

pub use prost;
pub use prost_types;
