//! Size limits on what apps and clients send, checked where requests enter
//! the engine (documented in the `.proto` files).

use crate::error::EngineError;

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
pub(crate) fn bounded_error(mut error: String) -> String {
    if error.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

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
