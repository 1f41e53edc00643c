"""The worker: runs registered workflows as the sidecar hands them over."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Optional, Sequence

from . import _core
from ._attempts import _failure
from ._bridge import Commits, Runs
from .client import Client
from .errors import (
    ApplicationError,
    Cancelled,
    NotRunning,
    RaftoralError,
    ShuttingDown,
    StepFailed,
)
from .retry import RetryPolicy
from .workflow import Workflow, WorkflowContext, _current

log = logging.getLogger("raftoral")


class Worker:
    """Runs ``workflows`` for ``client``'s sidecar, as an async context manager.

    >>> async with raftoral.Worker(client, workflows=[ping_pong]):  # doctest: +SKIP
    ...     print(await (await client.start_workflow(ping_pong, "ping")).result())

    Entering registers every workflow and waits until the cluster has recorded
    them; leaving stops the stream. Workflows still running stay running in
    the cluster and resume (by replay) when a worker connects again. One
    worker per client. ``retry`` is the policy of steps whose workflow and
    call name none.
    """

    def __init__(
        self,
        client: Client,
        workflows: Sequence[Workflow[Any, Any]],
        *,
        shutdown_grace: float = 10.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self._client = client
        self._retry = retry
        self._workflows: dict[tuple[str, int], Workflow[Any, Any]] = {}
        for wf in workflows:
            if not isinstance(wf, Workflow):
                raise TypeError(
                    f"{wf!r} is not a workflow: decorate it with @raftoral.workflow(...)"
                )
            self._workflows[(wf.name, wf.version)] = wf
        self._shutdown_grace = shutdown_grace
        self._native: Optional[_core.Worker] = None
        self._runs: Optional[Runs] = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The losing steps of races (WorkflowContext.first) still running.
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._commits: Optional[Commits] = None

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Registers the workflows and starts taking executions."""
        native = _core.Worker(self._client._native)
        native.start()
        self._native = native
        loop = asyncio.get_running_loop()
        self._commits = Commits(loop)
        self._runs = Runs(loop, native, self._spawn)
        try:
            for name, version in self._workflows:
                await native.register(name, version)
        except BaseException:
            # The stream started with the first registration: stop it.
            await self.shutdown()
            raise

    async def run(self) -> None:
        """Runs until the calling task is cancelled (e.g. on SIGTERM)."""
        async with self:
            await asyncio.Event().wait()

    @property
    def running(self) -> int:
        """Workflow runs in progress on this worker."""
        return self._native.running if self._native is not None else 0

    async def shutdown(self) -> None:
        """Stops the worker; waits up to ``shutdown_grace`` seconds for the
        workflow functions to unwind (they get
        :class:`~raftoral.ShuttingDown` at their next checkpoint). The
        losing steps of races still running then are cancelled (their
        values were not used)."""
        native, self._native = self._native, None
        if native is None:
            return
        # The core stops the stream and wakes every waiting checkpoint with
        # ShuttingDown; it then waits for the runs' outcomes, which come from
        # the tasks here: so wait for both at once, and cancel the functions
        # still stuck in their own code after the grace period.
        stopping = asyncio.ensure_future(native.shutdown(self._shutdown_grace))
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=self._shutdown_grace)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        if self._abandoned:
            abandoned = set(self._abandoned)
            for task in abandoned:
                task.cancel()
            await asyncio.wait(abandoned)
        await stopping
        if self._runs is not None:
            await self._runs.ended
            self._runs = None
        if self._commits is not None:
            self._commits.close()
            self._commits = None

    def _spawn(self, run: _core.Run) -> None:
        task = asyncio.ensure_future(self._execute(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, run: _core.Run) -> None:
        wf = self._workflows.get((run.workflow_name, run.version))
        if wf is None:
            run.fail(f"this worker has no workflow '{run.workflow_name}' version {run.version}")
            return
        codec = self._client.codec
        ctx = WorkflowContext(
            run,
            codec,
            self._commits,
            wf.retry or self._retry,
            self._abandoned,
            self._client,
        )
        _current.set(ctx)  # each task runs in its own copy of the context
        try:
            value = await wf.fn(ctx, codec.decode(run.input, wf.input_type))
            data = codec.encode(value)
        except Cancelled as e:
            # The cancellation the core delivered, raised again after any
            # cleanup: the core reports the workflow CANCELLED while its
            # cancel request runs; a cancel for good reports nothing.
            run.abandon(e.reason)
            return
        except (ShuttingDown, NotRunning):
            # Not outcomes: reporting one would make this replica's result
            # differ from the committed one (a false non-determinism).
            run.abandon(None)
            return
        except asyncio.CancelledError:
            run.abandon(None)
            raise
        except StepFailed as e:
            # The step's failure, structured, becomes the workflow's: the
            # same error text as every SDK reports.
            run.fail_with_step(
                e.seq,
                e.step,
                e.attempts,
                e.type,
                e.error_message,
                e.details_json,
                e.non_retryable,
            )
            return
        except ApplicationError as e:
            # The function's own error, raised outside any step: structured
            # too (WorkflowInfo.failure), as the Rust SDK's
            # WorkflowError::Application.
            error_type, message, details_json, non_retryable, _ = _failure(e)
            run.fail_application(error_type, message, details_json, non_retryable)
            return
        except RaftoralError as e:
            run.fail(e.message)
            return
        except Exception as e:
            log.warning("workflow %s failed", run.workflow_id, exc_info=True)
            run.fail(f"{type(e).__name__}: {e}")
            return
        finally:
            ctx._active = False
        run.complete(data)
