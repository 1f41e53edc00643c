"""Workflow definitions (:func:`workflow`) and :class:`WorkflowContext`."""

from __future__ import annotations

import contextvars
import inspect
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
from .errors import InvalidArgument

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


def workflow(
    *, name: Optional[str] = None, version: int = 1
) -> Callable[[Callable[[WorkflowContext, I], Awaitable[O]]], Workflow[I, O]]:
    """Declares an ``async def fn(ctx, input)`` as a workflow.

    >>> import raftoral
    >>> @raftoral.workflow(name="ping_pong", version=1)
    ... async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    ...     return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")
    >>> ping_pong.name, ping_pong.version
    ('ping_pong', 1)
    """

    def wrap(fn: Callable[[WorkflowContext, I], Awaitable[O]]) -> Workflow[I, O]:
        return Workflow(fn, name or str(getattr(fn, "__name__", "")), version)

    return wrap


class WorkflowContext:
    """The context of one workflow run, passed as the first argument.

    Every checkpoint is committed through Raft before the function goes on.
    On the owner, the step's function runs once per successful commit; on
    replicas and on replay the committed value is returned without running it.
    """

    def __init__(self, run: _core.Run, codec: Codec, commits: Optional[Commits] = None) -> None:
        self._run = run
        self._codec = codec
        self._commits = commits
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
        self, name: str, fn: Callable[[], Awaitable[T]], *, result_type: Any = None
    ) -> T: ...

    @overload
    async def checkpoint(self, name: str, fn: Callable[[], T], *, result_type: Any = None) -> T: ...

    async def checkpoint(
        self,
        name: str,
        fn: Callable[[], Union[Awaitable[T], T]],
        *,
        result_type: Any = None,
    ) -> T:
        """A durable step named ``name``: ``fn`` (sync or async) runs on the
        owner only, its value is committed, and every replica returns the
        committed value.

        The value is decoded into ``result_type``, or into ``fn``'s return
        annotation, so dataclasses come back as dataclasses on every replica.
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
        slot = self._run.slot_now(name)
        if slot is None:  # a replica ahead of the owner's commits
            slot = await self._run.slot(name)
        if isinstance(slot, bytes):
            return typing.cast(T, self._codec.decode(slot, hint))
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        try:
            data = self._codec.encode(value)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"checkpoint '{name}' (seq {slot.seq}) of workflow "
                f"'{self.workflow_id}': cannot encode its value: {e}; return a "
                "JSON-compatible value, a dataclass or a pydantic model, or pass "
                "a codec that handles it"
            ) from e
        if self._commits is not None:
            committed = await self._commits.commit(self._run, slot, data)
        else:
            committed = await self._run.commit(slot, data)
        return typing.cast(T, self._codec.decode(committed, hint))


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
