"""Workflows of the tests, shared by the worker process and in-process workers."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import raftoral


def record(workflow_id: str, what: str, step: object) -> None:
    """Appends one effect line (one write with O_APPEND: lines never mix)."""
    path = os.environ.get("EFFECTS")
    if not path:
        return
    worker = os.environ.get("WORKER_NAME", "inproc")
    with open(path, "a") as f:
        f.write(f"{workflow_id} {what} {step} {worker}\n")


@raftoral.workflow(name="ping_pong", version=1)
async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")


@dataclass
class StepsInput:
    n: int
    gate_at: Optional[int] = None
    gate: Optional[str] = None
    busy_at: Optional[int] = None
    busy_seconds: float = 0.0


@raftoral.workflow(name="steps", version=1)
async def steps(ctx: raftoral.WorkflowContext, inp: StepsInput) -> int:
    """Step i yields 2i. At ``gate_at`` the step waits for the ``gate`` file;
    at ``busy_at`` it keeps the CPU (and the event loop) busy."""
    prefix = "renamed" if os.environ.get("RENAME_STEPS") else "step"
    total = 0
    try:
        for i in range(inp.n):

            async def compute(i: int = i) -> int:
                record(ctx.workflow_id, "compute", i)
                if i == inp.gate_at and inp.gate:
                    while not Path(inp.gate).exists():
                        await asyncio.sleep(0.02)
                if i == inp.busy_at:
                    end = time.monotonic() + inp.busy_seconds
                    while time.monotonic() < end:
                        pass
                return 2 * i

            total += await ctx.checkpoint(f"{prefix}-{i}", compute)
    except raftoral.Cancelled as e:
        record(ctx.workflow_id, "cancelled", e.reason.replace(" ", "_") or "-")
        raise
    except raftoral.NonDeterminism as e:
        record(ctx.workflow_id, "nondeterminism", f"{e.seq}:{e.expected}:{e.got}")
        raise
    return total


@raftoral.workflow(name="fails", version=1)
async def fails(ctx: raftoral.WorkflowContext, message: str) -> None:
    await ctx.checkpoint("before", lambda: 1)
    raise ValueError(message)


@dataclass
class EventInput:
    name: str
    gate: str


@raftoral.workflow(name="event_then_gate", version=1)
async def event_then_gate(ctx: raftoral.WorkflowContext, inp: EventInput) -> Any:
    """Waits for the event ``name``, records the payload it got (on every
    run, replays included), then a step waits for the ``gate`` file."""
    payload = await ctx.wait_event(inp.name)
    record(ctx.workflow_id, "got", payload)

    async def gate() -> bool:
        record(ctx.workflow_id, "compute", "gate")
        while not Path(inp.gate).exists():
            await asyncio.sleep(0.02)
        return True

    await ctx.checkpoint("gate", gate)
    return payload


@raftoral.workflow(name="status_then_event", version=1)
async def status_then_event(ctx: raftoral.WorkflowContext, event: str) -> Any:
    """Sets the status ``stage`` to "waiting" and records ``status``
    (on every run, replays included), waits for the event ``event``, then
    sets ``stage`` to "done"."""
    await ctx.set_status("stage", "waiting")
    record(ctx.workflow_id, "status", "waiting")
    payload = await ctx.wait_event(event)
    await ctx.set_status("stage", "done")
    return payload


@raftoral.workflow(name="awakeable_then_gate", version=1)
async def awakeable_then_gate(ctx: raftoral.WorkflowContext, gate: str) -> Any:
    """Creates an awakeable and publishes its id as the status
    ``awakeable``, records the value it got (on every run, replays
    included), then a step waits for the ``gate`` file."""
    awakeable = ctx.awakeable()
    await ctx.set_status("awakeable", awakeable.id)
    value = await awakeable
    record(ctx.workflow_id, "got", value)

    async def gate_step() -> bool:
        record(ctx.workflow_id, "compute", "gate")
        # Polls for the file the test creates, with a deadline.
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate file {gate} did not appear within 60 s")
            await asyncio.sleep(0.02)
        return True

    await ctx.checkpoint("gate", gate_step)
    return value


ALL: list[raftoral.Workflow[Any, Any]] = [
    ping_pong,
    steps,
    fails,
    event_then_gate,
    status_then_event,
    awakeable_then_gate,
]
