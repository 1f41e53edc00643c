"""Workflow definitions (:func:`workflow`) and :class:`WorkflowContext`."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import traceback
import typing
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Generic,
    Optional,
    TypeVar,
    Union,
    overload,
)

from .codec import Codec
from .errors import Cancelled, InvalidArgument, NonDeterminism, NotRunning, ShuttingDown
from .retry import DEFAULT, RetryPolicy

if TYPE_CHECKING:
    from . import _core
    from ._bridge import Commits

I = TypeVar("I")  # noqa: E741 - the usual name for an input type
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")

_current: contextvars.ContextVar[Optional[WorkflowContext]] = contextvars.ContextVar(
    "raftoral_workflow_context", default=None
)
"""The context of the workflow running in the current asyncio task."""

_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("raftoral_step_attempt", default=0)
"""The attempt number of the step function running in this task."""


def step_attempt() -> int:
    """The attempt number (1-based, counted across owners) of the step
    function running now; 0 outside one.

    >>> step_attempt()
    0
    """
    return _attempt.get()


class Workflow(Generic[I, O]):
    """A workflow definition: its name, version and function.

    Created by :func:`workflow`; pass it to ``Worker(workflows=[...])`` and
    ``client.start_workflow``. Calling it calls the function.
    """

    def __init__(
        self,
        fn: Callable[[WorkflowContext, I], Awaitable[O]],
        name: str,
        version: int,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise InvalidArgument(
                f"workflow '{name}' must be an `async def` function taking (ctx, input)"
            )
        if not name:
            raise InvalidArgument("a workflow name must not be empty")
        self.fn = fn
        self.name = name
        self.version = version
        self.retry = retry
        hints = _hints(fn)
        params = list(inspect.signature(fn).parameters)
        self.input_type: Any = hints.get(params[1]) if len(params) > 1 else None
        self.result_type: Any = hints.get("return")

    def __call__(self, ctx: WorkflowContext, input: I) -> Awaitable[O]:
        return self.fn(ctx, input)

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, version={self.version})"


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode untyped
        return {}


def _return_hint(fn: Callable[..., Any]) -> Any:
    """The return annotation of a step function, resolved once per code
    object: a step's lambda is a new object at every call but the same code,
    and resolving hints costs more than the rest of a replayed step."""
    annotations = getattr(fn, "__annotations__", None)
    if not annotations or "return" not in annotations:
        return None  # lambdas, unannotated defs: nothing to resolve
    code = getattr(fn, "__code__", None)
    if code is None:
        return _hints(fn).get("return")
    try:
        return _RETURN_HINTS[code]
    except KeyError:
        hint = _hints(fn).get("return")
        if len(_RETURN_HINTS) < 4096:
            _RETURN_HINTS[code] = hint
        return hint


_RETURN_HINTS: dict[Any, Any] = {}


@overload
def workflow(
    fn: Callable[[WorkflowContext, I], Awaitable[O]],
) -> Workflow[I, O]: ...


@overload
def workflow(
    *, name: Optional[str] = None, version: int = 1, retry: Optional[RetryPolicy] = None
) -> Callable[[Callable[[WorkflowContext, I], Awaitable[O]]], Workflow[I, O]]: ...


def workflow(
    fn: Optional[Callable[[WorkflowContext, I], Awaitable[O]]] = None,
    *,
    name: Optional[str] = None,
    version: int = 1,
    retry: Optional[RetryPolicy] = None,
) -> Union[
    Workflow[I, O],
    Callable[[Callable[[WorkflowContext, I], Awaitable[O]]], Workflow[I, O]],
]:
    """Declares an ``async def fn(ctx, input)`` as a workflow, with or
    without arguments (``@raftoral.workflow`` names it after the function,
    version 1).

    >>> import raftoral
    >>> @raftoral.workflow(name="ping_pong", version=1)
    ... async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    ...     return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")
    >>> ping_pong.name, ping_pong.version
    ('ping_pong', 1)
    >>> @raftoral.workflow
    ... async def greet(ctx: raftoral.WorkflowContext, who: str) -> str:
    ...     return await ctx.checkpoint("greeting", lambda: f"hello {who}")
    >>> greet.name, greet.version
    ('greet', 1)

    ``retry`` is the policy of its steps that name none (else the worker's,
    else :data:`raftoral.retry.DEFAULT`).
    """

    def wrap(f: Callable[[WorkflowContext, I], Awaitable[O]]) -> Workflow[I, O]:
        return Workflow(f, name or str(getattr(f, "__name__", "")), version, retry)

    if fn is not None:
        return wrap(fn)
    return wrap


class WorkflowContext:
    """The context of one workflow run, passed as the first argument.

    Every checkpoint is committed through Raft before the function goes on.
    On the owner, the step's function runs once per successful commit; on
    replicas and on replay the committed value is returned without running it.
    """

    def __init__(
        self,
        run: _core.Run,
        codec: Codec,
        commits: Optional[Commits] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self._run = run
        self._codec = codec
        self._commits = commits
        self._retry = retry or DEFAULT
        self._active = True

    @property
    def workflow_id(self) -> str:
        """Id of this workflow instance."""
        return self._run.workflow_id

    @property
    def workflow_name(self) -> str:
        """Workflow type."""
        return self._run.workflow_name

    @property
    def version(self) -> int:
        """Workflow version."""
        return self._run.version

    @overload
    async def checkpoint(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
    ) -> T: ...

    @overload
    async def checkpoint(
        self,
        name: str,
        fn: Callable[[], T],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
    ) -> T: ...

    async def checkpoint(
        self,
        name: str,
        fn: Callable[[], Union[Awaitable[T], T]],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
    ) -> T:
        """A durable step named ``name``: ``fn`` (sync or async) runs on the
        owner only, its value is committed, and every replica returns the
        committed value.

        The value is decoded into ``result_type``, or into ``fn``'s return
        annotation, so dataclasses come back as dataclasses on every replica.
        When ``fn`` raises, the attempt fails and is retried per ``retry``
        (else the workflow's or the worker's policy, else 1 s, x2, at most
        60 s, 10 attempts); :func:`raftoral.step_attempt` tells ``fn`` which
        attempt it runs. Once the step fails for good (a non-retryable error,
        or no attempt left) the failure is committed and
        :class:`~raftoral.StepFailed` is raised here, on every replica and in
        every replay: catch it to compensate::

            try:
                await ctx.checkpoint("charge", charge)
            except raftoral.StepFailed as e:
                await ctx.checkpoint("refund", refund)

        Raises :class:`~raftoral.Cancelled` when the workflow was cancelled,
        :class:`~raftoral.NonDeterminism` when the history has another name at
        this position, :class:`~raftoral.InvalidArgument` when the value
        cannot be encoded (nothing is committed then).
        """
        if not self._active:
            raise InvalidArgument(
                f"checkpoint '{name}' called after workflow '{self.workflow_id}' "
                "finished; checkpoints belong inside the workflow function"
            )
        hint = result_type if result_type is not None else _return_hint(fn)
        # The position is taken now, in call order (asyncio.gather of steps
        # gives them positions in the order it starts them).
        req = self._run.request(name)
        slot = self._run.slot_now(req)
        if slot is None:  # a replica ahead of the owner, or not its turn yet
            if self._commits is not None:
                slot = await self._commits.slot(self._run, req)
            else:
                slot = await self._run.slot(req)
        elif isinstance(slot, bytes):
            # A replayed value is handed out at once; yield once as a live
            # commit does, so side-by-side branches take their next
            # positions in the same order live and in a replay.
            await asyncio.sleep(0)
        policy = retry or self._retry
        while not isinstance(slot, bytes):
            token = slot
            reset = _attempt.set(token.attempt)
            try:
                value = fn()
                if inspect.isawaitable(value):
                    value = await value
            except (Cancelled, ShuttingDown, NotRunning, NonDeterminism, asyncio.CancelledError):
                # The run's own end, not the step's failure: it propagates.
                raise
            except Exception as e:
                slot = await self._fail(token, e, policy)
                continue
            finally:
                _attempt.reset(reset)
            try:
                data = self._codec.encode(value)
            except (TypeError, ValueError) as e:
                raise InvalidArgument(
                    f"checkpoint '{name}' (seq {token.seq}) of workflow "
                    f"'{self.workflow_id}': cannot encode its value: {e}; return a "
                    "JSON-compatible value, a dataclass or a pydantic model, or pass "
                    "a codec that handles it"
                ) from e
            if self._commits is not None:
                slot = await self._commits.commit(self._run, token, data)
            else:
                slot = await self._run.commit(token, data)
        return typing.cast(T, self._codec.decode(slot, hint))

    async def _fail(
        self, token: _core.ComputeToken, e: Exception, policy: RetryPolicy
    ) -> Union[bytes, _core.ComputeToken]:
        """Commits ``e`` as the failure of ``token``'s attempt; returns the
        next attempt's token (after its delay) or another owner's value, or
        raises the step's failure."""
        if self._commits is None:
            raise InvalidArgument("failed steps need the worker's commit bridge")
        return await self._commits.fail(self._run, token, _failure(e), policy._native)


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


def current_context() -> WorkflowContext:
    """The context of the workflow running in this task.

    Raises :class:`~raftoral.InvalidArgument` outside a workflow.
    """
    ctx = _current.get()
    if ctx is None or not ctx._active:
        raise InvalidArgument(
            "no workflow is running here: call checkpoints inside a function "
            "decorated with @raftoral.workflow, run by a raftoral.Worker"
        )
    return ctx


@overload
async def checkpoint(
    name: str, fn: Callable[[], Awaitable[T]], *, result_type: Any = None
) -> T: ...


@overload
async def checkpoint(name: str, fn: Callable[[], T], *, result_type: Any = None) -> T: ...


async def checkpoint(
    name: str,
    fn: Callable[[], Union[Awaitable[T], T]],
    *,
    result_type: Any = None,
) -> T:
    """:meth:`WorkflowContext.checkpoint` on the workflow running in this
    task; raises :class:`~raftoral.InvalidArgument` outside a workflow."""
    ctx = current_context()
    return await ctx.checkpoint(name, typing.cast(Callable[[], T], fn), result_type=result_type)
