//! [`RetryPolicy`]: how often and how soon a failed step runs again.
//!
//! The owner's core decides with it; each failed attempt is committed with
//! the delay before the next one, so a new owner after a failover continues
//! the count and the wait instead of starting over.

use std::time::Duration;

use raftoral_proto::sidecar::v1::Failure;

use crate::error::ClientError;

/// How a failing step is retried.
///
/// The delay before attempt `n + 1` is
/// `min(maximum_interval, initial_interval × backoff_coefficient^(n−1))`,
/// shortened by up to `jitter` of itself (never lengthened, so the
/// committed delay bounds the wait on every owner).
///
/// Defaults: 1 s, ×2, at most 60 s, 10 attempts, jitter 0.2, no attempt
/// timeout. Errors marked non-retryable, or whose type is in
/// `non_retryable_error_types`, fail the step at once. An attempt that
/// outlasts `attempt_timeout` is stopped and fails as retryable, type
/// [`ATTEMPT_TIMEOUT`]. No timeout by default: how long a step may take is
/// the application's to say, and a default that cut legitimate long work
/// would be worse than none (Restate has none either; Temporal asks for one
/// on every activity).
///
/// ```
/// use std::time::Duration;
/// use raftoral_client::RetryPolicy;
/// let policy = RetryPolicy {
///     initial_interval: Duration::from_millis(100),
///     maximum_attempts: Some(5),
///     ..RetryPolicy::default()
/// };
/// policy.validate().unwrap();
/// assert_eq!(RetryPolicy::none().maximum_attempts, Some(1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial_interval: Duration,
    /// Factor applied to the delay after each attempt (at least 1).
    pub backoff_coefficient: f64,
    /// Longest delay between two attempts (at least `initial_interval`).
    pub maximum_interval: Duration,
    /// Attempts in all, the first included; `None`: no limit.
    pub maximum_attempts: Option<u32>,
    /// Share of each delay removed at random, in `[0, 1]`.
    pub jitter: f64,
    /// Error types that fail the step at once.
    pub non_retryable_error_types: Vec<String>,
    /// Longest one attempt may run on the owner; `None`: no limit. Timed
    /// on the owner that runs the attempt: an attempt cut short by a
    /// failover starts again with the whole timeout.
    pub attempt_timeout: Option<Duration>,
}

/// The error type of an attempt stopped by its policy's
/// [`attempt_timeout`](RetryPolicy::attempt_timeout), the same in every
/// SDK.
pub const ATTEMPT_TIMEOUT: &str = "AttemptTimeout";

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(60),
            maximum_attempts: Some(10),
            jitter: 0.2,
            non_retryable_error_types: Vec::new(),
            attempt_timeout: None,
        }
    }
}

/// Longest delay the sidecar accepts between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

impl RetryPolicy {
    /// One attempt: a failure fails the step.
    pub fn none() -> Self {
        RetryPolicy {
            maximum_attempts: Some(1),
            ..RetryPolicy::default()
        }
    }

    /// Refuses a policy that cannot work, saying which setting is wrong.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: String| Err(ClientError::Usage(format!("retry policy: {what}")));
        if !(self.backoff_coefficient >= 1.0 && self.backoff_coefficient.is_finite()) {
            return bad(format!(
                "backoff_coefficient must be a number of at least 1, got {}",
                self.backoff_coefficient
            ));
        }
        if self.maximum_interval < self.initial_interval {
            return bad(format!(
                "maximum_interval ({:?}) must be at least initial_interval ({:?})",
                self.maximum_interval, self.initial_interval
            ));
        }
        if self.maximum_interval > MAX_DELAY {
            return bad(format!(
                "maximum_interval must be at most 7 days, got {:?}",
                self.maximum_interval
            ));
        }
        if self.maximum_attempts == Some(0) {
            return bad(
                "maximum_attempts must be at least 1 (1: no retry; none: no limit), got 0".into(),
            );
        }
        if self.attempt_timeout == Some(Duration::ZERO) {
            return bad("attempt_timeout must be more than 0 (none: no limit), got 0".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad(format!(
                "jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        Ok(())
    }

    /// True when a failure of `error_type` at attempt `attempt` (1-based)
    /// ends the step rather than being retried.
    pub fn is_final(&self, attempt: u32, error_type: &str, non_retryable: bool) -> bool {
        non_retryable
            || self.maximum_attempts.is_some_and(|max| attempt >= max)
            || self
                .non_retryable_error_types
                .iter()
                .any(|t| t == error_type)
    }

    /// The failure of attempt `attempt` stopped by the attempt timeout:
    /// type [`ATTEMPT_TIMEOUT`], message `attempt N timed out after T ms`,
    /// retryable. Bindings commit it as the attempt's failure.
    pub fn timeout_failure(&self, attempt: u32) -> Failure {
        let ms = self.attempt_timeout.unwrap_or_default().as_millis();
        Failure {
            r#type: ATTEMPT_TIMEOUT.to_owned(),
            message: format!("attempt {attempt} timed out after {ms} ms"),
            ..Failure::default()
        }
    }

    /// The delay after failed attempt `attempt` (1-based); `unit` in
    /// `[0, 1)` draws the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let grown = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let capped = grown.min(self.maximum_interval.as_secs_f64());
        Duration::from_secs_f64(capped * (1.0 - self.jitter * unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_jitter_only_shortens_them() {
        let p = RetryPolicy::default();
        let ms = |n, u| p.delay(n, u).as_millis();
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.0)], [1000, 2000, 4000]);
        assert_eq!(ms(7, 0.0), 60_000, "capped at the maximum interval");
        assert_eq!(ms(1000, 0.0), 60_000, "no overflow far out");
        assert_eq!(ms(1, 0.999_999), 800, "20% shorter at most");
        assert!(p.is_final(10, "X", false) && !p.is_final(9, "X", false));
        assert!(p.is_final(1, "X", true));
        let unlimited = RetryPolicy {
            maximum_attempts: None,
            non_retryable_error_types: vec!["CardDeclined".into()],
            ..p
        };
        assert!(!unlimited.is_final(1_000_000, "X", false));
        assert!(unlimited.is_final(1, "CardDeclined", false));
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        let check = |p: RetryPolicy, says: &str| {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.starts_with("retry policy: ") && e.contains(says), "{e}");
        };
        let d = RetryPolicy::default;
        check(
            RetryPolicy {
                maximum_attempts: Some(0),
                ..d()
            },
            "maximum_attempts",
        );
        check(
            RetryPolicy {
                backoff_coefficient: 0.5,
                ..d()
            },
            "backoff_coefficient",
        );
        check(
            RetryPolicy {
                backoff_coefficient: f64::NAN,
                ..d()
            },
            "backoff_coefficient",
        );
        check(RetryPolicy { jitter: 1.5, ..d() }, "jitter");
        check(
            RetryPolicy {
                attempt_timeout: Some(Duration::ZERO),
                ..d()
            },
            "attempt_timeout",
        );
        let timed = RetryPolicy {
            attempt_timeout: Some(Duration::from_millis(250)),
            ..d()
        };
        timed.validate().unwrap();
        let f = timed.timeout_failure(2);
        assert_eq!(
            (f.r#type.as_str(), f.message.as_str(), f.non_retryable),
            ("AttemptTimeout", "attempt 2 timed out after 250 ms", false)
        );
        check(
            RetryPolicy {
                maximum_interval: Duration::from_millis(10),
                ..d()
            },
            "maximum_interval",
        );
        RetryPolicy::none().validate().unwrap();
    }
}
