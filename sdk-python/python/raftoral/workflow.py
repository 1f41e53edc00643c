"""Workflow definitions (:func:`workflow`) and :class:`WorkflowContext`."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
import typing
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Generic,
    Optional,
    TypeVar,
    Union,
    overload,
)
from uuid import UUID

from . import _core
from ._attempts import _INTERRUPTED, _TIMED_OUT, _Attempt, _failure, _Interrupted, _TimedOut
from ._core import NOW_STEP
from ._log import _WorkflowLogger
from .codec import Codec, JsonCodec
from .errors import (
    ApplicationError,
    Cancelled,
    InvalidArgument,
    NonDeterminism,
    NotFound,
    NotRunning,
    RaftoralError,
    ResourceExhausted,
    ShuttingDown,
    WorkflowFailed,
)
from .retry import DEFAULT, RetryPolicy
from .types import ParentClose

if TYPE_CHECKING:
    from ._bridge import Commits, Slot
    from .client import Client

I = TypeVar("I")  # noqa: E741 - the usual name for an input type
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

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


class Durable(Coroutine[Any, Any, T]):
    """A durable operation whose position in the workflow's history is
    already taken: what :meth:`WorkflowContext.checkpoint`,
    :meth:`WorkflowContext.sleep` (and :meth:`~WorkflowContext.sleep_until`),
    :meth:`WorkflowContext.wait_event`, :meth:`WorkflowContext.set_status`
    and :meth:`WorkflowContext.call_child` return, :meth:`WorkflowContext.awakeable`
    (an :class:`Awakeable`), :meth:`ChildHandle.result`, and the calls to
    other workflows (:meth:`WorkflowContext.signal_workflow`,
    :meth:`WorkflowContext.workflow_result`).

    The position is taken when the method is called, before anything is
    awaited, so operations keep their call order in the history however
    they are awaited afterwards. Then, once:

    - ``await`` it for its result (``await ctx.checkpoint(...)``);
    - or run it with others (``asyncio.gather``, ``asyncio.create_task``:
      it is a coroutine);
    - or race it with :meth:`WorkflowContext.first`, which needs it not
      awaited yet (sleeps, steps, waits for an event, awakeables and child
      workflows' results; a status set is not raced).

    Not awaiting it at all leaves its position taken and never resolved.
    """

    __slots__ = (
        "_coro",
        "_ctx",
        "_started",
        "is_child",
        "is_event",
        "is_status",
        "is_timer",
        "name",
        "seq",
    )

    def __init__(
        self,
        ctx: WorkflowContext,
        seq: int,
        name: str,
        is_timer: bool,
        coro: Coroutine[Any, Any, T],
        is_event: bool = False,
        is_status: bool = False,
        is_child: bool = False,
    ) -> None:
        self._ctx = ctx
        self._coro = coro
        self._started = False
        self.seq = seq
        """The 0-based position of the operation in the workflow's history."""
        self.name = name
        """The step's or the sleep's name, the event's a wait is for, the
        status key a status set sets, or an awakeable's id."""
        self.is_timer = is_timer
        """True for a durable sleep, False for a step, a wait for an event
        or a status set."""
        self.is_event = is_event
        """True for a wait for an event (:meth:`WorkflowContext.wait_event`)."""
        self.is_status = is_status
        """True for a status set (:meth:`WorkflowContext.set_status`)."""
        self.is_child = is_child
        """True for a child workflow's result (:meth:`WorkflowContext.call_child`,
        :meth:`ChildHandle.result`)."""

    def __await__(self) -> Generator[Any, None, T]:
        self._started = True
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        self._started = True
        return self._coro.send(value)

    def throw(
        self, typ: Any, val: Any = None, tb: Optional[TracebackType] = None
    ) -> Any:  # the signatures of Coroutine.throw
        self._started = True
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy form

    def close(self) -> None:
        self._coro.close()

    @property
    def _what(self) -> str:
        if self.is_event:
            return "wait_event"
        if self.is_status:
            return "set_status"
        if self.is_child:
            return "child"
        return "sleep" if self.is_timer else "checkpoint"

    @property
    def __name__(self) -> str:  # what asyncio shows of a task running it
        return f"Durable[{self._what} {self.name!r} seq={self.seq}]"

    def __repr__(self) -> str:
        return f"<Durable {self._what} {self.name!r} seq={self.seq}>"


class Awakeable(Durable[T]):
    """A durable future that is completed from outside by its :attr:`id`:
    what :meth:`WorkflowContext.awakeable` returns. Hand the id out (to a
    payment provider's callback, a person's approval link, another
    service), then ``await`` the awakeable (once) for the value it was
    resolved with, decoded as a step's value is; it raises
    :class:`~raftoral.StepFailed` when it was rejected. A
    :class:`Durable`: it can also run side by side with other operations
    (``asyncio.gather``), or be raced with :meth:`WorkflowContext.first`
    (against a sleep, to stop waiting after a while).
    """

    __slots__ = ("id",)

    def __init__(
        self, ctx: WorkflowContext, seq: int, id: str, coro: Coroutine[Any, Any, T]
    ) -> None:
        super().__init__(ctx, seq, id, False, coro)
        self.id = id
        """The id that completes it, ``awk/SEQ/WORKFLOW_ID``: pass it
        unchanged to :meth:`Client.resolve_awakeable
        <raftoral.Client.resolve_awakeable>` or :meth:`Client.reject_awakeable
        <raftoral.Client.reject_awakeable>` (or any SDK's). The same on every
        replica and in every replay."""

    @property
    def _what(self) -> str:
        return "awakeable"

    def __repr__(self) -> str:
        return f"<Awakeable {self.id!r} seq={self.seq}>"


class ChildHandle(Generic[T]):
    """A child workflow the code started, its start committed: what
    :meth:`WorkflowContext.start_child` returns. :attr:`id` names it (for a
    client's ``get_workflow``, ``signal_workflow``, ``cancel_workflow``);
    :meth:`result` is the durable of its result, to await (once), to run
    side by side with others (``asyncio.gather``) or to race with
    :meth:`WorkflowContext.first`::

        handle = await ctx.start_child("ship", parcel)
        await ctx.checkpoint("notify", lambda: notify(handle.id))
        tracking = await handle.result()
    """

    __slots__ = ("_ctx", "_durable", "_future", "_hint", "id", "seq", "workflow")

    def __init__(
        self,
        ctx: WorkflowContext,
        req: _core.ChildRequest,
        workflow: str,
        future: Awaitable[bytes],
        hint: Any,
    ) -> None:
        self._ctx = ctx
        self._future = future
        self._hint = hint
        self._durable: Optional[Durable[T]] = None
        self.id: str = req.id
        """The child's workflow id: the one given to ``start_child``, or
        ``PARENT_ID/SEQ`` (the same in every replay)."""
        self.seq: int = req.seq
        """The child's position in this workflow's history."""
        self.workflow: str = workflow
        """The child's workflow type."""

    def result(self) -> Durable[T]:
        """The child's result as a :class:`Durable` (the same object at
        every call): ``await handle.result()`` returns the value the child
        returned, decoded with the worker's codec into the ``result_type``
        given to ``start_child``, or raises :class:`~raftoral.StepFailed`
        with the child's failure (``type`` the child's error type,
        ``raftoral.ChildCancelled`` for a cancelled child,
        ``raftoral.WorkflowTimeout`` for one that timed out;
        ``error_message`` its message)."""
        if self._durable is None:
            coro = self._ctx._child_value(self._future, self._hint)
            self._durable = Durable(self._ctx, self.seq, self.id, False, coro, is_child=True)
        return self._durable

    def __repr__(self) -> str:
        return f"<ChildHandle {self.workflow!r} id={self.id!r} seq={self.seq}>"


_NO_EVENT: Any = object()
"""What a wait of :class:`EventStream` resolves to when its timeout passed
first (``wait_event`` resolves to None then: a payload of JSON ``null``
decodes to None too)."""


class EventStream(AsyncIterator[T]):
    """The events of one name as an async iterator: what
    :meth:`WorkflowContext.events` returns, to use with ``async for``.

    Each item is one durable wait for the event
    (:meth:`WorkflowContext.wait_event`), whose position is taken when the
    code asks for the item (``__anext__``), so the history is exactly that
    of waits one after another. It ends (``StopAsyncIteration``) at the
    first wait whose timeout passed first, and after an item that raised;
    it holds nothing between items, so breaking out of the loop leaves
    later events in the inbox. One item at a time: asking for the next
    while one is still awaited raises :class:`~raftoral.InvalidArgument`.
    """

    __slots__ = ("_ctx", "_done", "_hint", "_name", "_taking", "_timeout")

    def __init__(
        self, ctx: WorkflowContext, name: str, timeout: Optional[float], hint: Any
    ) -> None:
        self._ctx = ctx
        self._name = name
        self._timeout = timeout
        self._hint = hint
        self._done = False
        self._taking = False

    @property
    def name(self) -> str:
        """The name of the events it takes."""
        return self._name

    def __aiter__(self) -> EventStream[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        if self._done:
            return _ended()
        if self._taking:
            raise InvalidArgument(
                f"events '{self._name}' of workflow '{self._ctx.workflow_id}': the previous "
                "item is still awaited; take one item at a time"
            )
        try:
            # The position is taken now, when the item is asked for.
            wait = self._ctx._wait_event(self._name, self._timeout, self._hint, _NO_EVENT)
        except BaseException:
            self._done = True
            raise
        self._taking = True
        return self._take(wait)

    async def _take(self, wait: Durable[Any]) -> T:
        try:
            value = await wait
        except BaseException:
            self._done = True
            raise
        finally:
            self._taking = False
        if value is _NO_EVENT:
            self._done = True
            raise StopAsyncIteration
        return typing.cast(T, value)

    def __repr__(self) -> str:
        state = "ended" if self._done else "open"
        return f"<EventStream {self._name!r} {state}>"


async def _ended() -> Any:
    """The item of an :class:`EventStream` that has ended."""
    raise StopAsyncIteration


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Marks the outcome of a task nobody awaits as seen (asyncio logs
    exceptions never retrieved)."""
    if not task.cancelled():
        task.exception()


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
        abandoned: Optional[set[asyncio.Task[Any]]] = None,
        client: Optional[Client] = None,
    ) -> None:
        self._run = run
        self._codec = codec
        # The worker's client (its sidecar connection): what the durable
        # calls to other workflows (signal_workflow, workflow_result) use.
        self._client = client
        self._commits = commits
        self._retry = retry or DEFAULT
        self._active = True
        self._logger: Optional[_WorkflowLogger] = None
        # The reason of the workflow's cancellation, once known here (see
        # _on_cancel, _on_interrupt); what wait_cancelled awaits.
        self._cancel_reason: Optional[str] = None
        self._cancel_outcome: Optional[asyncio.Future[Optional[str]]] = None
        # True once the run's interruption watcher is armed (see _watch).
        self._watching = False
        # Step attempts awaited now, which an interruption stops.
        self._running: set[_Attempt] = set()
        # The losing steps of races, still running (the worker's set: it
        # stops those left when it shuts down).
        self._abandoned: set[asyncio.Task[Any]] = abandoned if abandoned is not None else set()

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
    def checkpoint(
        self,
        name: str,
        fn: Callable[[], Awaitable[T]],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
        thread: bool = False,
    ) -> Durable[T]: ...

    @overload
    def checkpoint(
        self,
        name: str,
        fn: Callable[[], T],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
        thread: bool = False,
    ) -> Durable[T]: ...

    def checkpoint(
        self,
        name: str,
        fn: Callable[[], Union[Awaitable[T], T]],
        *,
        result_type: Any = None,
        retry: Optional[RetryPolicy] = None,
        thread: bool = False,
    ) -> Durable[T]:
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

        The policy's ``attempt_timeout`` bounds each attempt (see
        :class:`~raftoral.RetryPolicy`): an async ``fn`` still running then
        is cancelled and the attempt fails with type ``AttemptTimeout``.

        A sync ``fn`` runs on the event loop by default, which it blocks
        while it runs: keep it short (computing, formatting, a quick local
        call). ``thread=True`` runs it in the loop's default executor
        (:func:`asyncio.to_thread`, with this task's context variables, so
        :func:`raftoral.step_attempt` works there) for blocking work such
        as a synchronous HTTP client or a file copy; other workflows and the
        heartbeats go on meanwhile. It is not the default because a thread
        costs a hand-over per attempt (0.05 to 0.2 ms, more than the rest
        of a short step), and because sync steps on the loop never run
        at the same time as one another: steps side by side that share
        state need no lock, code that touches asyncio objects works. The
        step's position is taken when ``checkpoint`` is called either way,
        so steps side by side keep their call order in the history whatever
        order their threads finish in. A thread cannot be interrupted: when
        the workflow is cancelled or the attempt times out, the step stops
        waiting for it and the thread runs on to its end, its value unused.

        When the workflow's cancel is requested while an async ``fn`` (or
        a threaded one) runs on the owner, its attempt is cancelled:
        :class:`asyncio.CancelledError` reaches ``fn`` at its current
        ``await`` (clean up in ``finally``, or let it propagate), nothing of
        it is committed, and this call raises :class:`~raftoral.Cancelled`
        (a step or sleep awaited then raises it; with none awaited, the next
        one taken does). Steps taken after that run as usual: catch it to
        compensate, then raise it again so the workflow ends CANCELLED (a
        value returned ends it COMPLETED, another error FAILED)::

            try:
                await ctx.checkpoint("charge", charge)
            except raftoral.Cancelled:
                await ctx.checkpoint("refund", refund)
                raise

        The cleanup has until the cancel's window runs out
        (``client.cancel_workflow(..., cleanup=...)``); then every step
        raises :class:`~raftoral.Cancelled`. ``fn`` can also look at
        :attr:`is_cancelled` or await :meth:`wait_cancelled`.

        The step's position is taken when ``checkpoint`` is called: it
        returns a :class:`~raftoral.Durable` to await (once), to run side by
        side with others, or to race with :meth:`first`.

        Raises :class:`~raftoral.Cancelled` where the workflow's cancellation
        is delivered (or once it is cancelled for good),
        :class:`~raftoral.NonDeterminism` when the history has another name at
        this position, :class:`~raftoral.InvalidArgument` when the value
        cannot be encoded (nothing is committed then) or ``thread=True`` is
        given an ``async`` function (that one, and a non-determinism, at the
        call).
        """
        self._check_active(name)
        if thread and inspect.iscoroutinefunction(fn):
            raise InvalidArgument(
                f"checkpoint '{name}': thread=True runs a sync function in a thread; "
                f"{getattr(fn, '__name__', 'fn')} is async: drop thread=True"
            )
        hint = result_type if result_type is not None else _return_hint(fn)
        # The position is taken now, in call order.
        req = self._run.request(name)
        settle = self._settle(name, req, fn, hint, retry or self._retry, self._codec, thread)
        return Durable(self, req.seq, name, False, settle)

    async def _step(
        self,
        name: str,
        fn: Callable[[], Union[Awaitable[T], T]],
        hint: Any,
        policy: RetryPolicy,
        codec: Codec,
    ) -> T:
        """The step ``name`` (its position taken now): see :meth:`_settle`."""
        req = self._run.request(name)
        return await self._settle(name, req, fn, hint, policy, codec)

    async def _settle(
        self,
        name: str,
        req: _core.SlotRequest,
        fn: Callable[[], Union[Awaitable[T], T]],
        hint: Any,
        policy: RetryPolicy,
        codec: Codec,
        thread: bool = False,
    ) -> T:
        """The step ``name`` at the position of ``req``: its committed
        value, or ``fn``'s (retried per ``policy``; in a thread with
        ``thread``) once committed; values go through ``codec``."""
        # The run's interruptions before the slot is asked for: only later
        # ones stop the attempt it may hand out (see _guarded).
        epoch = self._run.interrupts
        slot = await self._slot(req)
        while not isinstance(slot, bytes):
            token = slot
            if self._run.interrupts > epoch:
                # Interrupted since: start nothing, the core decides again
                # what this position gets (Cancelled, a value, an attempt).
                epoch = self._run.interrupts
                slot = await self._slot(req)
                continue
            reset = _attempt.set(token.attempt)
            limit = policy.attempt_timeout
            try:
                if thread:
                    value = await self._guarded(asyncio.to_thread(fn), limit, epoch)
                else:
                    started = time.monotonic() if limit is not None else 0.0
                    value = fn()
                    if inspect.isawaitable(value):
                        value = await self._guarded(value, limit, epoch)
                    elif limit is not None and time.monotonic() - started > limit:
                        # A sync function cannot be stopped: it ran to its
                        # end, past the limit, so its value is dropped.
                        raise _TimedOut
            except _Interrupted:
                # The attempt was stopped (a cancellation came): nothing of
                # it is committed, and the core decides what the position
                # gets: Cancelled where the cancellation was delivered, a
                # value committed meanwhile, or the attempt again.
                epoch = self._run.interrupts
                slot = await self._slot(req)
                continue
            except _TimedOut:
                timed_out = policy._native.timeout_failure(token.attempt)
                epoch = self._run.interrupts
                slot = await self._fail(token, timed_out, policy)
                continue
            except (Cancelled, ShuttingDown, NotRunning, NonDeterminism, asyncio.CancelledError):
                # The run's own end, not the step's failure: it propagates.
                raise
            except Exception as e:
                epoch = self._run.interrupts
                slot = await self._fail(token, _failure(e), policy)
                continue
            finally:
                _attempt.reset(reset)
            try:
                data = codec.encode(value)
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
        return typing.cast(T, codec.decode(slot, hint))

    async def _slot(self, req: _core.SlotRequest) -> Slot:
        """The slot of ``req``: its committed value, or a compute token;
        raises what the core decided there (:class:`~raftoral.Cancelled`,
        :class:`~raftoral.StepFailed`, ...)."""
        slot = self._run.slot_now(req)
        if slot is None:  # a replica ahead of the owner, or not its turn yet
            if self._commits is not None:
                return await self._commits.slot(self._run, req)
            return await self._run.slot(req)
        if isinstance(slot, bytes):
            # A replayed value is handed out at once; yield once as a live
            # commit does, so side-by-side branches take their next
            # positions in the same order live and in a replay.
            await asyncio.sleep(0)
        return slot

    async def now(self) -> datetime:
        """The current time, recorded: the owner reads its clock once and
        commits it as a step named ``raftoral.now`` (integer milliseconds
        since the Unix epoch, as JSON whatever the codec, so every SDK reads
        it back), and replicas and every replay get that same instant. A
        timezone-aware UTC :class:`~datetime.datetime`, to the millisecond.

        It costs a step (a Raft commit): read it once and keep it rather
        than calling it in a loop::

            started = await ctx.now()
            await ctx.checkpoint("receipt", lambda: f"paid at {started.isoformat()}")

        Raises what :meth:`checkpoint` raises (:class:`~raftoral.Cancelled`,
        :class:`~raftoral.NonDeterminism`, ...).
        """
        self._check_active(NOW_STEP)
        ms = await self._step(NOW_STEP, _clock_ms, int, self._retry, _JSON)
        return _EPOCH + timedelta(milliseconds=ms)

    def sleep(self, delay: Union[float, timedelta], *, name: str = "sleep") -> Durable[None]:
        """Sleeps durably for ``delay`` (seconds, or a
        :class:`~datetime.timedelta`): the timer is committed with its
        deadline and the cluster fires it, so the wait survives the death of
        this worker, of its node or of the Raft leader, and a replay of a
        sleep that already fired returns at once::

            await ctx.checkpoint("order", place_order)
            await ctx.sleep(timedelta(days=1), name="wait-a-day")
            await ctx.checkpoint("reminder", send_reminder)

        A sleep takes a position in the history like a step, when ``sleep``
        is called (it returns a :class:`~raftoral.Durable`, to await once),
        so sleeps and steps started side by side keep their call order::

            await asyncio.gather(ctx.sleep(5), ctx.checkpoint("poll", poll))

        Race it with a step to wait at most so long (see :meth:`first`)::

            index, receipt = await ctx.first(
                ctx.sleep(timedelta(minutes=30), name="deadline"),
                ctx.checkpoint("payment", wait_for_payment),
            )

        ``name`` is checked on replay as a step's: the code must sleep where
        the history has a sleep of that name (a changed duration is not
        non-determinism: the committed deadline stands). Durations are kept
        to the millisecond; 0 is a sleep too (committed, fired at once).

        Raises :class:`~raftoral.InvalidArgument` for a negative duration or
        one longer than 366 days (sleep in several steps for longer), and
        :class:`~raftoral.NonDeterminism` when the history has something
        else at this position, at the call; :class:`~raftoral.Cancelled`
        when the workflow is cancelled while it sleeps.
        """
        self._check_active(name)
        if isinstance(delay, timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise InvalidArgument(
                f"sleep '{name}' of workflow '{self.workflow_id}': the delay is a number "
                f"of seconds or a datetime.timedelta, got {type(delay).__name__}"
            )
        # The position is taken now, in call order, as a step's is.
        req = self._run.request_timer(name, seconds)
        return Durable(self, req.seq, name, True, self._timer(req))

    async def _timer(self, req: _core.TimerRequest) -> None:
        """Waits for the timer of ``req`` to fire (its start is proposed
        first)."""
        if self._commits is not None:
            await self._commits.timer(self._run, req)
        else:
            await self._run.timer(req)

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> Durable[None]:
        """Sleeps durably until ``when``, a timezone-aware
        :class:`~datetime.datetime`: a :meth:`sleep` of the time left on
        this machine's clock when it is called (0 once ``when`` has passed).
        The duration is committed, so a replay or another owner waits for
        the same deadline whatever its own clock says::

            due = datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
            await ctx.sleep_until(due, name="new-year")

        Raises :class:`ValueError` for a naive datetime (its time zone is
        unknown), and what :meth:`sleep` raises.
        """
        if not isinstance(when, datetime):
            raise InvalidArgument(
                f"sleep_until '{name}': expected a datetime.datetime, got {type(when).__name__}"
            )
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"sleep_until '{name}' of workflow '{self.workflow_id}': {when.isoformat()} "
                "is a naive datetime; give it a time zone (e.g. tzinfo=timezone.utc)"
            )
        left = (when - datetime.now(timezone.utc)).total_seconds()
        return self.sleep(max(0.0, left), name=name)

    @overload
    def wait_event(
        self,
        name: str,
        timeout: Union[float, timedelta, None] = None,
        *,
        result_type: type[T],
    ) -> Durable[Optional[T]]: ...

    @overload
    def wait_event(
        self,
        name: str,
        timeout: Union[float, timedelta, None] = None,
        *,
        result_type: Any = None,
    ) -> Durable[Any]: ...

    def wait_event(
        self,
        name: str,
        timeout: Union[float, timedelta, None] = None,
        *,
        result_type: Any = None,
    ) -> Durable[Any]:
        """Waits durably for the event ``name`` sent to this workflow from
        outside (:meth:`Client.signal_workflow <raftoral.Client.signal_workflow>`,
        ``handle.signal(...)``, or any SDK's client): resolves to its payload,
        decoded into ``result_type`` as a step's value is, or to ``None``
        when ``timeout`` (seconds, or a :class:`~datetime.timedelta`; None:
        wait as long as it takes) passed first. An approval that must come
        within a day::

            @raftoral.workflow(name="expense", version=1)
            async def expense(ctx: raftoral.WorkflowContext, claim: Claim) -> str:
                await ctx.checkpoint("submit", lambda: notify_manager(claim))
                decision = await ctx.wait_event(
                    "approval", timedelta(hours=24), result_type=Decision
                )
                if decision is None:
                    return await ctx.checkpoint("escalate", lambda: escalate(claim))
                if not decision.approved:
                    return "rejected"
                return await ctx.checkpoint("pay", lambda: pay(claim))

            # elsewhere, when the manager clicks:
            await client.signal_workflow(claim_id, "approval", Decision(approved=True))

        The wait is durable: it survives the death of this worker, of its
        node or of the Raft leader, and a replay of a wait that already
        resolved returns its payload (or ``None``) at once. The cluster
        decides it, by log order, the same on every replica and in every
        replay: an event sent before the wait waits in the workflow's
        inbox and is taken at once; events of a name are taken first in,
        first out, one per wait; when the timeout passes first the wait
        resolves to ``None`` and an event sent after it stays in the inbox
        for the next wait of that name. A payload of JSON ``null`` also
        decodes to ``None``: send a value if the code must tell it from a
        timeout.

        The position is taken when ``wait_event`` is called, like a step's
        (it returns a :class:`~raftoral.Durable`, to await once), so waits,
        sleeps and steps started side by side keep their call order. ``name``
        is checked on replay as a step's. It can be raced with
        :meth:`first`, e.g. against a sleep, to act when no approval came
        within a day (a reminder) and still take the approval when it
        comes first::

            index, decision = await ctx.first(
                ctx.wait_event("approval", result_type=Decision),
                ctx.sleep(timedelta(hours=24), name="reminder"),
            )
            if index == 1:  # no approval within 24 h
                await ctx.checkpoint("remind", lambda: remind_manager(claim))

        A wait that loses a race is cancelled (``EVENT_WAIT_CANCELLED`` in
        the history): it takes no event any more, and an event it took
        already goes back to the workflow, for the next wait of that name.

        Raises :class:`~raftoral.InvalidArgument` for a negative timeout or
        one longer than 366 days, and :class:`~raftoral.NonDeterminism` when
        the history has something else at this position, at the call;
        :class:`~raftoral.Cancelled` when the workflow is cancelled while it
        waits.
        """
        seconds = self._seconds("wait_event", name, timeout)
        return self._wait_event(name, seconds, result_type, None)

    def _seconds(
        self, what: str, name: str, timeout: Union[float, timedelta, None]
    ) -> Optional[float]:
        """``timeout`` in seconds (None: none); raises
        :class:`~raftoral.InvalidArgument` for another type."""
        self._check_active(name)
        if timeout is None:
            return None
        if isinstance(timeout, timedelta):
            return timeout.total_seconds()
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            return float(timeout)
        raise InvalidArgument(
            f"{what} '{name}' of workflow '{self.workflow_id}': the timeout is a "
            f"number of seconds, a datetime.timedelta or None, got {type(timeout).__name__}"
        )

    def _wait_event(
        self, name: str, seconds: Optional[float], hint: Any, on_timeout: Any
    ) -> Durable[Any]:
        """Takes the position of a wait for the event ``name`` now, in call
        order as a step's is; the wait resolves to the payload decoded into
        ``hint``, or to ``on_timeout`` when its timeout passed first."""
        self._check_active(name)
        req = self._run.request_event(name, seconds)
        coro = self._event(req, hint, on_timeout)
        return Durable(self, req.seq, name, False, coro, is_event=True)

    async def _event(self, req: _core.EventRequest, hint: Any, on_timeout: Any) -> Any:
        """The payload the wait of ``req`` got, decoded into ``hint``, or
        ``on_timeout`` when its timeout passed first (the wait is proposed
        first)."""
        if self._commits is not None:
            payload = await self._commits.event(self._run, req)
        else:
            payload = await self._run.event(req)
        if payload is None:  # timed out; a JSON null payload is b"null"
            return on_timeout
        return self._codec.decode(payload, hint)

    @overload
    def events(
        self,
        name: str,
        *,
        timeout: Union[float, timedelta, None] = None,
        result_type: type[T],
    ) -> EventStream[T]: ...

    @overload
    def events(
        self,
        name: str,
        *,
        timeout: Union[float, timedelta, None] = None,
        result_type: Any = None,
    ) -> EventStream[Any]: ...

    def events(
        self,
        name: str,
        *,
        timeout: Union[float, timedelta, None] = None,
        result_type: Any = None,
    ) -> EventStream[Any]:
        """The events named ``name`` as an async iterator, first in, first
        out: each item is one durable wait (:meth:`wait_event`, with the
        same ``timeout`` and ``result_type``), taken when the loop asks for
        the next item, so the history is exactly that of waits one after
        another (a replay, or another SDK's code making the waits, sees
        the same). Events sent before the loop started wait in the inbox
        and come first. A batch of items until the sender goes quiet::

            @raftoral.workflow(name="cart", version=1)
            async def cart(ctx: raftoral.WorkflowContext, user: str) -> list[Item]:
                items: list[Item] = []
                async for item in ctx.events("add", timeout=timedelta(hours=1), result_type=Item):
                    items.append(item)
                    if len(items) == 10:
                        break  # later events stay in the inbox
                await ctx.checkpoint("order", lambda: place_order(user, items))
                return items

        With a ``timeout`` (seconds, or a :class:`~datetime.timedelta`, for
        each wait), the iteration ends at the first wait that times out
        (its history has ``EVENT_TIMED_OUT``); an event sent after that
        stays in the inbox for the next wait of its name. Without one it
        never ends: ``break`` out when the code has what it needs. Nothing
        is held between items, so after a ``break`` the later events stay
        in the inbox. Unlike :meth:`wait_event`, an item is never ``None``
        for a timeout: a payload of JSON ``null`` is an item (``None``),
        not the end.

        Raises :class:`~raftoral.InvalidArgument` at the call for a timeout
        of another type; when an item is asked for (as :meth:`wait_event`
        at its call) for a negative timeout or one longer than 366 days,
        and :class:`~raftoral.NonDeterminism` when the history has something
        else at the item's position; :class:`~raftoral.Cancelled` when the
        workflow is cancelled while it waits. The iteration ends after an
        item that raised.
        """
        return EventStream(self, name, self._seconds("events", name, timeout), result_type)

    def set_status(self, key: str, value: Any) -> Durable[None]:
        """Sets this workflow's readable status ``key`` to ``value``
        (encoded with the worker's codec, as a step's value is: JSON by
        default), for clients to read with :meth:`Client.get_status
        <raftoral.Client.get_status>` (or any SDK's) from any node, also
        while this workflow's node is down and after it ended. What a
        dashboard shows of a long workflow, without a step to compute it::

            @raftoral.workflow(name="order", version=1)
            async def order(ctx: raftoral.WorkflowContext, order_id: str) -> str:
                await ctx.set_status("stage", "charging")
                await ctx.checkpoint("charge", lambda: charge(order_id))
                await ctx.set_status("stage", "shipping")
                await ctx.wait_event("shipped")
                await ctx.set_status("stage", "done")
                return "ok"

            # elsewhere:
            status = await client.get_status("order-42")  # {"stage": "shipping"}

        Each call commits a ``STATUS_SET`` entry with the key and value (the
        encoded bytes as they are); a client reads the latest value of each
        key. It takes a position in
        the history like a step, when ``set_status`` is called (it returns
        a :class:`~raftoral.Durable`, to await once: ``await
        ctx.set_status(...)`` returns once the value is committed), so
        statuses, steps, sleeps and waits started side by side keep their
        call order; ``key`` is checked on replay as a step's name. A replay
        (after a restart or a failover) returns at once and does not set
        it again. It cannot be raced with :meth:`first`.

        A status is a small summary, not data: the encoded value must be at
        most 64 KiB. Any codec's output is kept; a client decodes it with
        its own codec, so read it with the same codec (JSON, the default,
        is what every SDK's ``get_status`` reads).

        Raises :class:`~raftoral.InvalidArgument` for a value that cannot
        be encoded or is over 64 KiB (nothing is committed and no position
        is taken then), and
        :class:`~raftoral.NonDeterminism` when the history has something
        else (or another key) at this position, at the call;
        :class:`~raftoral.Cancelled` where the workflow's cancellation is
        delivered.
        """
        self._check_active(key)
        try:
            data = self._codec.encode(value)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"status '{key}' of workflow '{self.workflow_id}': cannot encode its value: "
                f"{e}; nothing was set"
            ) from e
        # The position is taken now, in call order, as a step's is.
        req = self._run.request_status(key, data)
        return Durable(self, req.seq, key, False, self._status(req), is_status=True)

    async def _status(self, req: _core.StatusRequest) -> None:
        """Waits for the status of ``req`` to be committed (at once in a
        replay)."""
        if self._commits is not None:
            await self._commits.status(self._run, req)
        else:
            await self._run.status(req)

    @overload
    def awakeable(self, *, result_type: type[T]) -> Awakeable[T]: ...

    @overload
    def awakeable(self, *, result_type: Any = None) -> Awakeable[Any]: ...

    def awakeable(self, *, result_type: Any = None) -> Awakeable[Any]:
        """Creates an awakeable: a durable future that anyone holding its
        :attr:`~raftoral.Awakeable.id` completes once, through any node,
        with :meth:`Client.resolve_awakeable
        <raftoral.Client.resolve_awakeable>` (a value) or
        :meth:`Client.reject_awakeable <raftoral.Client.reject_awakeable>`
        (an error), or any SDK's. For a completion that comes from outside
        and is addressed by an id you hand out, such as a payment
        provider's webhook::

            @raftoral.workflow(name="checkout", version=1)
            async def checkout(ctx: raftoral.WorkflowContext, order: Order) -> str:
                paid = ctx.awakeable(result_type=Receipt)
                # The provider calls back with this id once the customer paid.
                await ctx.checkpoint("payment", lambda: create_payment(order, paid.id))
                try:
                    receipt = await paid
                except raftoral.StepFailed as e:  # rejected: e.type, e.error_message
                    await ctx.checkpoint("release", lambda: release_stock(order))
                    return f"not paid: {e.error_message}"
                return await ctx.checkpoint("ship", lambda: ship(order, receipt))

            # in the webhook handler, any process, any node:
            await client.resolve_awakeable(callback_id, Receipt(amount=42))
            # or: await client.reject_awakeable(callback_id, "card declined", type="Declined")

        (The id can also be published with :meth:`set_status`, for a
        client that reads it with ``get_status``.)

        The awaited awakeable returns the value it was resolved with,
        decoded with the worker's codec into ``result_type`` as a step's
        value is (``None`` for ``resolve_awakeable(id)`` without a value),
        or raises :class:`~raftoral.StepFailed` with the rejection's
        ``type`` and ``error_message`` (``step`` is the id; catch it as a
        step's failure). A completion that comes before the code awaits it
        is kept until it does. The wait is durable, like
        :meth:`wait_event`'s (it is an event wait for a reserved name, with
        no timeout): it survives the death of this worker, of its node or
        of the Raft leader, and a replay gets the same value (or the same
        rejection) at once.

        The position is taken when ``awakeable`` is called, like a step's
        (it returns an :class:`~raftoral.Awakeable`, a
        :class:`~raftoral.Durable` to await once), so the id is known at
        once and is the same in every replay: ``awk/SEQ/WORKFLOW_ID``, SEQ
        its position. It can be raced with :meth:`first`, e.g. against a
        sleep, to stop waiting after a while::

            paid = ctx.awakeable(result_type=Receipt)
            await ctx.checkpoint("payment", lambda: create_payment(order, paid.id))
            index, receipt = await ctx.first(paid, ctx.sleep(timedelta(hours=24)))
            if index == 1:  # not paid within 24 h
                return await ctx.checkpoint("release", lambda: release_stock(order))

        An awakeable that loses a race is cancelled
        (``EVENT_WAIT_CANCELLED`` in the history): nothing waits for it any
        more, and a completion it took already is not used.

        Raises :class:`~raftoral.NonDeterminism` when the history has
        something else at this position, at the call;
        :class:`~raftoral.Cancelled` when the workflow is cancelled while
        it waits.
        """
        self._check_active("awakeable")
        # The position (and so the id) is taken now, in call order.
        req = self._run.awakeable()
        return Awakeable(self, req.seq, req.id, self._awakeable(req, result_type))

    async def _awakeable(self, req: _core.AwakeableRequest, hint: Any) -> Any:
        """The value the awakeable of ``req`` was resolved with, decoded
        into ``hint`` (the wait is proposed first); raises
        :class:`~raftoral.StepFailed` when it was rejected."""
        if self._commits is not None:
            value = await self._commits.awakeable(self._run, req)
        else:
            value = await self._run.awakeable_value(req)
        assert isinstance(value, bytes)
        return self._codec.decode(value, hint)

    @overload
    def start_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: type[T],
    ) -> Coroutine[Any, Any, ChildHandle[T]]: ...

    @overload
    def start_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: Any = None,
    ) -> Coroutine[Any, Any, ChildHandle[Any]]: ...

    def start_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: Any = None,
    ) -> Coroutine[Any, Any, ChildHandle[Any]]:
        """Starts the child workflow ``workflow`` (its type, at ``version``)
        with ``input``, and returns (awaited) a :class:`ChildHandle` once
        its start is committed: the child is started by the cluster in the
        same entry as this workflow's ``CHILD_STARTED``, so it exists
        exactly once whatever fails, and a replay starts nothing. Fan out,
        then collect the results::

            @raftoral.workflow(name="shipments", version=1)
            async def shipments(ctx: raftoral.WorkflowContext, parcels: list[str]) -> list[str]:
                handles = [await ctx.start_child("ship", p, result_type=str) for p in parcels]
                return list(await asyncio.gather(*(h.result() for h in handles)))

        The child's id is ``id``, or ``PARENT_ID/SEQ`` (SEQ its position in
        this workflow) when none is given: the same in every replay. Its
        input is encoded with the worker's codec (the child's worker must
        read it: JSON, the default, is what every SDK reads) and its result
        decoded into ``result_type``.

        ``parent_close`` (a :class:`~raftoral.ParentClose` or its name)
        says what happens to the child if this workflow ends while it
        runs: ``"cancel"`` (the default) requests its cancel (its code gets
        :class:`~raftoral.Cancelled` and has 30 s to clean up),
        ``"abandon"`` lets it run on, ``"terminate"`` ends it at once.

        The position is taken when ``start_child`` is called (it returns a
        coroutine to await), like a step's, so children started side by
        side keep their call order. A child's failure is raised by its
        result as :class:`~raftoral.StepFailed` (the step-failure
        exception: ``type`` the child's error type,
        ``raftoral.ChildCancelled`` for a cancelled child, ``error_message``
        its message); a cancel of this workflow requested while it waits
        for a child raises :class:`~raftoral.Cancelled` there.

        Raises :class:`~raftoral.InvalidArgument` for this workflow's own
        id, an empty id, an input the codec cannot encode or an unknown
        ``parent_close`` (nothing is started), and
        :class:`~raftoral.NonDeterminism` when the history has something
        else (or a child of another type) at this position.
        """
        req = self._request_child(workflow, input, id, version, parent_close)
        future = self._child_future(req)
        handle: ChildHandle[Any] = ChildHandle(self, req, workflow, future, result_type)
        return self._started(req, handle)

    async def _started(self, req: _core.ChildRequest, handle: ChildHandle[T]) -> ChildHandle[T]:
        """``handle`` once the start of its child is committed."""
        if self._commits is not None:
            await self._commits.child_started(self._run, req)
        else:
            await self._run.child_started(req)
        return handle

    @overload
    def call_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: type[T],
    ) -> Durable[T]: ...

    @overload
    def call_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: Any = None,
    ) -> Durable[Any]: ...

    def call_child(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        version: int = 1,
        parent_close: Union[ParentClose, str] = ParentClose.CANCEL,
        result_type: Any = None,
    ) -> Durable[Any]:
        """Starts the child workflow ``workflow`` with ``input`` and
        returns (awaited) its result, decoded into ``result_type``: a
        :meth:`start_child` whose handle's result is awaited at once::

            try:
                receipt = await ctx.call_child("charge", order, result_type=Receipt)
            except raftoral.StepFailed as e:  # the child failed: e.type, e.error_message
                await ctx.checkpoint("release", lambda: release_stock(order))
                raise

        The position is taken when ``call_child`` is called: it returns a
        :class:`~raftoral.Durable`, to await (once), to run side by side
        with others (``asyncio.gather``) or to race with :meth:`first`
        (say against a sleep; a losing child runs on, to its
        ``parent_close`` policy). The arguments, and what it raises, are
        :meth:`start_child`'s: a failed, cancelled or timed-out child
        raises :class:`~raftoral.StepFailed` with the child's failure
        (``type``, ``error_message``).
        """
        req = self._request_child(workflow, input, id, version, parent_close)
        coro = self._child_value(self._child_future(req), result_type)
        return Durable(self, req.seq, req.id, False, coro, is_child=True)

    def _request_child(
        self,
        workflow: str,
        input: Any,
        id: Optional[str],
        version: int,
        parent_close: Union[ParentClose, str],
    ) -> _core.ChildRequest:
        """Takes the position of a child workflow now, in call order as a
        step's is, and proposes its start (on the owner)."""
        self._check_active(workflow)
        try:
            policy = ParentClose(parent_close)
        except ValueError:
            raise InvalidArgument(
                f"child workflow '{workflow}' of workflow '{self.workflow_id}': parent_close "
                f"is 'cancel', 'abandon' or 'terminate', got {parent_close!r}; nothing was started"
            ) from None
        try:
            data = self._codec.encode(input)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"child workflow '{workflow}' of workflow '{self.workflow_id}': cannot "
                f"encode its input: {e}; nothing was started"
            ) from e
        return self._run.request_child(workflow, version, data, id, policy.value)

    def _child_future(self, req: _core.ChildRequest) -> Awaitable[bytes]:
        """The outcome of the child of ``req`` (its encoded result, or its
        failure), asked for now: the start is proposed at once, whether the
        result is awaited or not."""
        if self._commits is not None:
            future: asyncio.Future[Any] = self._commits.child(self._run, req)
        else:
            future = asyncio.ensure_future(self._run.child(req))
        # A result nobody awaits (a child left to its policy) is no error.
        future.add_done_callback(_retrieve)
        return future

    async def _child_value(self, future: Awaitable[bytes], hint: Any) -> Any:
        """The child's result, decoded into ``hint``; raises its failure."""
        value = await future
        assert isinstance(value, bytes)
        return self._codec.decode(value, hint)

    def signal_workflow(self, target: str, name: str, payload: Any = None) -> Durable[bool]:
        """Sends the event ``name`` with ``payload`` to the workflow
        ``target`` (any workflow, by id), durably and once: a step named
        ``signal:{target}:{name}`` whose attempt sends the event through the
        worker's client (:meth:`Client.signal_workflow
        <raftoral.Client.signal_workflow>`). Resolves to ``True`` when the
        target had the event already (a duplicate), ``False`` when this call
        delivered it. The target's code takes it with
        :meth:`wait_event`::

            @raftoral.workflow(name="warehouse", version=1)
            async def warehouse(ctx: raftoral.WorkflowContext, order_id: str) -> str:
                tracking = await ctx.checkpoint("ship", lambda: ship(order_id))
                await ctx.signal_workflow(f"order-{order_id}", "shipped", tracking)
                return tracking

        The outcome is committed, so a replay does not send again. The send
        carries the idempotency key ``{workflow_id}/{position}`` (this
        step's position in the history): when the owner dies after sending
        and before the step's commit, the next owner's send is the same
        event again, and the target's inbox takes it once. ``payload`` is
        encoded with the worker's codec when this is called (an
        :class:`~raftoral.InvalidArgument` then, nothing sent, for one it
        cannot encode).

        A target that does not exist fails the step for good
        (:class:`~raftoral.StepFailed` of type ``raftoral.WorkflowNotFound``),
        and so does one that has ended (``raftoral.WorkflowEnded``) or that
        refuses the event (a bad name, a payload over the value limit, a
        full inbox: ``raftoral.SignalRefused``); an unreachable cluster is
        retried with the default policy (:data:`raftoral.retry.DEFAULT`)::

            try:
                await ctx.signal_workflow("order-42", "shipped", tracking)
            except raftoral.StepFailed as e:
                if e.type != "raftoral.WorkflowEnded":
                    raise

        Like :meth:`checkpoint`, the position is taken at the call: it
        returns a :class:`~raftoral.Durable` to await (once), to run side by
        side with others or to race with :meth:`first`.
        """
        step = f"signal:{target}:{name}"
        self._check_active(step)
        client = self._calls(step)
        try:
            data = self._codec.encode(payload)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"{step} of workflow '{self.workflow_id}': cannot encode the payload: {e}; "
                "nothing was sent"
            ) from e
        # The position is taken now, in call order; the key is this step's.
        req = self._run.request(step)
        key = f"{self.workflow_id}/{req.seq}"

        async def send() -> bool:
            try:
                duplicate, _ = await client._native.signal_workflow(target, name, data, key)
            except ShuttingDown:
                raise
            except RaftoralError as e:
                raise _call_failure(e, target) from None
            return duplicate

        coro: Coroutine[Any, Any, bool] = self._settle(step, req, send, bool, DEFAULT, _JSON)
        return Durable(self, req.seq, step, False, coro)

    @overload
    def workflow_result(self, target: str, *, result_type: type[T]) -> Durable[T]: ...

    @overload
    def workflow_result(self, target: str, *, result_type: Any = None) -> Durable[Any]: ...

    def workflow_result(self, target: str, *, result_type: Any = None) -> Durable[Any]:
        """Waits for the workflow ``target`` (any workflow, by id: not
        only a child) to end, durably: a step named ``result:{target}``
        whose value is the target's result, decoded with the worker's codec
        into ``result_type``::

            @raftoral.workflow(name="invoice", version=1)
            async def invoice(ctx: raftoral.WorkflowContext, order_id: str) -> str:
                total = await ctx.workflow_result(f"billing-{order_id}", result_type=int)
                return await ctx.checkpoint("send", lambda: send_invoice(order_id, total))

        The result is committed (the target's encoded result as it is), so
        a replay reads it and does not wait again; a new owner after a
        failover waits again. A target that failed fails the step for good
        with the target's own failure (:class:`~raftoral.StepFailed` whose
        ``type``, ``error_message`` and ``details`` are the target's; type
        ``raftoral.WorkflowFailed`` when its failure has none), a cancelled
        target with ``raftoral.WorkflowCancelled``, and a target that does
        not exist with ``raftoral.WorkflowNotFound``::

            try:
                total = await ctx.workflow_result("billing-42", result_type=int)
            except raftoral.StepFailed as e:  # e.type: the target's failure type
                await ctx.checkpoint("alert", lambda: alert(e.error_message))
                raise

        For a child this workflow started, :meth:`ChildHandle.result` is the
        usual way. Like :meth:`checkpoint`, the position is taken at the
        call: it returns a :class:`~raftoral.Durable`, to await (once), to
        run side by side with others or to race with :meth:`first` (against
        a sleep, to stop waiting after a while). Raises
        :class:`~raftoral.InvalidArgument` for this workflow's own id (it
        would wait for itself), at the call.
        """
        step = f"result:{target}"
        self._check_active(step)
        client = self._calls(step)
        if target == self.workflow_id:
            raise InvalidArgument(f"{step}: workflow '{target}' cannot wait for its own result")
        req = self._run.request(step)

        async def wait() -> bytes:
            try:
                return await client._native.result(target)
            except ShuttingDown:
                raise
            except RaftoralError as e:
                raise _call_failure(e, target) from None

        # The step's value is the encoded result, decoded into result_type.
        fn = typing.cast(Callable[[], Awaitable[Any]], wait)
        coro: Coroutine[Any, Any, Any] = self._settle(
            step, req, fn, result_type, DEFAULT, _Committed(self._codec)
        )
        return Durable(self, req.seq, step, False, coro)

    def _calls(self, step: str) -> Client:
        """The client the calls to other workflows go through: the
        worker's."""
        if self._client is None:
            raise InvalidArgument(
                f"{step} of workflow '{self.workflow_id}': calls to other workflows need "
                "the worker's client (a context made by raftoral.Worker)"
            )
        return self._client

    @overload
    async def first(self, a: Durable[A], b: Durable[B], /) -> tuple[int, Union[A, B]]: ...

    @overload
    async def first(
        self, a: Durable[Any], b: Durable[Any], /, *more: Durable[Any]
    ) -> tuple[int, Any]: ...

    async def first(
        self, a: Durable[Any], b: Durable[Any], /, *more: Durable[Any]
    ) -> tuple[int, Any]:
        """Races durable operations (sleeps, steps, waits for an event,
        awakeables and child workflows' results, as :meth:`sleep`,
        :meth:`sleep_until`, :meth:`checkpoint`, :meth:`wait_event`,
        :meth:`awakeable`, :meth:`call_child` and
        :meth:`ChildHandle.result` return them, not awaited yet): returns
        ``(index, value)`` of the one the history resolved first,
        ``index`` its place among the arguments (0 for ``a``) and
        ``value`` its result (``None`` for a sleep). The winner is decided
        by commit order, so it is the same on the owner, on every replica
        and in every replay, whatever the clocks say::

            index, receipt = await ctx.first(
                ctx.sleep(timedelta(minutes=30), name="deadline"),
                ctx.checkpoint("payment", wait_for_payment),
            )
            if index == 0:
                await ctx.checkpoint("cancel-order", cancel_order)

        An approval event raced against a 24 h sleep: the approval's
        payload when it comes first, else a reminder (and the approval is
        waited for again)::

            index, decision = await ctx.first(
                ctx.wait_event("approval", result_type=Decision),
                ctx.sleep(timedelta(hours=24), name="reminder"),
            )
            if index == 1:
                await ctx.checkpoint("remind", lambda: remind_manager(claim))
                decision = await ctx.wait_event("approval", result_type=Decision)

        Every operation starts here (a step's function runs on the owner, a
        sleep's timer is committed, a wait is committed). The others are
        abandoned: a losing sleep is cancelled (its timer never fires: a
        ``TIMER_CANCELLED`` entry is committed before this returns); a
        losing wait for an event (or awakeable) is cancelled (an
        ``EVENT_WAIT_CANCELLED`` entry: an open wait is resolved by it
        before this returns; an event the wait took already goes back to
        the workflow, for the next wait of its name); a losing step runs on
        to its commit, its value unused (a step still running when the
        worker shuts down is cancelled); a losing child workflow runs on,
        its result unused, until it ends or this workflow ends (then its
        ``parent_close`` policy applies). A winner that raised (a step that
        failed for good, a rejected awakeable, a failed child:
        :class:`~raftoral.StepFailed`) raises here.

        Raises :class:`TypeError` for an argument that is not such an
        operation, :class:`~raftoral.InvalidArgument` for one already
        awaited (or given twice, or of another workflow, or a status set),
        and what the operations raise (:class:`~raftoral.Cancelled`, ...).
        """
        ops = (a, b, *more)
        for i, op in enumerate(ops):
            if not isinstance(op, Durable):
                hint = " (race its result(): a Durable)" if isinstance(op, ChildHandle) else ""
                raise TypeError(
                    f"first() races what ctx.sleep(), ctx.sleep_until(), "
                    f"ctx.checkpoint(), ctx.wait_event(), ctx.awakeable(), "
                    f"ctx.call_child() and a child handle's result() return, "
                    f"not awaited yet; argument {i} is {type(op).__name__}{hint}"
                )
            if op.is_status:
                raise InvalidArgument(
                    f"first(): {op!r} is a status set, which first() does not race "
                    "(it is committed whatever wins); await it instead"
                )
            if op._ctx is not self:
                raise InvalidArgument(
                    f"first(): {op!r} belongs to another workflow run than '{self.workflow_id}'"
                )
            if op._started:
                raise InvalidArgument(
                    f"first(): {op!r} was awaited or started already; pass operations "
                    "as ctx.sleep(), ctx.checkpoint(), ctx.wait_event() and "
                    "ctx.awakeable() return them"
                )
        if len({id(op) for op in ops}) < len(ops):
            raise InvalidArgument("first(): the same operation is given twice")
        for op in ops:
            op._started = True
        # Each one runs in a task of its own (a step computes, a timer's
        # start or a wait is proposed); the core decides the winner from
        # the history, by the operations' positions.
        tasks = [asyncio.ensure_future(op) for op in ops]
        seqs = [op.seq for op in ops]
        try:
            if self._commits is not None:
                index = await self._commits.first(self._run, seqs)
            else:
                index = await self._run.first_of(seqs)
        except BaseException:
            for task in tasks:
                task.cancel()
                task.add_done_callback(_retrieve)
            raise
        for i, (op, task) in enumerate(zip(ops, tasks)):
            if i == index:
                continue
            task.add_done_callback(_retrieve)
            if op.is_timer or op.is_event or op.is_child or isinstance(op, Awakeable):
                # The core cancelled the timer, or the wait, already: its
                # outcome (an event given back, a rejection) is nobody's. A
                # losing child runs on (to its parent-close policy); only
                # this wait for its result stops.
                task.cancel()
            elif not task.done():
                self._abandoned.add(task)
                task.add_done_callback(self._abandoned.discard)
        return index, await tasks[index]

    def random(self) -> float:
        """A float in ``[0, 1)``, the same on every replica and in every
        replay: drawn from a generator the core seeds per run (the same
        numbers in every SDK). Nothing is committed, so it costs no step.
        Draws follow call order. Not for secrets or keys::

            backoff = 1.0 + ctx.random()  # jitter that replays the same
        """
        return self._run.random()

    def uuid(self) -> UUID:
        """A version 4 UUID from the same generator as :meth:`random` (no
        step): stable across replays, so it can serve as the idempotency key
        of a call a step makes. Not for secrets or tokens::

            key = ctx.uuid()
            await ctx.checkpoint("charge", lambda: pay(order, idempotency_key=str(key)))
        """
        return UUID(self._run.uuid())

    @property
    def is_replaying(self) -> bool:
        """True while the code repeats what already happened: it replays the
        committed history (after a restart or a failover), or this replica
        does not own the workflow. Steps do not run then. Keep it out of
        what decides which steps run::

            if not ctx.is_replaying:
                metrics.increment("orders.resumed_past_history")
        """
        return self._run.is_replaying

    @property
    def is_cancelled(self) -> bool:
        """True once the workflow's cancel is requested (as the core knows
        it now): its code gets :class:`~raftoral.Cancelled` at the step or
        sleep it awaits, and may be cleaning up.

        For step code that works in a loop and can stop between two pieces
        of work, a sync function in a thread included (``thread=True``)::

            def copy_files() -> int:
                done = 0
                for path in paths:
                    if ctx.is_cancelled:
                        break  # the step is given up: this value is not committed
                    copy(path)
                    done += 1
                return done

        An async step function needs no check: its attempt is cancelled
        (:class:`asyncio.CancelledError`) when the cancellation comes. Steps
        taken after the workflow caught :class:`~raftoral.Cancelled`
        (compensation) see it true as well.
        """
        return self._cancel_reason is not None or self._run.cancelled_now() is not None

    async def wait_cancelled(self) -> Optional[str]:
        """Waits until the workflow's cancel is requested and returns the
        reason given to ``cancel_workflow``; returns ``None`` when the run
        ends first (the workflow finished, or this worker stops). For code
        that races work against the cancellation::

            watch = asyncio.ensure_future(ctx.wait_cancelled())
            ...
            watch.cancel()

        The next step or sleep raises :class:`~raftoral.Cancelled` then.
        """
        if self._cancel_outcome is None:
            if self._commits is None:
                raise InvalidArgument("waiting for a cancellation needs the worker's commit bridge")
            self._cancel_outcome = asyncio.get_running_loop().create_future()
            self._commits.cancelled(self._run).add_done_callback(self._on_cancel)
        return await asyncio.shield(self._cancel_outcome)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (the ``raftoral.workflow`` logger, through a
        :class:`logging.LoggerAdapter`) that writes each line once: on the
        owner only, and only once the code is past the history it replays
        (while :attr:`is_replaying` is true, records are dropped). Each
        record has the attributes ``workflow_id`` and ``step`` (the position
        of the next step) and its message starts with
        ``[workflow ID step N]``, so a default formatter shows them::

            ctx.logger.info("charging order %s", order_id)
            await ctx.checkpoint("charge", charge)

        A line written just before a crash may be written again by the next
        owner.
        """
        if self._logger is None:
            self._logger = _WorkflowLogger(self._run)
        return self._logger

    def _check_active(self, name: str) -> None:
        if not self._active:
            raise InvalidArgument(
                f"checkpoint '{name}' called after workflow '{self.workflow_id}' "
                "finished; checkpoints belong inside the workflow function"
            )

    async def _fail(
        self,
        token: _core.ComputeToken,
        failure: tuple[str, str, str, bool, str],
        policy: RetryPolicy,
    ) -> Union[bytes, _core.ComputeToken]:
        """Commits ``failure`` (see :func:`_failure`) as the failure of
        ``token``'s attempt; returns the next attempt's token (after its
        delay) or another owner's value, or raises the step's failure."""
        if self._commits is None:
            raise InvalidArgument("failed steps need the worker's commit bridge")
        return await self._commits.fail(self._run, token, failure, policy._native)

    async def _guarded(self, attempt: Awaitable[T], limit: Optional[float], epoch: int) -> T:
        """Awaits a step's attempt so that an interruption of the run (a
        cancellation) and the attempt timeout (``limit`` seconds) can stop
        it: either cancels the task that awaits it (this one), as
        :func:`asyncio.timeout` does, so the :class:`asyncio.CancelledError`
        reaches the step's code and no task is made per attempt. Raises
        :class:`_Interrupted` or :class:`_TimedOut` when one of them stopped
        it, whatever the code then did. ``epoch``: the run's interruption
        count read before the attempt's slot was asked for."""
        task = asyncio.current_task()
        if task is None:  # not in a task (a worker always runs one)
            return await attempt
        self._watch()
        running = _Attempt(task, epoch)
        if limit is not None:
            loop = asyncio.get_running_loop()
            running.timer = loop.call_later(limit, running.stop, _TIMED_OUT)
        self._running.add(running)
        try:
            value = await attempt
        except (Exception, asyncio.CancelledError):
            self._running.discard(running)
            stopped = running.end()
            if stopped is None:
                raise  # the step's own error, or another cancellation
            if stopped == _INTERRUPTED:
                raise _Interrupted from None
            raise _TimedOut from None
        self._running.discard(running)
        stopped = running.end()
        if stopped is None:
            return value
        if stopped == _INTERRUPTED:
            raise _Interrupted
        raise _TimedOut

    def _watch(self) -> None:
        """Arms the run's interruption watcher: once per run, from its first
        step attempt that can be stopped, then again after each
        interruption (see :meth:`_on_interrupt`)."""
        if self._watching or self._commits is None:
            return
        self._watching = True
        self._commits.interrupted(self._run, 0).add_done_callback(self._on_interrupt)

    def _on_interrupt(self, outcome: asyncio.Future[Optional[tuple[str, int]]]) -> None:
        """The core interrupted the run (a cancellation is delivered, or the
        workflow is cancelled for good): the step attempts that started
        before it stop (their slots are asked for again, see
        :meth:`_settle`), and the watcher is armed again; or the run
        ended."""
        if outcome.cancelled() or outcome.exception() is not None:
            return  # the worker stopped
        interruption = outcome.result()
        if interruption is None:
            return  # the run ended
        reason, count = interruption
        if self._cancel_reason is None:
            self._cancel_reason = reason
        for running in list(self._running):
            # A race's losing step runs on (its value unused): the
            # cancellation is not delivered there.
            if running.epoch < count and running.task not in self._abandoned:
                running.stop(_INTERRUPTED)
        if self._commits is not None:
            self._commits.interrupted(self._run, count).add_done_callback(self._on_interrupt)

    def _on_cancel(self, outcome: asyncio.Future[Slot]) -> None:
        """The core's answer to :meth:`wait_cancelled`: the workflow's
        cancel was requested (or it was cancelled for good), or the run
        ended."""
        error = None if outcome.cancelled() else outcome.exception()
        reason: Optional[str] = None
        if isinstance(error, Cancelled):
            reason = error.reason
            if self._cancel_reason is None:
                self._cancel_reason = reason
        waiting = self._cancel_outcome
        if waiting is not None and not waiting.done():
            waiting.set_result(reason)


class _Committed:
    """The codec of a ``result:`` step: its value is the target's encoded
    result, committed as it is, and decoded with the worker's codec."""

    def __init__(self, codec: Codec) -> None:
        self._codec = codec

    def encode(self, value: Any) -> bytes:
        assert isinstance(value, bytes)
        return value

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        return self._codec.decode(data, type_hint)


def _call_failure(e: RaftoralError, target: str) -> ApplicationError:
    """A client error of a call to workflow ``target`` as its step's
    failure (the Rust SDK's types): refusals that cannot change are
    non-retryable, the rest is retried by the step's policy."""
    if isinstance(e, WorkflowFailed):
        # The target's own failure, type and details kept.
        if e.failure is not None:
            return ApplicationError(
                e.failure.message,
                type=e.failure.type,
                details=e.failure.details,
                non_retryable=True,
            )
        return ApplicationError(e.error, type="raftoral.WorkflowFailed", non_retryable=True)
    if isinstance(e, Cancelled):
        return ApplicationError(
            f"workflow '{target}' was cancelled: {e.reason}",
            type="raftoral.WorkflowCancelled",
            non_retryable=True,
        )
    if isinstance(e, NotFound):
        return ApplicationError(e.message, type=WORKFLOW_NOT_FOUND_TYPE, non_retryable=True)
    if isinstance(e, NotRunning):
        return ApplicationError(e.message, type=WORKFLOW_ENDED_TYPE, non_retryable=True)
    if isinstance(e, (InvalidArgument, ResourceExhausted)):
        return ApplicationError(e.message, type="raftoral.SignalRefused", non_retryable=True)
    return ApplicationError(e.message, type="raftoral.Unavailable")


WORKFLOW_NOT_FOUND_TYPE = "raftoral.WorkflowNotFound"
"""Failure type of a call to a workflow that does not exist
(:meth:`WorkflowContext.signal_workflow`, :meth:`WorkflowContext.workflow_result`)."""

WORKFLOW_ENDED_TYPE = "raftoral.WorkflowEnded"
"""Failure type of a send to a workflow that has ended
(:meth:`WorkflowContext.signal_workflow`)."""


_JSON = JsonCodec()
"""The codec of the helpers' steps: their values are the same JSON in every SDK."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _clock_ms() -> int:
    """This machine's clock, in integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


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
def checkpoint(
    name: str,
    fn: Callable[[], Awaitable[T]],
    *,
    result_type: Any = None,
    retry: Optional[RetryPolicy] = None,
    thread: bool = False,
) -> Durable[T]: ...


@overload
def checkpoint(
    name: str,
    fn: Callable[[], T],
    *,
    result_type: Any = None,
    retry: Optional[RetryPolicy] = None,
    thread: bool = False,
) -> Durable[T]: ...


def checkpoint(
    name: str,
    fn: Callable[[], Union[Awaitable[T], T]],
    *,
    result_type: Any = None,
    retry: Optional[RetryPolicy] = None,
    thread: bool = False,
) -> Durable[T]:
    """:meth:`WorkflowContext.checkpoint` on the workflow running in this
    task (its position taken at the call, as there); raises
    :class:`~raftoral.InvalidArgument` outside a workflow."""
    ctx = current_context()
    return ctx.checkpoint(
        name,
        typing.cast(Callable[[], T], fn),
        result_type=result_type,
        retry=retry,
        thread=thread,
    )
