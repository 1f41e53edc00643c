"""Durable timers (``ctx.sleep``, ``ctx.sleep_until``): committed with their
deadline, fired by the cluster, replayed without sleeping again; bad
durations refused before anything is committed."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import raftoral
from harness import Node, eventually

seen: defaultdict[str, list[str]] = defaultdict(list)
"""Per workflow id, what its function saw (in order)."""


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


@raftoral.workflow(name="nap_then_step", version=1)
async def nap_then_step(ctx: raftoral.WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds, name="nap")
    return await ctx.checkpoint("done", lambda: "awake")


async def test_a_sleep_ends_when_the_cluster_fires_it_and_the_history_records_it() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[nap_then_step]):
            began = time.monotonic()
            handle = await node.client.start_workflow(nap_then_step, 0.3)
            assert await handle.result(timeout=30) == "awake"
            elapsed = time.monotonic() - began
            history = await handle.history()
    assert elapsed >= 0.3, f"returned after {elapsed:.3f} s, before the 0.3 s sleep"
    assert kinds(history) == [
        (0, "nap", "TIMER_STARTED"),
        (0, "nap", "TIMER_FIRED"),
        (1, "done", "VALUE"),
    ]
    started, fired, done = history
    assert started.fire_at_ms == started.committed_at_ms + 300, "deadline = start + duration"
    assert fired.fire_at_ms == started.fire_at_ms
    assert fired.committed_at_ms >= fired.fire_at_ms, "fired at or after its deadline"
    assert done.fire_at_ms == 0


@raftoral.workflow(name="bad_sleep", version=1)
async def bad_sleep(ctx: raftoral.WorkflowContext, seconds: float) -> str:
    try:
        await ctx.sleep(seconds, name="bad")
    except raftoral.InvalidArgument as e:
        # Refused before a position was taken: the next step takes seq 0.
        seen[ctx.workflow_id].append(e.message)
        return await ctx.checkpoint("after", lambda: "refused")
    return "slept"


@pytest.mark.parametrize(
    ("seconds", "says"),
    [(-1.0, "negative"), (366 * 24 * 3600 + 0.001, "366 days")],
    ids=["negative", "beyond-366-days"],
)
async def test_a_negative_or_too_long_sleep_raises_and_commits_nothing(
    seconds: float, says: str
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[bad_sleep]):
            handle = await node.client.start_workflow(bad_sleep, seconds)
            assert await handle.result(timeout=30) == "refused"
            history = await handle.history()
    [message] = seen[handle.workflow_id]
    assert says in message and "'bad'" in message, message
    assert kinds(history) == [(0, "after", "VALUE")]


@raftoral.workflow(name="uncaught_sleep", version=1)
async def uncaught_sleep(ctx: raftoral.WorkflowContext, seconds: float) -> None:
    await ctx.sleep(seconds)


async def test_an_uncaught_refused_sleep_fails_the_workflow_with_its_message() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[uncaught_sleep]):
            for seconds, says in [(-0.005, "negative"), (31_622_400.001, "366 days")]:
                handle = await node.client.start_workflow(uncaught_sleep, seconds)
                with pytest.raises(raftoral.WorkflowFailed) as e:
                    await handle.result(timeout=30)
                assert says in e.value.error, e.value.error
                assert await handle.history() == []


@raftoral.workflow(name="until", version=1)
async def until(ctx: raftoral.WorkflowContext, offset_s: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    await ctx.sleep_until(when, name="until")
    try:
        await ctx.sleep_until(datetime.now(), name="naive")
    except ValueError as e:
        seen[ctx.workflow_id].append(str(e))
    await ctx.sleep(timedelta(milliseconds=50), name="delta")
    return await ctx.checkpoint("done", lambda: "ok")


async def test_sleep_until_a_past_time_fires_at_once_and_a_naive_time_is_refused() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[until]):
            handle = await node.client.start_workflow(until, -3600.0)
            assert await handle.result(timeout=30) == "ok"
            history = await handle.history()
    assert kinds(history) == [
        (0, "until", "TIMER_STARTED"),
        (0, "until", "TIMER_FIRED"),
        (1, "delta", "TIMER_STARTED"),
        (1, "delta", "TIMER_FIRED"),
        (2, "done", "VALUE"),
    ]
    assert history[0].fire_at_ms == history[0].committed_at_ms, "a past time sleeps 0"
    assert history[2].fire_at_ms == history[2].committed_at_ms + 50
    [message] = seen[handle.workflow_id]
    assert "naive" in message


@raftoral.workflow(name="nap_beside_step", version=1)
async def nap_beside_step(ctx: raftoral.WorkflowContext, _: None) -> list[Any]:
    def step() -> str:
        seen[ctx.workflow_id].append("step ran")
        return "stepped"

    return list(await asyncio.gather(ctx.sleep(0.2, name="nap"), ctx.checkpoint("step", step)))


async def test_a_sleep_and_a_step_side_by_side_take_positions_in_call_order() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[nap_beside_step]):
            handle = await node.client.start_workflow(nap_beside_step, None)
            assert await handle.result(timeout=30) == [None, "stepped"]
            history = await handle.history()
    assert sorted(kinds(history)) == [
        (0, "nap", "TIMER_FIRED"),
        (0, "nap", "TIMER_STARTED"),
        (1, "step", "VALUE"),
    ]
    assert seen[handle.workflow_id] == ["step ran"]


@raftoral.workflow(name="long_nap", version=1)
async def long_nap(ctx: raftoral.WorkflowContext, _: None) -> None:
    try:
        await ctx.sleep(timedelta(hours=1), name="long")
    except raftoral.Cancelled as e:
        seen[ctx.workflow_id].append(f"sleep raised Cancelled: {e.reason}")
        raise


async def test_cancelling_a_sleeping_workflow_ends_its_sleep() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[long_nap]):
            handle = await node.client.start_workflow(long_nap, None)

            async def timer_started() -> bool:
                return any(e.kind == "TIMER_STARTED" for e in await handle.history())

            await eventually(timer_started, "the timer to start")
            await handle.cancel("no more waiting")
            with pytest.raises(raftoral.Cancelled):
                await handle.result(timeout=30)
            await eventually(lambda: bool(seen[handle.workflow_id]), "the sleep to end")
            history = await handle.history()
    assert seen[handle.workflow_id] == ["sleep raised Cancelled: no more waiting"]
    # It never fired: the cancellation was delivered there.
    assert [e.kind for e in history] == ["TIMER_STARTED", "TIMER_CANCELLED"]


gates: dict[str, asyncio.Event] = {}
runs: defaultdict[str, list[bool]] = defaultdict(list)
"""Per workflow id, ``is_replaying`` at the start of each run."""


@raftoral.workflow(name="nap_then_gate", version=1)
async def nap_then_gate(ctx: raftoral.WorkflowContext, _: None) -> str:
    runs[ctx.workflow_id].append(ctx.is_replaying)
    await ctx.sleep(0.1, name="nap")

    async def gate() -> str:
        seen[ctx.workflow_id].append("gate")
        await gates[ctx.workflow_id].wait()
        return "through"

    return await ctx.checkpoint("gate", gate)


async def test_a_fired_sleep_replays_without_sleeping_again(sidecar: Node, wf_id: str) -> None:
    gate = gates[wf_id] = asyncio.Event()
    first = await raftoral.Client.connect(sidecar.url)
    # The gate step waits: leaving the worker stops it, and the workflow stays
    # running in the cluster with its fired timer.
    async with raftoral.Worker(first, workflows=[nap_then_gate], shutdown_grace=0.1):
        await first.start_workflow(nap_then_gate, None, id=wf_id)
        await eventually(lambda: bool(seen[wf_id]), "the first run to reach the gate")
    gate.set()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[nap_then_gate]):
        assert await client.get_handle(wf_id).result(timeout=30) == "through"
    assert runs[wf_id] == [False, True]
    history = await client.get_workflow_history(wf_id)
    assert kinds(history) == [
        (0, "nap", "TIMER_STARTED"),
        (0, "nap", "TIMER_FIRED"),
        (1, "gate", "VALUE"),
    ], "the replay started no second timer"
