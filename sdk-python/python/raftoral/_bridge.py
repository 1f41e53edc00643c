"""Commit outcomes and workflow runs from the native core to this event
loop, without the GIL on the core's threads (see
``sdk-python/src/bridge.rs``)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Optional, Union

from . import _core

Slot = Union[bytes, _core.ComputeToken]


class Commits:
    """Futures of the commits in flight on one event loop.

    The native side writes to a socket when outcomes are waiting; the loop
    calls :meth:`_on_ready`, which resolves their futures.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._native = _core.CommitBridge()
        # Slots, and the winners of races (int) for `first`.
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        loop.add_reader(self._native.fileno(), self._on_ready)

    def commit(
        self, run: _core.Run, token: _core.ComputeToken, data: bytes
    ) -> asyncio.Future[Slot]:
        """Proposes ``data`` for ``token``; the future resolves with the
        committed value (or the error)."""
        key, future = self._new()
        try:
            run.commit_to(token, data, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def fail(
        self,
        run: _core.Run,
        token: _core.ComputeToken,
        failure: tuple[str, str, str, bool, str],
        policy: _core.RetryPolicy,
    ) -> asyncio.Future[Slot]:
        """Reports that ``token``'s attempt raised ``failure`` (type,
        message, details JSON, non-retryable, stack); the future resolves
        with the next attempt's token once its delay has passed, or another
        owner's value, or raises the step's failure."""
        key, future = self._new()
        try:
            run.fail_step_to(token, *failure, policy, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def slot(self, run: _core.Run, req: _core.SlotRequest) -> asyncio.Future[Slot]:
        """The slot of ``req`` once decided: futures resolve in the order the
        core hands resolutions out, so branches continue in commit order."""
        key, future = self._new()
        try:
            run.slot_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def timer(self, run: _core.Run, req: _core.TimerRequest) -> asyncio.Future[Slot]:
        """Resolves (with empty bytes) once the timer of ``req`` has fired,
        in the order the core hands resolutions out, as :meth:`slot`."""
        key, future = self._new()
        try:
            run.timer_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def event(self, run: _core.Run, req: _core.EventRequest) -> asyncio.Future[Optional[bytes]]:
        """Resolves with the payload of the event the wait of ``req`` got,
        or None when its timeout passed first, in the order the core hands
        resolutions out, as :meth:`slot`."""
        key, future = self._new()
        try:
            run.event_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def status(self, run: _core.Run, req: _core.StatusRequest) -> asyncio.Future[Slot]:
        """Resolves (with empty bytes) once the status of ``req`` is
        committed, in the order the core hands resolutions out, as
        :meth:`slot`."""
        key, future = self._new()
        try:
            run.status_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def awakeable(self, run: _core.Run, req: _core.AwakeableRequest) -> asyncio.Future[Slot]:
        """Resolves with the encoded value the awakeable of ``req`` was
        resolved with, or raises :class:`~raftoral.StepFailed` with the
        rejection, in the order the core hands resolutions out, as
        :meth:`slot`."""
        key, future = self._new()
        try:
            run.awakeable_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def child(self, run: _core.Run, req: _core.ChildRequest) -> asyncio.Future[Slot]:
        """Resolves with the encoded result of the child workflow of
        ``req``, or raises :class:`~raftoral.StepFailed` with its failure,
        in the order the core hands resolutions out, as :meth:`slot`."""
        key, future = self._new()
        try:
            run.child_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def child_started(self, run: _core.Run, req: _core.ChildRequest) -> asyncio.Future[Slot]:
        """Resolves (with empty bytes) once the start of the child workflow
        of ``req`` is committed."""
        key, future = self._new()
        try:
            run.child_started_to(req, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def first(self, run: _core.Run, seqs: list[int]) -> asyncio.Future[int]:
        """Resolves with the index (in ``seqs``) of the operation the
        history resolved first (the core's race, ``Run.first_to``), in the
        order the core hands resolutions out, as :meth:`slot`."""
        key, future = self._new()
        try:
            run.first_to(seqs, self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def cancelled(self, run: _core.Run) -> asyncio.Future[Slot]:
        """Resolves once the workflow of ``run`` has a cancel requested (or
        is cancelled for good), with the :class:`~raftoral.Cancelled`
        exception; with empty bytes when the run ends first (or the worker
        stops)."""
        key, future = self._new()
        try:
            run.cancelled_to(self._native, key)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def interrupted(self, run: _core.Run, after: int) -> asyncio.Future[Optional[tuple[str, int]]]:
        """Resolves with ``(reason, count)`` once ``run`` has more than
        ``after`` interruptions (stop its running step attempts and ask for
        their slots again); with None when the run ends first."""
        key, future = self._new()
        try:
            run.interrupted_to(self._native, key, after)
        except BaseException:
            del self._pending[key]
            raise
        return future

    def _new(self) -> tuple[int, asyncio.Future[Any]]:
        key = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[key] = future
        return key, future

    def _on_ready(self) -> None:
        for key, ok, value in self._native.drain():
            future = self._pending.pop(key, None)
            if future is None or future.done():  # its task was cancelled
                continue
            if ok:
                assert not isinstance(value, BaseException)
                future.set_result(value)
            else:
                assert isinstance(value, BaseException)
                future.set_exception(value)

    def close(self) -> None:
        """Stops watching; commits still in flight resolve no future."""
        self._loop.remove_reader(self._native.fileno())
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()


class Runs:
    """The workflow runs the native worker starts, handed to ``on_run`` on
    this event loop as they come (no awaitable per run).

    :attr:`ended` resolves once the worker has stopped handing runs out.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker: _core.Worker,
        on_run: Callable[[_core.Run], None],
    ) -> None:
        self._loop = loop
        self._native = _core.RunBridge()
        self._on_run = on_run
        self.ended: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._native.fileno(), self._on_ready)
        worker.forward_runs(self._native)

    def _on_ready(self) -> None:
        runs, closed = self._native.drain()
        for run in runs:
            self._on_run(run)
        if closed:
            self.close()

    def close(self) -> None:
        """Stops watching; :attr:`ended` resolves."""
        if not self.ended.done():
            self._loop.remove_reader(self._native.fileno())
            self.ended.set_result(None)
