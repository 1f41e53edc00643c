//! The retry policy of a step, as JavaScript gives it, turned into the
//! core's [`RetryPolicy`] and checked there, so every SDK refuses the same
//! policies with the same words (here with the option names of the
//! TypeScript API).

use std::time::Duration;

use napi_derive::napi;
use raftoral_client::{ClientError, RetryPolicy};

use crate::errors::to_js_err;
use crate::worker::NativeFailure;

/// A step's retry policy; an absent field takes the core's default (1 s,
/// ×2, at most 60 s, 10 attempts, jitter 0.2, no non-retryable types, no
/// attempt timeout).
#[napi(object)]
pub struct NativeRetryPolicy {
    /// Delay before the second attempt, in milliseconds.
    pub initial_interval_ms: Option<f64>,
    /// Factor applied to the delay after each attempt (at least 1).
    pub backoff_coefficient: Option<f64>,
    /// Longest delay between two attempts, in milliseconds.
    pub maximum_interval_ms: Option<f64>,
    /// Attempts in all, the first included; `Infinity`: no limit.
    pub maximum_attempts: Option<f64>,
    /// Share of each delay removed at random, in `[0, 1]`.
    pub jitter: Option<f64>,
    /// Error types that fail the step at once.
    pub non_retryable_error_types: Option<Vec<String>>,
    /// Longest one attempt may run on the owner, in milliseconds (more
    /// than 0); `Infinity`: no limit.
    pub attempt_timeout_ms: Option<f64>,
}

impl NativeRetryPolicy {
    /// The core's policy, validated; a `Usage` error (`INVALID_ARGUMENT`)
    /// starting `retry policy: ` says which option is wrong.
    pub(crate) fn to_policy(&self) -> Result<RetryPolicy, ClientError> {
        let d = RetryPolicy::default();
        let policy = RetryPolicy {
            initial_interval: interval(
                "initialIntervalMs",
                self.initial_interval_ms,
                d.initial_interval,
            )?,
            backoff_coefficient: self.backoff_coefficient.unwrap_or(d.backoff_coefficient),
            maximum_interval: interval(
                "maximumIntervalMs",
                self.maximum_interval_ms,
                d.maximum_interval,
            )?,
            maximum_attempts: match self.maximum_attempts {
                None => d.maximum_attempts,
                Some(n) => attempts(n)?,
            },
            jitter: self.jitter.unwrap_or(d.jitter),
            non_retryable_error_types: self.non_retryable_error_types.clone().unwrap_or_default(),
            attempt_timeout: timeout(self.attempt_timeout_ms)?,
        };
        policy.validate().map_err(|e| match e {
            ClientError::Usage(message) => ClientError::Usage(js_names(&message)),
            other => other,
        })?;
        Ok(policy)
    }
}

/// Checks a retry policy; throws `INVALID_ARGUMENT` saying what is wrong.
/// The TypeScript layer calls it where a policy is given (definition
/// time), so a bad one never waits for a failure to show.
// Called from JavaScript only: the test build (no napi registration) sees
// no caller.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn validate_retry_policy(policy: NativeRetryPolicy) -> napi::Result<()> {
    policy.to_policy().map(|_| ()).map_err(to_js_err)
}

/// The failure of attempt `attempt` (1-based) of a step with `policy`
/// stopped by its attempt timeout, as the core builds it (type
/// `AttemptTimeout`, message `attempt N timed out after T ms`, retryable):
/// the TypeScript layer commits it with `failStep`, and gives its text to
/// the attempt's `AbortSignal`. Throws `INVALID_ARGUMENT` for a policy
/// without an attempt timeout.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn attempt_timeout_failure(
    policy: NativeRetryPolicy,
    attempt: u32,
) -> napi::Result<NativeFailure> {
    let policy = policy.to_policy().map_err(to_js_err)?;
    if policy.attempt_timeout.is_none() {
        return Err(to_js_err(refuse(
            "this policy has no attemptTimeoutMs, so no attempt times out".into(),
        )));
    }
    Ok(policy.timeout_failure(attempt).into())
}

fn refuse(what: String) -> ClientError {
    ClientError::Usage(format!("retry policy: {what}"))
}

fn interval(name: &str, ms: Option<f64>, default: Duration) -> Result<Duration, ClientError> {
    let Some(ms) = ms else {
        return Ok(default);
    };
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(refuse(format!(
            "{name} must be a non-negative number of milliseconds, got {ms}"
        )));
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
        refuse(format!(
            "{name} must be at most 7 days (604800000 ms), got {ms}"
        ))
    })
}

/// The attempt timeout: none when absent or `Infinity`. Zero is left to
/// the core to refuse, with its words.
fn timeout(ms: Option<f64>) -> Result<Option<Duration>, ClientError> {
    match ms {
        None => Ok(None),
        Some(ms) if ms == f64::INFINITY => Ok(None),
        Some(ms) if ms.is_nan() || ms < 0.0 => Err(refuse(format!(
            "attemptTimeoutMs must be a number of milliseconds more than 0, or Infinity for no limit, got {ms}"
        ))),
        Some(ms) => Duration::try_from_secs_f64(ms / 1000.0)
            .map(Some)
            .map_err(|_| {
                refuse(format!(
                    "attemptTimeoutMs is too large, got {ms}; use Infinity for no limit"
                ))
            }),
    }
}

fn attempts(n: f64) -> Result<Option<u32>, ClientError> {
    if n == f64::INFINITY {
        return Ok(None);
    }
    if n.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&n) {
        return Ok(Some(n as u32));
    }
    Err(refuse(format!(
        "maximumAttempts must be a whole number of at least 1 (1: no retry), or Infinity for no limit, got {n}"
    )))
}

/// The core's message with the option names of the TypeScript API.
fn js_names(message: &str) -> String {
    [
        ("initial_interval", "initialIntervalMs"),
        ("maximum_interval", "maximumIntervalMs"),
        ("backoff_coefficient", "backoffCoefficient"),
        ("maximum_attempts", "maximumAttempts"),
        ("attempt_timeout", "attemptTimeoutMs"),
        ("none: no limit", "Infinity: no limit"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (rust, js)| m.replace(rust, js))
}
