//! [`StartOptions`]: how a client starts a workflow (id, delay, timeout).

use std::time::Duration;

use crate::core::MAX_TIMER;
use crate::error::ClientError;

/// Options of a workflow start (`RaftoralClient::start_workflow_with`).
///
/// ```
/// use std::time::Duration;
/// use raftoral_client::StartOptions;
/// let in_an_hour = StartOptions {
///     start_delay: Duration::from_secs(3600),
///     ..StartOptions::default()
/// };
/// assert!(in_an_hour.workflow_id.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The workflow's id; `None`: a time-ordered UUID generated here.
    /// Starting an existing id returns it unchanged (idempotent).
    pub workflow_id: Option<String>,
    /// Start this long after the start is committed: the workflow stays
    /// PENDING until the cluster's timer service places it, whatever node
    /// took the request. Zero: at once. At most 366 days.
    pub start_delay: Duration,
    /// Fail the workflow, with the failure type `raftoral.WorkflowTimeout`,
    /// if it has not finished this long after it started (after the
    /// delay). `None`: no limit. At most 366 days.
    pub execution_timeout: Option<Duration>,
}

impl StartOptions {
    /// (start delay, execution timeout) in milliseconds, checked.
    pub(crate) fn millis(&self) -> Result<(u64, u64), ClientError> {
        let check = |what: &str, d: Duration| {
            if d > MAX_TIMER {
                return Err(ClientError::Usage(format!(
                    "{what} is {d:?}; at most 366 days"
                )));
            }
            Ok(d.as_millis() as u64)
        };
        let delay = check("start_delay", self.start_delay)?;
        let timeout = match self.execution_timeout {
            Some(t) if t.is_zero() => {
                return Err(ClientError::Usage(
                    "execution_timeout is zero: give a positive timeout, or None".into(),
                ));
            }
            Some(t) => check("execution_timeout", t)?,
            None => 0,
        };
        Ok((delay, timeout))
    }
}
