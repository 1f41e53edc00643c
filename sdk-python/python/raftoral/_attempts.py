"""A step attempt in flight on the owner, what can stop it (an attempt
timeout, an interruption of the run), and what an exception of step code
commits."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any, Optional

_INTERRUPTED = "interrupted"
_TIMED_OUT = "timed out"


class _TimedOut(Exception):
    """A step's attempt outlasted its policy's ``attempt_timeout``."""


class _Interrupted(Exception):
    """The core interrupted the run while a step's attempt ran (a
    cancellation): the attempt is given up, and its slot asked for again."""


class _Attempt:
    """A step attempt awaited in ``task``, and what stopped it (None:
    nothing did). ``epoch`` is the run's interruption count read before the
    attempt's slot was asked for: only a later interruption stops it."""

    __slots__ = ("epoch", "reason", "task", "timer")

    def __init__(self, task: asyncio.Task[Any], epoch: int) -> None:
        self.task = task
        self.epoch = epoch
        self.reason: Optional[str] = None
        self.timer: Optional[asyncio.TimerHandle] = None

    def stop(self, reason: str) -> None:
        """Cancels the task, which is waiting inside the attempt (this runs
        as a callback of the loop, never while the task runs)."""
        if self.reason is None:
            self.reason = reason
            self.task.cancel()

    def end(self) -> Optional[str]:
        """The attempt is over: what stopped it, or None when nothing did or
        the task was cancelled by someone else as well (that cancellation
        goes on)."""
        if self.timer is not None:
            self.timer.cancel()
        if self.reason is not None and sys.version_info >= (3, 11):
            if self.task.uncancel() > 0:
                return None
        return self.reason


def _failure(e: Exception) -> tuple[str, str, str, bool, str]:
    """What crosses languages of an exception: type name, message, details
    as compact JSON, non-retryable, stack."""
    error_type = getattr(e, "type", None)
    if not isinstance(error_type, str) or not error_type:
        error_type = type(e).__name__
    details = getattr(e, "details", None)
    try:
        details_json = (
            ""
            if details is None
            else json.dumps(details, separators=(",", ":"), ensure_ascii=False)
        )
    except (TypeError, ValueError):
        details_json = json.dumps(repr(details))
    message = getattr(e, "message", None)
    if not isinstance(message, str):
        message = str(e)
    stack = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return (error_type, message, details_json, bool(getattr(e, "non_retryable", False)), stack)
