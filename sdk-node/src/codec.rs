//! Values the TypeScript layer encoded, for the core's APIs that take a
//! value to serialize as JSON (`WorkflowContext::set_status`,
//! `RaftoralClient::signal_with_start`'s input) rather than encoded bytes.
//!
//! The bytes go through as a [`RawValue`]: serde_json writes them out as
//! they are, so the value is committed exactly as the codec encoded it (no
//! decode and encode again, which could reorder keys or change numbers).

use raftoral_client::ClientError;
use serde_json::value::RawValue;

/// `data`, encoded by the client's codec, as JSON text for the core. Empty
/// bytes (the JSON codec's `undefined`) become `null`, as JSON has no
/// `undefined`; anything that is not UTF-8 JSON text (a binary codec) is a
/// usage error naming `what`.
pub(crate) fn json_text(what: &str, data: &[u8]) -> Result<Box<RawValue>, ClientError> {
    if data.is_empty() {
        return Ok(RawValue::NULL.to_owned());
    }
    let text = std::str::from_utf8(data).map_err(|_| not_json(what, "it is not UTF-8 text"))?;
    RawValue::from_string(text.to_owned()).map_err(|e| not_json(what, &e.to_string()))
}

fn not_json(what: &str, why: &str) -> ClientError {
    ClientError::Usage(format!(
        "{what} must encode to JSON text, which every SDK reads, and the client's codec gave \
         something else ({why}); use the JSON codec, or a codec whose output is JSON"
    ))
}
