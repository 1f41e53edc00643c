"""What stops a step's attempt, and where it runs, on LocalNode (the engine
in-process): the retry policy's ``attempt_timeout``, the workflow's
cancellation while a step runs (``ctx.is_cancelled``,
``ctx.wait_cancelled()``), and sync steps run in a thread
(``thread=True``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any, Optional

import pytest

import raftoral
from apps.workflows import ping_pong
from harness import eventually

WAIT = 10.0
"""Longest a test waits for an event (it fails then)."""

seen: defaultdict[str, list[Any]] = defaultdict(list)
"""Per workflow id, what its code saw, in order."""

started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
"""Per workflow id, set once its step (or its body) waits."""

released: defaultdict[str, threading.Event] = defaultdict(threading.Event)
"""Per workflow id, what its step's thread waits for."""

thread_started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
"""Per workflow id, set when its step's thread starts."""

thread_done: defaultdict[str, threading.Event] = defaultdict(threading.Event)
"""Per workflow id, set when its step's thread ends."""


async def hang(workflow_id: str, attempt: int) -> None:
    """Waits until cancelled, noting that the cancellation reached it."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen[workflow_id].append(f"attempt {attempt} cancelled")
        raise


@raftoral.workflow(name="hangs", version=1)
async def hangs(ctx: raftoral.WorkflowContext, hang_times: int) -> dict[str, Any]:
    """One step whose first ``hang_times`` attempts hang, 0.2 s per attempt."""
    policy = raftoral.RetryPolicy(initial_interval=0, maximum_attempts=3, attempt_timeout=0.2)

    async def attempt() -> int:
        n = raftoral.step_attempt()
        if n <= hang_times:
            await hang(ctx.workflow_id, n)
        return n

    try:
        return {"attempt": await ctx.checkpoint("slow", attempt, retry=policy)}
    except raftoral.StepFailed as e:
        return {
            "type": e.type,
            "message": e.error_message,
            "attempts": e.attempts,
            "non_retryable": e.non_retryable,
        }


@raftoral.workflow(name="slow_sync", version=1)
async def slow_sync(ctx: raftoral.WorkflowContext, _: None) -> dict[str, Any]:
    """A sync step that outlasts its 10 ms: it cannot be stopped, and its
    value is dropped once it returns."""

    def slow() -> str:
        seen[ctx.workflow_id].append("ran")
        time.sleep(0.05)  # the step's own slow work
        return "late"

    try:
        value = await ctx.checkpoint(
            "slow", slow, retry=raftoral.RetryPolicy(maximum_attempts=1, attempt_timeout=0.01)
        )
    except raftoral.StepFailed as e:
        return {"type": e.type, "message": e.error_message}
    return {"value": value}


async def test_an_async_attempt_past_its_timeout_is_cancelled_and_retried() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[hangs]):
        handle = await node.client.start_workflow(hangs, 1)
        assert await handle.result(timeout=WAIT) == {"attempt": 2}
        # The CancelledError reached the step's code.
        assert seen[handle.workflow_id] == ["attempt 1 cancelled"]
        # The timed-out attempt, then the value.
        history = [(e.seq, e.checkpoint_name) for e in await handle.history()]
        assert history == [(0, "slow"), (0, "slow")]


async def test_attempts_that_all_time_out_fail_the_step_with_the_cores_failure() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[hangs]):
        handle = await node.client.start_workflow(hangs, 3)
        # Type and message as every SDK commits them; retryable, so retried
        # until the attempts ran out.
        assert await handle.result(timeout=WAIT) == {
            "type": "AttemptTimeout",
            "message": "attempt 3 timed out after 200 ms",
            "attempts": 3,
            "non_retryable": False,
        }
        assert seen[handle.workflow_id] == [f"attempt {n} cancelled" for n in (1, 2, 3)]


async def test_a_sync_step_past_its_timeout_fails_once_it_returns() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[slow_sync]):
        handle = await node.client.start_workflow(slow_sync, None)
        assert await handle.result(timeout=WAIT) == {
            "type": "AttemptTimeout",
            "message": "attempt 1 timed out after 10 ms",
        }
        assert seen[handle.workflow_id] == ["ran"]


@raftoral.workflow(name="long_step", version=1)
async def long_step(ctx: raftoral.WorkflowContext, _: None) -> str:
    """A step that waits until the workflow is cancelled."""

    async def wait() -> str:
        started[ctx.workflow_id].set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen[ctx.workflow_id].append(("step cancelled", ctx.is_cancelled))
            raise
        return "never"

    try:
        return await ctx.checkpoint("wait", wait)
    except raftoral.Cancelled as e:
        seen[ctx.workflow_id].append(("checkpoint raised Cancelled", e.reason))
        raise


async def test_a_cancellation_cancels_the_running_step() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[long_step]):
        # Cancelled at once after the node started: the cancel waits until
        # the node recorded the commands it applies, and is a request.
        handle = await node.client.start_workflow(long_step, None)
        await asyncio.wait_for(started[handle.workflow_id].wait(), WAIT)
        # A cancel request (the sidecar's window): the code gets it and
        # lets it end the run.
        await handle.cancel("customer left")
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=WAIT)
        await eventually(
            lambda: len(seen[handle.workflow_id]) == 2, "the workflow to see the cancellation"
        )
        assert seen[handle.workflow_id] == [
            ("step cancelled", True),
            ("checkpoint raised Cancelled", "customer left"),
        ]
        # No value of the step: the delivered cancellation resolved it.
        history = [(e.seq, e.checkpoint_name, e.kind) for e in await handle.history()]
        assert history == [(0, "wait", "STEP_FAILED")]


@raftoral.workflow(name="watches", version=1)
async def watches(ctx: raftoral.WorkflowContext, _: None) -> Optional[str]:
    """Waits for its cancellation between steps, then takes a step."""
    await ctx.checkpoint("first", lambda: 1)
    seen[ctx.workflow_id].append(("before", ctx.is_cancelled))
    started[ctx.workflow_id].set()
    reason = await ctx.wait_cancelled()
    seen[ctx.workflow_id].append(("reason", reason, ctx.is_cancelled))
    try:
        await ctx.checkpoint("after", lambda: 2)
    except raftoral.Cancelled:
        seen[ctx.workflow_id].append("next step raised Cancelled")
        raise
    return reason


@raftoral.workflow(name="ends_first", version=1)
async def ends_first(ctx: raftoral.WorkflowContext, _: None) -> int:
    """Waits for a cancellation that never comes, beside its steps."""
    waiting = asyncio.ensure_future(ctx.wait_cancelled())
    waiting.add_done_callback(lambda w: seen[ctx.workflow_id].append(("waited", w.result())))
    return await ctx.checkpoint("only", lambda: 7)


async def test_workflow_code_can_wait_for_its_cancellation() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[watches]):
        handle = await node.client.start_workflow(watches, None)
        await asyncio.wait_for(started[handle.workflow_id].wait(), WAIT)
        await handle.cancel("too late")
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=WAIT)
        await eventually(lambda: len(seen[handle.workflow_id]) == 3, "the next step to raise")
        assert seen[handle.workflow_id] == [
            ("before", False),
            ("reason", "too late", True),
            "next step raised Cancelled",
        ]


async def test_waiting_for_a_cancellation_ends_with_none_when_the_run_ends() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[ends_first]):
        handle = await node.client.start_workflow(ends_first, None)
        assert await handle.result(timeout=WAIT) == 7
        await eventually(lambda: bool(seen[handle.workflow_id]), "the wait to end")
        assert seen[handle.workflow_id] == [("waited", None)]


@raftoral.workflow(name="blocking", version=1)
async def blocking(ctx: raftoral.WorkflowContext, _: None) -> dict[str, Any]:
    """A sync step that blocks its thread until the test releases it."""

    def block() -> dict[str, Any]:
        thread_started[ctx.workflow_id].set()
        released_in_time = released[ctx.workflow_id].wait(WAIT)
        seen[ctx.workflow_id].append(("thread", raftoral.step_attempt(), ctx.is_cancelled))
        thread_done[ctx.workflow_id].set()
        return {"released": released_in_time, "attempt": raftoral.step_attempt()}

    return await ctx.checkpoint("block", block, thread=True)


async def test_a_threaded_sync_step_leaves_the_event_loop_free() -> None:
    workflows: list[raftoral.Workflow[Any, Any]] = [blocking, ping_pong]
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=workflows):
        handle = await node.client.start_workflow(blocking, None)
        # The step blocks its thread; another workflow runs to its end
        # meanwhile, on the same loop (a step blocking the loop would keep
        # it waiting until the step gave up).
        other = await node.client.start_workflow(ping_pong, "ping")
        assert await other.result(timeout=WAIT) == "pong"
        assert not thread_done[handle.workflow_id].is_set()
        released[handle.workflow_id].set()
        # The thread sees the attempt number (the task's context variables).
        assert await handle.result(timeout=WAIT) == {"released": True, "attempt": 1}


async def test_a_cancellation_stops_waiting_for_a_threaded_step() -> None:
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=[blocking]):
        handle = await node.client.start_workflow(blocking, None)
        await eventually(thread_started[handle.workflow_id].is_set, "the step's thread to start")
        # No cleanup: cancelled at once, nothing committed for the step.
        info = await handle.cancel("stop", cleanup=0)
        assert info.status is raftoral.WorkflowStatus.CANCELLED
        # The step stops waiting for its thread, which runs on.
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=WAIT)
        assert not thread_done[handle.workflow_id].is_set()
        released[handle.workflow_id].set()
        await asyncio.get_running_loop().run_in_executor(
            None, thread_done[handle.workflow_id].wait, WAIT
        )
        # The thread could ask whether the workflow was cancelled.
        assert seen[handle.workflow_id] == [("thread", 1, True)]
        assert await handle.history() == []


@raftoral.workflow(name="threads_side_by_side", version=1)
async def threads_side_by_side(ctx: raftoral.WorkflowContext, _: None) -> list[str]:
    """Two threaded steps side by side; the first returns once the second
    is committed."""
    second_committed = threading.Event()

    def first() -> str:
        second_committed.wait(WAIT)
        return "first"

    async def second() -> str:
        value = await ctx.checkpoint("second", lambda: "second", thread=True)
        second_committed.set()
        return value

    return list(await asyncio.gather(ctx.checkpoint("first", first, thread=True), second()))


async def test_threaded_steps_side_by_side_keep_their_call_order() -> None:
    workflows = [threads_side_by_side]
    async with raftoral.LocalNode() as node, raftoral.Worker(node.client, workflows=workflows):
        handle = await node.client.start_workflow(threads_side_by_side, None)
        assert await handle.result(timeout=WAIT) == ["first", "second"]
        # In commit order: the second step committed first, at the position
        # it took when it was called, after the first step's.
        history = [(e.seq, e.checkpoint_name) for e in await handle.history()]
        assert history == [(1, "second"), (0, "first")]


@raftoral.workflow(name="async_in_thread", version=1)
async def async_in_thread(ctx: raftoral.WorkflowContext, _: None) -> int:
    async def compute() -> int:
        return 1

    return await ctx.checkpoint("compute", compute, thread=True)


async def test_thread_is_refused_for_an_async_step() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[async_in_thread]):
            handle = await node.client.start_workflow(async_in_thread, None)
            with pytest.raises(raftoral.WorkflowFailed) as e:
                await handle.result(timeout=WAIT)
            assert "thread=True" in e.value.error
            assert await handle.history() == []
