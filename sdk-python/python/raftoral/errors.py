"""The exceptions of the Raftoral SDK: one hierarchy under :class:`RaftoralError`.

The native core raises these (it imports this module), so a gRPC status, a
stream error code or a workflow outcome always reaches Python as one of them,
with the sidecar's or the core's message.
"""

from __future__ import annotations

import json
from typing import Optional

from .types import Failure


class RaftoralError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkflowFailed(RaftoralError):
    """The workflow function raised; ``error`` is its error text.

    When the workflow failed with a structured error (a step's failure it
    did not catch, or an :class:`ApplicationError` its function raised
    outside any step), ``failure`` is that error
    (:class:`~raftoral.Failure`, the same in every SDK), and ``type``,
    ``error_message``, ``details`` (decoded JSON) and ``non_retryable`` are
    its fields; ``error`` is then ``"<type>: <message>"`` (for a step's, the
    step's failure text). Otherwise ``failure`` is ``None``, ``type`` and
    ``error_message`` are empty. ``message`` is the whole text of this
    exception, as for every :class:`RaftoralError`::

        try:
            await handle.result()
        except raftoral.WorkflowFailed as e:
            if e.type == "OrderFailed":
                notify(e.error_message, e.details)
    """

    def __init__(
        self,
        message: str,
        workflow_id: str = "",
        error: str = "",
        type: str = "",
        details_json: str = "",
        error_message: str = "",
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.error = error or message
        self.type = type
        self.error_message = error_message
        self.non_retryable = non_retryable
        # A failure always has a type (1 to 256 bytes).
        self.failure: Optional[Failure] = (
            Failure._from_json(type, error_message, details_json, non_retryable) if type else None
        )
        self.details: object = self.failure.details if self.failure is not None else None


class Cancelled(RaftoralError):
    """The workflow was cancelled.

    Raised inside the workflow function at the step or sleep it awaits when
    its cancel is requested (or at the next one it takes), on the owner, on
    every replica and in every replay alike. Steps taken after it run as
    usual: catch it to compensate, then raise it again so that the workflow
    ends CANCELLED::

        try:
            await ctx.checkpoint("charge", charge)
        except raftoral.Cancelled:
            await ctx.checkpoint("refund", refund)
            raise

    Once the cancel's cleanup window has run out (or for a cancel with
    ``cleanup=0``) every step raises it. Also raised by ``handle.result()``
    for a CANCELLED workflow; ``reason`` is the reason given to
    ``cancel_workflow`` (with a note when the cleanup window ran out).
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


class ResourceExhausted(RaftoralError):
    """A limit of the cluster was reached (gRPC RESOURCE_EXHAUSTED): for
    :meth:`Client.signal_workflow <raftoral.Client.signal_workflow>`, the
    workflow's inbox of events is full (the message gives its limits); the
    workflow must consume events (:meth:`WorkflowContext.wait_event
    <raftoral.WorkflowContext.wait_event>`) before more are sent. Nothing was
    delivered: send again later."""


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
    reports nothing, since the workflow already has its outcome.

    Also raised by :meth:`Client.signal_workflow
    <raftoral.Client.signal_workflow>` (and ``signal_with_start``,
    ``resolve_awakeable``, ``reject_awakeable``) for a workflow that has
    ended (COMPLETED, FAILED or CANCELLED; gRPC FAILED_PRECONDITION):
    events go to running and pending workflows only."""

    def __init__(self, message: str, workflow_id: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class AlreadyCompleted(RaftoralError):
    """The awakeable was completed before (gRPC ALREADY_EXISTS): an
    awakeable is resolved or rejected once, by whoever comes first
    (:meth:`Client.resolve_awakeable <raftoral.Client.resolve_awakeable>`,
    :meth:`Client.reject_awakeable <raftoral.Client.reject_awakeable>` or
    any SDK's), and this completion was not applied. ``awakeable_id`` is
    the id given. A retry of a completion that may have been applied can
    treat it as done::

        try:
            await client.resolve_awakeable(awakeable_id, receipt)
        except raftoral.AlreadyCompleted:
            pass  # completed by an earlier try (or by someone else)
    """

    def __init__(self, message: str, awakeable_id: str = "") -> None:
        super().__init__(message)
        self.awakeable_id = awakeable_id


class Rejected(RaftoralError):
    """The sidecar refused a message on the app stream; ``code`` is its stable
    ``ErrorCode`` name (e.g. ``ERROR_CODE_MESSAGE_TOO_LARGE``)."""

    def __init__(self, message: str, workflow_id: str = "", code: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.code = code


class ApplicationError(RaftoralError):
    """An error a step's code raises on purpose, with a type name and
    structured details that cross languages (a Node or Rust replica raises a
    failure with the same type, message and details)::

        raise ApplicationError("card declined", type="CardDeclined",
                               details={"code": "insufficient_funds"},
                               non_retryable=True)

    ``type`` defaults to the class name, so subclasses name themselves. Any
    other exception works too in a step: its class name is the type and
    ``str(e)`` the message.

    Raised by the workflow function itself, outside any step, it fails the
    workflow with that error structured: clients get it as
    :attr:`WorkflowFailed.failure` from ``handle.result()`` and as
    :attr:`WorkflowInfo.failure <raftoral.WorkflowInfo>` (type, message,
    details), and the error text is ``"<type>: <message>"``::

        await ctx.checkpoint("refund", refund)
        raise ApplicationError("order failed after refund", type="OrderFailed",
                               details={"refunded": True})

    (Another exception raised there fails the workflow with its text only.)
    """

    def __init__(
        self,
        message: str,
        *,
        type: Optional[str] = None,
        details: object = None,
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.type = type or self.__class__.__name__
        self.details = details
        self.non_retryable = non_retryable


class NonRetryableError(ApplicationError):
    """An :class:`ApplicationError` that fails its step at once, whatever the
    retry policy: for business errors such as a declined card, which no
    retry fixes."""

    def __init__(
        self,
        message: str,
        *,
        type: Optional[str] = None,
        details: object = None,
    ) -> None:
        super().__init__(message, type=type, details=details, non_retryable=True)


class StepFailed(RaftoralError):
    """A step failed for good: its code raised a non-retryable error, or every
    attempt failed. The failure is committed, so the same exception is raised
    at the same step on every replica and in every replay, whichever language
    raised it first. Catch it to compensate::

        try:
            await ctx.checkpoint("charge", charge)
        except StepFailed as e:
            if e.type == "CardDeclined":
                await ctx.checkpoint("refund", refund)

    ``type``, ``error_message`` and ``details`` (decoded JSON, or ``None``)
    are the error as the step's code gave it; ``attempts`` counts the
    attempts made.

    Also raised by an awakeable that was rejected
    (:meth:`WorkflowContext.awakeable <raftoral.WorkflowContext.awakeable>`,
    :meth:`Client.reject_awakeable <raftoral.Client.reject_awakeable>`):
    ``type`` and ``error_message`` are the rejection's, ``step`` the
    awakeable's id, ``attempts`` 1.
    """

    def __init__(
        self,
        message: str,
        workflow_id: str = "",
        seq: int = 0,
        step: str = "",
        attempts: int = 1,
        type: str = "",
        error_message: str = "",
        details_json: str = "",
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.seq = seq
        self.step = step
        self.attempts = attempts
        self.type = type
        self.error_message = error_message
        self.details_json = details_json
        self.details: object = json.loads(details_json) if details_json else None
        self.non_retryable = non_retryable


__all__ = [
    "AlreadyCompleted",
    "ApplicationError",
    "Cancelled",
    "InvalidArgument",
    "NonDeterminism",
    "NonRetryableError",
    "NotFound",
    "NotRunning",
    "RaftoralError",
    "Rejected",
    "ResourceExhausted",
    "ShuttingDown",
    "StepFailed",
    "Timeout",
    "Unavailable",
    "WorkflowFailed",
]
