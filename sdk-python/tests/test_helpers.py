"""The deterministic helpers (`now`, `random`, `uuid`, `is_replaying`, the
replay-aware `logger`) across a worker restart: a workflow blocks in a late
step, its worker stops, a new worker replays it to the end."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional
from uuid import UUID

import pytest

import raftoral
from harness import Node, eventually

gates: dict[str, asyncio.Event] = {}
"""Per workflow id, what its `gate` step waits for (no entry: it does not)."""


async def pass_gate(workflow_id: str) -> bool:
    gate = gates.get(workflow_id)
    if gate is not None:
        await gate.wait()
    return True


@dataclass
class Drawn:
    """What one run of the `draws` function saw."""

    replaying: bool
    random: float
    uuid: UUID
    now: datetime
    after: Optional[float] = None
    replaying_at_gate: Optional[bool] = None


runs: defaultdict[str, list[Drawn]] = defaultdict(list)
"""Per workflow id, one entry per run of its function (first run, replays)."""


@raftoral.workflow(name="draws", version=1)
async def draws(ctx: raftoral.WorkflowContext, _: None) -> dict[str, Any]:
    replaying = ctx.is_replaying
    random, uuid = ctx.random(), ctx.uuid()
    now = await ctx.now()
    drawn = Drawn(replaying, random, uuid, now)
    runs[ctx.workflow_id].append(drawn)
    recorded = await ctx.checkpoint(
        "record",
        lambda: {"random": random, "uuid": str(uuid), "now": round(now.timestamp() * 1000)},
    )
    drawn.after = ctx.random()
    drawn.replaying_at_gate = ctx.is_replaying
    await ctx.checkpoint("gate", lambda: pass_gate(ctx.workflow_id))
    return {"recorded": recorded, "after": drawn.after}


async def test_random_uuid_and_now_are_the_same_in_a_replay(sidecar: Node, wf_id: str) -> None:
    gate = gates[wf_id] = asyncio.Event()
    before = datetime.now(timezone.utc)
    first_client = await raftoral.Client.connect(sidecar.url)
    # The gate step waits: leaving the worker cancels it after 0.1 s, and the
    # workflow stays running in the cluster.
    async with raftoral.Worker(first_client, workflows=[draws], shutdown_grace=0.1):
        await first_client.start_workflow(draws, None, id=wf_id)
        await eventually(
            lambda: bool(runs[wf_id]) and runs[wf_id][0].replaying_at_gate is not None,
            "the first run to reach the gate step",
        )
    assert len(runs[wf_id]) == 1
    gate.set()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[draws]):
        out = await client.get_handle(wf_id).result(timeout=30)
    after = datetime.now(timezone.utc)

    first, replay = runs[wf_id]
    assert (first.replaying, replay.replaying) == (False, True)
    # Past the history (the gate never committed), neither run replays.
    assert (first.replaying_at_gate, replay.replaying_at_gate) == (False, False)
    assert (replay.random, replay.uuid, replay.after) == (first.random, first.uuid, first.after)
    assert replay.now == first.now, "now() returned the committed time, not the clock"
    assert 0.0 <= first.random < 1.0 and first.after is not None and first.after != first.random
    assert first.uuid.version == 4 and str(first.uuid) == str(first.uuid).lower()
    assert first.now.tzinfo is not None and first.now.utcoffset() == timedelta(0)
    # Milliseconds, rounded down from the owner's clock.
    assert before - timedelta(milliseconds=1) <= first.now <= after
    ms = round(first.now.timestamp() * 1000)
    assert out == {
        "recorded": {"random": first.random, "uuid": str(first.uuid), "now": ms},
        "after": first.after,
    }
    history = await client.get_workflow_history(wf_id)
    assert [e.checkpoint_name for e in history] == ["raftoral.now", "record", "gate"]
    assert history[0].value == str(ms).encode(), "now is committed as a JSON integer"


async def test_two_workflows_draw_different_numbers() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[draws]):
            a = await node.client.start_workflow(draws, None)
            b = await node.client.start_workflow(draws, None)
            await a.result()
            await b.result()
    [first], [second] = runs[a.workflow_id], runs[b.workflow_id]
    assert first.random != second.random
    assert first.uuid != second.uuid
    assert first.after != second.after


@raftoral.workflow(name="chatty", version=1)
async def chatty(ctx: raftoral.WorkflowContext, steps: int) -> int:
    total = 0
    for i in range(steps):
        ctx.logger.info("before step %d", i)

        def step(i: int = i) -> int:
            return i

        total += await ctx.checkpoint(f"step-{i}", step)
    ctx.logger.warning("before the gate")
    await ctx.checkpoint("gate", lambda: pass_gate(ctx.workflow_id))
    ctx.logger.info("done")
    return total


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """The records of the `raftoral.workflow` logger, at INFO and above."""
    logger = logging.getLogger("raftoral.workflow")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_the_logger_writes_each_line_once_across_a_replay(
    sidecar: Node, wf_id: str, records: Records
) -> None:
    # A `%` in the id stays literal, with and without format arguments.
    wf_id = f"{wf_id}-100%"
    gate = gates[wf_id] = asyncio.Event()
    first_client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(first_client, workflows=[chatty], shutdown_grace=0.1):
        await first_client.start_workflow(chatty, 3, id=wf_id)
        await eventually(
            lambda: any(r.getMessage().endswith("before the gate") for r in records.records),
            "the first run to reach the gate step",
        )
    gate.set()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[chatty]):
        assert await client.get_handle(wf_id).result(timeout=30) == 3

    mine = [r for r in records.records if getattr(r, "workflow_id", None) == wf_id]
    assert [r.getMessage() for r in mine] == [
        f"[workflow {wf_id} step 0] before step 0",
        f"[workflow {wf_id} step 1] before step 1",
        f"[workflow {wf_id} step 2] before step 2",
        # Written before the step the first worker did not finish: the new
        # owner, past the history, writes it again (as the docs say).
        f"[workflow {wf_id} step 3] before the gate",
        f"[workflow {wf_id} step 3] before the gate",
        f"[workflow {wf_id} step 4] done",
    ]
    assert [getattr(r, "step", None) for r in mine] == [0, 1, 2, 3, 3, 4]
    assert [r.levelno for r in mine] == [logging.INFO] * 3 + [logging.WARNING] * 2 + [logging.INFO]
    assert {r.name for r in mine} == {"raftoral.workflow"}
    # The records name the workflow's lines, not the adapter's.
    assert {r.pathname for r in mine} == {__file__}
    assert {r.funcName for r in mine} == {"chatty"}
