"""Start options of ``client.start_workflow``: a delayed start (PENDING
until its delay has passed) and an execution timeout (FAILED with
``raftoral.WorkflowTimeout``); bad values refused before anything starts."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta
from typing import Any, Union

import pytest

import raftoral
from raftoral import WorkflowStatus

seen: defaultdict[str, list[str]] = defaultdict(list)
"""Per workflow id, what its function saw."""


@raftoral.workflow(name="scheduled", version=1)
async def scheduled(ctx: raftoral.WorkflowContext, note: str) -> dict[str, Any]:
    """One step recording when it ran (ms since the Unix epoch)."""

    def ran() -> int:
        seen[ctx.workflow_id].append("ran")
        return time.time_ns() // 1_000_000

    return {"note": note, "ran_at": await ctx.checkpoint("ran", ran)}


@pytest.mark.parametrize("delay", [1.0, timedelta(seconds=1)], ids=["seconds", "timedelta"])
async def test_a_delayed_start_stays_pending_then_runs_once_after_its_delay(
    delay: Union[float, timedelta],
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[scheduled]):
            handle = await node.client.start_workflow(scheduled, "later", start_delay=delay)
            info = await handle.get()
            assert info.status is WorkflowStatus.PENDING, info
            assert info.start_at_ms == info.created_at_ms + 1000
            assert info.timeout_at_ms == 0
            out = await handle.result(timeout=30)
            done = await handle.get()
    assert out["note"] == "later"
    assert out["ran_at"] >= info.start_at_ms, (out, info.start_at_ms)
    assert seen[handle.workflow_id] == ["ran"]
    assert done.status is WorkflowStatus.COMPLETED
    assert done.start_at_ms == 0, "not a delayed start any more"


@raftoral.workflow(name="sleeps_a_minute", version=1)
async def sleeps_a_minute(ctx: raftoral.WorkflowContext, _: None) -> str:
    try:
        await ctx.sleep(60, name="minute")
    except raftoral.RaftoralError as e:
        seen[ctx.workflow_id].append(type(e).__name__)
        raise
    return "woke"


async def test_an_execution_timeout_fails_a_sleeping_workflow_with_workflow_timeout() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[sleeps_a_minute]):
            began = time.monotonic()
            handle = await node.client.start_workflow(
                sleeps_a_minute, None, execution_timeout=timedelta(milliseconds=500)
            )
            info = await handle.get()
            assert info.timeout_at_ms == info.created_at_ms + 500
            with pytest.raises(raftoral.WorkflowFailed) as e:
                await handle.result(timeout=30)
            elapsed = time.monotonic() - began
            failed = await handle.get()
    assert e.value.type == "raftoral.WorkflowTimeout", e.value
    assert failed.status is WorkflowStatus.FAILED
    assert failed.failure is not None and failed.failure.type == "raftoral.WorkflowTimeout"
    assert 0.5 <= elapsed < 30, f"failed after {elapsed:.3f} s"
    assert failed.pending_timers == (), "its timer is gone with it"
    assert seen[handle.workflow_id] == ["Cancelled"], "its function stopped as for a cancel"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"start_delay": -1}, "start_delay"),
        ({"start_delay": timedelta(days=367)}, "366 days"),
        ({"execution_timeout": 0}, "execution_timeout"),
        ({"execution_timeout": -0.5}, "execution_timeout"),
        ({"execution_timeout": timedelta(days=400)}, "366 days"),
        ({"start_delay": "soon"}, "start_delay"),
    ],
    ids=["negative-delay", "long-delay", "zero-timeout", "negative-timeout", "long-timeout", "str"],
)
async def test_bad_start_options_are_refused_and_start_nothing(
    options: dict[str, Any], says: str
) -> None:
    async with raftoral.LocalNode() as node:
        with pytest.raises(raftoral.InvalidArgument) as e:
            await node.client.start_workflow(scheduled, "never", id="refused", **options)
        assert says in e.value.message, e.value.message
        with pytest.raises(raftoral.NotFound):
            await node.client.get_workflow("refused")
