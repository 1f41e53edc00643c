"""How a failing step is retried: :class:`RetryPolicy`."""

from __future__ import annotations

from datetime import timedelta
from typing import Optional, Sequence, Union

from . import _core

Seconds = Union[float, int, timedelta]


def _seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class RetryPolicy:
    """How a step whose function raises is retried.

    The delay before attempt ``n + 1`` is ``min(maximum_interval,
    initial_interval * backoff_coefficient ** (n - 1))``, shortened by up to
    ``jitter`` of itself (never lengthened). Each failed attempt is committed
    with its delay, so after a failover the new owner continues the count and
    waits only what is left. Errors raised with ``non_retryable=True`` (see
    :class:`~raftoral.NonRetryableError`), or whose type is in
    ``non_retryable_error_types``, fail the step at once.

    ``attempt_timeout`` bounds one attempt (None, the default: no limit).
    On the owner, an attempt of an ``async`` step function still running
    when it expires is cancelled (:class:`asyncio.CancelledError` reaches
    the step's code at its current ``await``), and the attempt fails with
    a retryable error of type ``AttemptTimeout`` and message ``attempt N
    timed out after T ms``, the same in every SDK; it is then retried as
    any failed attempt. A new owner after a failover times the attempt it
    runs from its start. A sync step function cannot be interrupted: Python
    has no way to stop a running function or thread. One that runs on the
    event loop finishes first (it blocks the loop, and with it the timer),
    and if it took longer than the limit its value is dropped and the
    attempt fails the same way; one run with ``thread=True`` (see
    :meth:`WorkflowContext.checkpoint <raftoral.WorkflowContext.checkpoint>`)
    fails when the limit expires while its thread runs on to its end, its
    value unused, so a retry may overlap it.

    Intervals and ``attempt_timeout`` are seconds or
    :class:`~datetime.timedelta`; ``maximum_attempts=None`` retries without
    limit. A policy that cannot work raises
    :class:`~raftoral.InvalidArgument` when it is made:

    >>> RetryPolicy(initial_interval=0.5, maximum_attempts=5).maximum_attempts
    5
    >>> from raftoral import InvalidArgument
    >>> try:
    ...     RetryPolicy(maximum_attempts=0)
    ... except InvalidArgument as e:
    ...     print(str(e)[:44])
    retry policy: maximum_attempts must be at le
    >>> RetryPolicy(attempt_timeout=timedelta(milliseconds=250)).attempt_timeout
    0.25
    """

    def __init__(
        self,
        *,
        initial_interval: Seconds = 1.0,
        backoff_coefficient: float = 2.0,
        maximum_interval: Seconds = 60.0,
        maximum_attempts: Optional[int] = 10,
        jitter: float = 0.2,
        non_retryable_error_types: Sequence[str] = (),
        attempt_timeout: Optional[Seconds] = None,
    ) -> None:
        self.initial_interval = _seconds(initial_interval)
        self.backoff_coefficient = float(backoff_coefficient)
        self.maximum_interval = _seconds(maximum_interval)
        self.maximum_attempts = maximum_attempts
        self.jitter = float(jitter)
        self.non_retryable_error_types = tuple(non_retryable_error_types)
        self.attempt_timeout: Optional[float] = (
            None if attempt_timeout is None else _seconds(attempt_timeout)
        )
        self._native = _core.RetryPolicy(
            self.initial_interval,
            self.backoff_coefficient,
            self.maximum_interval,
            maximum_attempts,
            self.jitter,
            list(self.non_retryable_error_types),
            self.attempt_timeout,
        )

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt: the first failure fails the step."""
        return cls(maximum_attempts=1)

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(initial_interval={self.initial_interval}, "
            f"backoff_coefficient={self.backoff_coefficient}, "
            f"maximum_interval={self.maximum_interval}, "
            f"maximum_attempts={self.maximum_attempts}, jitter={self.jitter}, "
            f"non_retryable_error_types={self.non_retryable_error_types}, "
            f"attempt_timeout={self.attempt_timeout})"
        )


DEFAULT = RetryPolicy()
"""The policy of a step that names none: 1 s, x2, at most 60 s, 10 attempts,
no attempt timeout."""
