"""The exceptions of the Raftoral SDK: one hierarchy under :class:`RaftoralError`.

The native core raises these (it imports this module), so a gRPC status, a
stream error code or a workflow outcome always reaches Python as one of them,
with the sidecar's or the core's message.
"""

from __future__ import annotations


class RaftoralError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkflowFailed(RaftoralError):
    """The workflow function raised; ``error`` is its message."""

    def __init__(self, message: str, workflow_id: str = "", error: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.error = error or message


class Cancelled(RaftoralError):
    """The workflow was cancelled.

    Raised inside the workflow function at its next checkpoint (let it
    propagate: nothing more is committed), and by ``handle.result()``.
    """

    def __init__(self, message: str, workflow_id: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.reason = reason


class NonDeterminism(RaftoralError):
    """Replay found another checkpoint than the history recorded.

    ``seq`` is the 0-based checkpoint position, ``expected`` the committed
    name and ``got`` the name the code asked for. Keep checkpoint names and
    order stable, or register a new workflow version.
    """

    def __init__(self, message: str, workflow_id: str, seq: int, expected: str, got: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.seq = seq
        self.expected = expected
        self.got = got


class NotFound(RaftoralError):
    """No workflow has this id (gRPC NOT_FOUND)."""


class Unavailable(RaftoralError):
    """The sidecar or the cluster cannot serve the call now (gRPC UNAVAILABLE,
    or nothing listens at ``address``)."""

    def __init__(self, message: str, address: str = "") -> None:
        super().__init__(message)
        self.address = address


class Unauthenticated(RaftoralError):
    """The sidecar requires an app token (its ``RAFTORAL_APP_TOKEN``) and the
    call carried none or a wrong one (gRPC UNAUTHENTICATED); pass ``token=``
    to :meth:`raftoral.Client.connect`."""


class InvalidArgument(RaftoralError):
    """The call or a value was wrong: an unencodable value, a checkpoint
    outside a workflow, a bad filter (gRPC INVALID_ARGUMENT)."""


class Timeout(RaftoralError, TimeoutError):
    """A wait ran out of time; the workflow is still running."""


class ShuttingDown(RaftoralError):
    """The worker is stopping; the workflow stays running in the cluster and
    resumes (by replay) when a worker connects again."""


class NotRunning(RaftoralError):
    """The workflow is no longer running in the cluster: it finished or was
    cancelled elsewhere (say, by the owner that took it over while this app
    was paused). Raised at a checkpoint; let it propagate: the run ends and
    reports nothing, since the workflow already has its outcome."""

    def __init__(self, message: str, workflow_id: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class Rejected(RaftoralError):
    """The sidecar refused a message on the app stream; ``code`` is its stable
    ``ErrorCode`` name (e.g. ``ERROR_CODE_MESSAGE_TOO_LARGE``)."""

    def __init__(self, message: str, workflow_id: str = "", code: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.code = code


__all__ = [
    "Cancelled",
    "InvalidArgument",
    "NonDeterminism",
    "NotFound",
    "NotRunning",
    "RaftoralError",
    "Rejected",
    "ShuttingDown",
    "Timeout",
    "Unavailable",
    "WorkflowFailed",
]
