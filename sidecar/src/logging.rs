//! Log output: human-readable text by default, or one JSON object per line
//! (`RAFTORAL_LOG_FORMAT=json`) for a cluster's log pipeline.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (the message and the event's structured fields: node, workflow id,
    /// term, ...) and `span`/`spans` when the event happens inside spans.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` picks the levels (default
/// `info`) in both formats.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Parsers want the fields as a flat object: the current span list
        // is kept (it names the node and workflow a line belongs to).
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
