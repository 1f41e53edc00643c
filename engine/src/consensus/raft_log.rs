//! Bridges raft-rs's `slog` logging into `tracing`, so the whole process has one
//! log pipeline and one filter (`RUST_LOG`, target `raft`).

use std::fmt::{self, Write as _};

use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};

/// A `slog` logger whose records become `tracing` events with target `raft`.
pub fn logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("node" => node_id))
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = KvText(String::new());
        // Formatting into a String cannot fail; a failed KV is simply dropped.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let fields = fields.0;
        // raft-rs logs elections and role changes at info; they are useful but
        // noisy on a busy node, so they land at debug in our pipeline.
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", "{}{fields}", record.msg())
            }
            Level::Warning => tracing::warn!(target: "raft", "{}{fields}", record.msg()),
            Level::Info => tracing::debug!(target: "raft", "{}{fields}", record.msg()),
            Level::Debug | Level::Trace => {
                tracing::trace!(target: "raft", "{}{fields}", record.msg())
            }
        }
        Ok(())
    }
}

struct KvText(String);

impl Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}
