//! Awakeables (app.proto "Awakeables"): a durable future of a workflow that
//! anyone holding its id completes once through the client API. Both ends
//! derive the same names from a position, so this lives beside the protos.
//!
//! An awakeable at position `seq` of workflow `W` has the id
//! `awk/{seq}/{W}` (readable, and parsed without escaping: the workflow id
//! is everything after the second `/`), and is an event wait for the
//! reserved event name `raftoral.awakeable.{seq}`; completing it sends that
//! event once (its idempotency key is the name).

/// Prefix of the event names reserved for awakeables; user events may not
/// use it.
pub const EVENT_PREFIX: &str = "raftoral.awakeable.";

/// The id of the awakeable at position `seq` of `workflow_id`.
///
/// ```
/// use raftoral_proto::awakeable::{id, parse};
/// assert_eq!(id("order/7", 3), "awk/3/order/7");
/// assert_eq!(parse("awk/3/order/7"), Some(("order/7".to_owned(), 3)));
/// assert_eq!(parse("awk/x/w"), None);
/// ```
pub fn id(workflow_id: &str, seq: u64) -> String {
    format!("awk/{seq}/{workflow_id}")
}

/// The (workflow id, position) of an awakeable id; `None` when malformed.
pub fn parse(id: &str) -> Option<(String, u64)> {
    let rest = id.strip_prefix("awk/")?;
    let (seq, workflow_id) = rest.split_once('/')?;
    if workflow_id.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((workflow_id.to_owned(), seq.parse().ok()?))
}

/// The reserved event name of the awakeable at position `seq`.
pub fn event_name(seq: u64) -> String {
    format!("{EVENT_PREFIX}{seq}")
}
