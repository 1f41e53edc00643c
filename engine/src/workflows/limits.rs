//! Size limits on what apps and clients send, checked where requests enter
//! the engine (documented in the `.proto` files).

use raftoral_proto::sidecar::v1::Failure;

use crate::error::EngineError;

pub use crate::workflows::state_machine::{MAX_OPEN_STEPS, MAX_RETRY_DELAY_MS};

/// Largest failure details (JSON) and message of a final step or workflow
/// failure.
pub const MAX_FAILURE_BYTES: usize = 64 * 1024;
/// Largest details and message of one failed attempt: attempts pile up in
/// the running record, so each is kept small.
pub const MAX_ATTEMPT_FAILURE_BYTES: usize = 4 * 1024;
/// Longest stack trace kept with a failure.
pub const MAX_STACK_BYTES: usize = 16 * 1024;

/// Longest workflow id or cancellation reason, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Longest workflow or checkpoint name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest workflow error kept; longer ones are cut (at a character
/// boundary) before they are committed.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Refuses an empty or over-long name; `field` names it in the message.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "{field} must not be empty"
        )));
    }
    check_len(field, name, MAX_NAME_BYTES)
}

/// Refuses a string longer than `max` bytes; `field` names it.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), EngineError> {
    if value.len() > max {
        return Err(EngineError::InvalidArgument(format!(
            "{field} is {} bytes; at most {max} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// Version 0 means 1, the first version: the proto's default and the
/// CLI's default name the same workflows.
pub(crate) fn version_or_first(version: u32) -> u32 {
    version.max(1)
}

/// `error` cut to [`MAX_ERROR_BYTES`] at a character boundary.
pub(crate) fn bounded_error(error: String) -> String {
    cut(error, MAX_ERROR_BYTES)
}

/// `text` cut to `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Checks a failure an app sent and cuts what may be cut: its type must be
/// 1 to 256 bytes and its details empty or JSON of at most `max` bytes
/// ([`MAX_FAILURE_BYTES`], or [`MAX_ATTEMPT_FAILURE_BYTES`] for an
/// attempt); the message is cut to `max` and the stack to
/// [`MAX_STACK_BYTES`].
pub(crate) fn bounded_failure(failure: Failure, max: usize) -> Result<Failure, EngineError> {
    check_name("failure type", &failure.r#type)?;
    if !failure.details_json.is_empty() {
        check_len("failure details", &failure.details_json, max)?;
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&failure.details_json) {
            return Err(EngineError::InvalidArgument(format!(
                "failure details must be JSON text (or empty): {e}"
            )));
        }
    }
    Ok(Failure {
        message: cut(failure.message, max),
        stack: cut(failure.stack, MAX_STACK_BYTES),
        ..failure
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(r#type: &str, details_json: &str) -> Failure {
        Failure {
            r#type: r#type.into(),
            message: "m".repeat(10_000),
            details_json: details_json.into(),
            non_retryable: false,
            stack: String::new(),
        }
    }

    #[test]
    fn failures_need_a_type_and_json_details() {
        let ok = bounded_failure(failure("CardDeclined", r#"{"code":1}"#), 4096).unwrap();
        assert_eq!(ok.message.len(), 4096, "the message is cut to the limit");
        assert_eq!(ok.details_json, r#"{"code":1}"#);
        let e = bounded_failure(failure("", ""), 4096).unwrap_err();
        assert!(
            e.to_string().contains("failure type must not be empty"),
            "{e}"
        );
        let e = bounded_failure(failure("X", "{not json"), 4096).unwrap_err();
        assert!(e.to_string().contains("must be JSON"), "{e}");
        let big = format!("\"{}\"", "x".repeat(5000));
        let e = bounded_failure(failure("X", &big), 4096).unwrap_err();
        assert!(e.to_string().contains("at most 4096"), "{e}");
    }

    #[test]
    fn errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bounded_error(long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.len() > MAX_ERROR_BYTES - 2);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_error("short".into()), "short");
    }

    #[test]
    fn names_and_ids_are_bounded_and_version_zero_is_one() {
        assert!(check_name("workflow_name", "").is_err());
        assert!(check_name("workflow_name", &"n".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(check_name("workflow_name", &"n".repeat(MAX_NAME_BYTES + 1)).is_err());
        assert!(check_len("workflow_id", &"i".repeat(MAX_ID_BYTES + 1), MAX_ID_BYTES).is_err());
        assert_eq!((version_or_first(0), version_or_first(3)), (1, 3));
    }
}
