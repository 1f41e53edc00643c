//! Turns the core's [`ClientError`] into the Python exceptions of
//! `raftoral.errors`, so one hierarchy (`raftoral.RaftoralError`) covers
//! gRPC statuses, stream error codes and workflow outcomes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use raftoral_client::ClientError;
use tonic::Code;

/// The Python exception for `e`: the class name in `raftoral.errors` and
/// its constructor arguments. The message is always the core's own text,
/// which says what went wrong and what to do.
pub(crate) fn to_py_err(e: ClientError) -> PyErr {
    Python::attach(|py| match build(py, &e) {
        Ok(err) => err,
        // The package is broken (e.g. `_core` imported alone): still raise.
        Err(import_error) => PyRuntimeError::new_err(format!("{e} ({import_error})")),
    })
}

/// `raftoral.errors.NotRunning` with `message` as it is (the sidecar's
/// text, which names the workflow already): a signal to a workflow that
/// has ended (FAILED_PRECONDITION).
pub(crate) fn not_running(workflow_id: &str, message: &str) -> PyErr {
    named("NotRunning", message, workflow_id)
}

/// `raftoral.errors.AlreadyCompleted` with `message` as it is (the
/// sidecar's text, which names the awakeable): a second completion of an
/// awakeable (ALREADY_EXISTS).
pub(crate) fn already_completed(awakeable_id: &str, message: &str) -> PyErr {
    named("AlreadyCompleted", message, awakeable_id)
}

/// The exception `class` of `raftoral.errors`, made as `class(message,
/// subject)`.
fn named(class: &str, message: &str, subject: &str) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("raftoral.errors")
            .and_then(|m| m.getattr(class)?.call1((message, subject)));
        match made {
            Ok(value) => PyErr::from_value(value),
            Err(import_error) => PyRuntimeError::new_err(format!("{message} ({import_error})")),
        }
    })
}

fn build(py: Python<'_>, e: &ClientError) -> PyResult<PyErr> {
    let message = e.to_string();
    let (class, args): (&str, Bound<'_, PyTuple>) = match e {
        ClientError::Connect { endpoint, .. } => (
            "Unavailable",
            (message, endpoint.clone()).into_pyobject(py)?,
        ),
        ClientError::Status { code, .. } => {
            let class = match code {
                Code::NotFound => "NotFound",
                Code::Unavailable => "Unavailable",
                Code::InvalidArgument | Code::OutOfRange => "InvalidArgument",
                Code::DeadlineExceeded => "Timeout",
                Code::Unauthenticated => "Unauthenticated",
                Code::ResourceExhausted => "ResourceExhausted",
                _ => "RaftoralError",
            };
            (class, (message,).into_pyobject(py)?)
        }
        ClientError::NonDeterminism {
            workflow_id,
            seq,
            expected,
            got,
        } => (
            "NonDeterminism",
            (
                message,
                workflow_id.clone(),
                *seq,
                expected.clone(),
                got.clone(),
            )
                .into_pyobject(py)?,
        ),
        ClientError::Cancelled {
            workflow_id,
            reason,
        } => (
            "Cancelled",
            (message, workflow_id.clone(), reason.clone()).into_pyobject(py)?,
        ),
        ClientError::WorkflowFailed {
            workflow_id,
            message: error,
            failure,
        } => {
            let (error_type, details, error_message, non_retryable) = failure
                .as_deref()
                .map(|f| {
                    (
                        f.r#type.clone(),
                        f.details_json.clone(),
                        f.message.clone(),
                        f.non_retryable,
                    )
                })
                .unwrap_or_default();
            (
                "WorkflowFailed",
                (
                    message,
                    workflow_id.clone(),
                    error.clone(),
                    error_type,
                    details,
                    error_message,
                    non_retryable,
                )
                    .into_pyobject(py)?,
            )
        }
        ClientError::Rejected {
            workflow_id, code, ..
        } => (
            "Rejected",
            (message, workflow_id.clone(), code.as_str_name()).into_pyobject(py)?,
        ),
        ClientError::Codec(_) | ClientError::Usage(_) => {
            ("InvalidArgument", (message,).into_pyobject(py)?)
        }
        ClientError::Timeout(_) => ("Timeout", (message,).into_pyobject(py)?),
        ClientError::NotRunning { workflow_id, .. } => (
            "NotRunning",
            (message, workflow_id.clone()).into_pyobject(py)?,
        ),
        ClientError::StepFailed(f) => (
            "StepFailed",
            (
                message,
                f.workflow_id.clone(),
                f.seq,
                f.step.clone(),
                f.attempts,
                f.failure.r#type.clone(),
                f.failure.message.clone(),
                f.failure.details_json.clone(),
                f.failure.non_retryable,
            )
                .into_pyobject(py)?,
        ),
        // No catch-all: a new core error must pick its Python class here.
        ClientError::Shutdown => ("ShuttingDown", (message,).into_pyobject(py)?),
    };
    let module = py.import("raftoral.errors")?;
    let value = module.getattr(class)?.call1(args)?;
    Ok(PyErr::from_value(value))
}
