"""``ctx.first``: a durable sleep raced against a step (or more); the winner
is the one the history resolved first, the same live and in a replay; a
losing sleep is cancelled, a losing step runs on."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

import raftoral
from harness import Node, eventually

seen: defaultdict[str, list[str]] = defaultdict(list)
"""Per workflow id, what its function (and its steps) saw, in order."""
gates: dict[str, asyncio.Event] = {}
"""Per workflow id, what its gated steps wait for."""


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


def gate(workflow_id: str) -> asyncio.Event:
    return gates.setdefault(workflow_id, asyncio.Event())


@raftoral.workflow(name="race", version=1)
async def race(ctx: raftoral.WorkflowContext, timing: list[float]) -> list[Any]:
    """A sleep of ``timing[0]`` s (position 0) against a step that waits
    ``timing[1]`` s (position 1), then step ``after``, which waits for the
    workflow's gate when ``timing[2]`` is set."""
    timer_s, step_s, gated = timing

    async def work() -> str:
        seen[ctx.workflow_id].append("work started")
        try:
            await asyncio.sleep(step_s)
        except asyncio.CancelledError:
            seen[ctx.workflow_id].append("work cancelled")
            raise
        seen[ctx.workflow_id].append("work done")
        return "worked"

    index, value = await ctx.first(
        ctx.sleep(timer_s, name="deadline"), ctx.checkpoint("work", work)
    )

    async def after() -> bool:
        if gated:
            await gate(ctx.workflow_id).wait()
        return True

    await ctx.checkpoint("after", after)
    return [index, value]


async def test_a_sleep_that_fires_first_wins_and_the_losing_step_runs_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[race]):
            began = time.monotonic()
            handle = await node.client.start_workflow(race, [0.2, 5.0, 0])
            assert await handle.result(timeout=30) == [0, None]
            elapsed = time.monotonic() - began
            history = await handle.history()
            # The loser is still running: the worker stops it when it leaves.
            assert seen[handle.workflow_id] == ["work started"]
    assert 0.2 <= elapsed < 5.0, f"returned after {elapsed:.3f} s"
    assert kinds(history) == [
        (0, "deadline", "TIMER_STARTED"),
        (0, "deadline", "TIMER_FIRED"),
        (2, "after", "VALUE"),
    ], "the losing step never committed"
    assert seen[handle.workflow_id] == ["work started", "work cancelled"]
    gc.collect()
    errors = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == [], "no task left with an exception nobody retrieved"


async def test_a_step_that_commits_first_wins_and_the_losing_sleep_is_cancelled() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[race]):
            handle = await node.client.start_workflow(race, [60.0, 0.0, 1])
            wf_id = handle.workflow_id

            async def after_the_race() -> bool:
                return any(e.kind == "TIMER_CANCELLED" for e in await handle.history())

            await eventually(after_the_race, "the losing timer to be cancelled")
            # Running (the next step waits for its gate), with no timer left.
            info = await handle.get()
            assert info.status is raftoral.WorkflowStatus.RUNNING
            assert info.pending_timers == ()
            sleeping = await node.client.list_workflows(sleeping=True)
            assert wf_id not in [w.workflow_id for w in sleeping]
            gate(wf_id).set()
            assert await handle.result(timeout=30) == [1, "worked"]
            history = await handle.history()
    assert seen[wf_id] == ["work started", "work done"]
    assert ("work", "VALUE") in [(e.checkpoint_name, e.kind) for e in history]
    at_0 = [e.kind for e in history if e.seq == 0]
    assert at_0 in (["TIMER_STARTED", "TIMER_CANCELLED"], ["TIMER_CANCELLED"]), at_0
    assert kinds(history)[-1] == (2, "after", "VALUE")


@raftoral.workflow(name="three_way", version=1)
async def three_way(ctx: raftoral.WorkflowContext, _: None) -> list[Any]:
    """Two sleeps and a step that never ends: the short sleep wins."""

    async def never() -> str:
        await asyncio.Event().wait()
        return "never"

    index, value = await ctx.first(
        ctx.sleep(timedelta(minutes=1), name="long"),
        ctx.sleep(0.1, name="short"),
        ctx.checkpoint("never", never),
    )
    return [index, value]


async def test_first_races_more_than_two_and_cancels_every_losing_sleep() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[three_way]):
            handle = await node.client.start_workflow(three_way, None)
            assert await handle.result(timeout=30) == [1, None]
            history = await handle.history()
    by_seq = {seq: [e.kind for e in history if e.seq == seq] for seq in (0, 1, 2)}
    assert by_seq[0] in (["TIMER_STARTED", "TIMER_CANCELLED"], ["TIMER_CANCELLED"])
    assert by_seq[1] == ["TIMER_STARTED", "TIMER_FIRED"]
    assert by_seq[2] == [], "the step that never ended committed nothing"


@raftoral.workflow(name="bad_races", version=1)
async def bad_races(ctx: raftoral.WorkflowContext, _: None) -> str:
    """What ``first`` refuses, before it starts anything. The refused
    operations keep their positions, never awaited (closed here, so no
    "never awaited" warning)."""
    refused: list[Any] = []
    plain = asyncio.sleep(0)
    a = ctx.sleep(0, name="a")
    refused += [plain, a]
    try:
        await ctx.first(a, plain)  # type: ignore[call-overload]
    except TypeError as e:
        seen[ctx.workflow_id].append(f"TypeError: {e}")
    done = ctx.sleep(0, name="b")
    await done
    c = ctx.sleep(0, name="c")
    refused.append(c)
    try:
        await ctx.first(done, c)
    except raftoral.InvalidArgument as e:
        seen[ctx.workflow_id].append(f"InvalidArgument: {e.message}")
    twice = ctx.sleep(0, name="d")
    refused.append(twice)
    try:
        await ctx.first(twice, twice)
    except raftoral.InvalidArgument as e:
        seen[ctx.workflow_id].append(f"InvalidArgument: {e.message}")
    for op in refused:
        op.close()
    return "refused"


async def test_first_refuses_what_is_not_a_fresh_durable_operation() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[bad_races]):
            handle = await node.client.start_workflow(bad_races, None)
            # The refused operations took positions never resolved: the
            # workflow still ends.
            assert await handle.result(timeout=30) == "refused"
    not_durable, awaited, twice = seen[handle.workflow_id]
    assert not_durable.startswith("TypeError: first() races what ctx.sleep()"), not_durable
    assert "argument 1 is coroutine" in not_durable, not_durable
    assert "'b'" in awaited and "awaited or started already" in awaited, awaited
    assert "the same operation is given twice" in twice, twice


runs: defaultdict[str, list[bool]] = defaultdict(list)
"""Per workflow id, ``is_replaying`` at the start of each run."""


@raftoral.workflow(name="gated_race", version=1)
async def gated_race(ctx: raftoral.WorkflowContext, _: None) -> list[Any]:
    """A 0.1 s sleep against a step held by the gate; then a step held by
    the same gate."""
    runs[ctx.workflow_id].append(ctx.is_replaying)

    async def held() -> str:
        await gate(ctx.workflow_id).wait()
        return "released"

    index, value = await ctx.first(ctx.sleep(0.1, name="nap"), ctx.checkpoint("held", held))

    async def after() -> bool:
        seen[ctx.workflow_id].append("after")
        await gate(ctx.workflow_id).wait()
        return True

    await ctx.checkpoint("after", after)
    return [index, value]


async def test_a_replay_takes_the_same_winner_even_when_the_loser_is_now_quicker(
    sidecar: Node, wf_id: str
) -> None:
    first = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(first, workflows=[gated_race], shutdown_grace=0.1):
        await first.start_workflow(gated_race, None, id=wf_id)
        await eventually(lambda: bool(seen[wf_id]), "the first run to pass the race")
    # Now the losing step ends at once; the history says the sleep won.
    gate(wf_id).set()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[gated_race]):
        assert await client.get_handle(wf_id).result(timeout=30) == [0, None]
    assert runs[wf_id] == [False, True]
    history = await client.get_workflow_history(wf_id)
    assert kinds(history)[:2] == [(0, "nap", "TIMER_STARTED"), (0, "nap", "TIMER_FIRED")]
    assert (2, "after", "VALUE") in kinds(history)


@raftoral.workflow(name="nap_for_an_hour", version=1)
async def nap_for_an_hour(ctx: raftoral.WorkflowContext, _: None) -> None:
    await ctx.sleep(timedelta(hours=1), name="hour")


async def test_a_sleeping_workflow_shows_its_pending_timer_and_is_listed_as_sleeping() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[nap_for_an_hour]):
            handle = await node.client.start_workflow(nap_for_an_hour, None)

            async def has_timer() -> bool:
                return bool((await handle.get()).pending_timers)

            await eventually(has_timer, "the timer to start")
            [started] = await handle.history()
            info = await handle.get()
            assert info.pending_timers == (raftoral.PendingTimer(0, "hour", started.fire_at_ms),)
            assert started.fire_at_ms == started.committed_at_ms + 3_600_000
            sleeping = await node.client.list_workflows(sleeping=True)
            assert [w.workflow_id for w in sleeping] == [handle.workflow_id]
            await handle.cancel("enough")
            with pytest.raises(raftoral.Cancelled):
                await handle.result(timeout=30)
            assert await node.client.list_workflows(sleeping=True) == []
