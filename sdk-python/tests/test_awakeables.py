"""Awakeables (``ctx.awakeable``, ``client.resolve_awakeable``,
``client.reject_awakeable``): a durable future the code hands out by id and
anyone completes once, through any node. The resolved value reaches the
code decoded as a step's; a rejection raises ``StepFailed`` there; a
completion that comes before the code waits is kept; a second one raises
``AlreadyCompleted``; a replay gets the same value."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import raftoral
from apps.workflows import awakeable_then_gate
from harness import Effects, Node, WorkerProcess, eventually
from raftoral import WorkflowStatus

seen: defaultdict[str, list[Any]] = defaultdict(list)
"""Per workflow id, what its function saw (in order)."""

published: dict[str, str] = {}
"""Per workflow id, the awakeable id its step handed out."""

gates: dict[str, asyncio.Event] = {}
"""Per workflow id, what a gate step waits for."""


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


async def published_id(client: raftoral.Client, workflow_id: str) -> str:
    """The awakeable id the workflow published as its status
    ``awakeable``, once there."""
    found: dict[str, Any] = {}

    async def there() -> bool:
        found.update(await client.get_status(workflow_id, ["awakeable"]))
        return "awakeable" in found

    await eventually(there, "the awakeable's id to be published")
    awakeable_id = found["awakeable"]
    assert isinstance(awakeable_id, str)
    return awakeable_id


@dataclass
class Receipt:
    amount: int
    ref: str


@raftoral.workflow(name="awk_receipt", version=1)
async def receipt_waiter(ctx: raftoral.WorkflowContext, _: None) -> str:
    """Publishes its awakeable's id as a status, waits for a receipt."""
    paid = ctx.awakeable(result_type=Receipt)
    await ctx.set_status("awakeable", paid.id)
    receipt = await paid
    seen[ctx.workflow_id].append(type(receipt).__name__)
    return f"{receipt.ref}:{receipt.amount}"


async def test_the_resolved_value_reaches_the_code_decoded_into_result_type(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[receipt_waiter]):
        handle = await client.start_workflow(receipt_waiter, None, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        assert awakeable_id == f"awk/0/{wf_id}"
        info = await client.resolve_awakeable(awakeable_id, Receipt(amount=42, ref="r-1"))
        assert isinstance(info, raftoral.WorkflowInfo)
        assert info.workflow_id == wf_id
        assert info.status is WorkflowStatus.RUNNING
        assert await handle.result(timeout=30) == "r-1:42"
    assert seen[wf_id] == ["Receipt"]
    history = await handle.history()
    # The wait is committed when the code awaits it, after the status.
    assert kinds(history) == [
        (1, "awakeable", "STATUS_SET"),
        (0, "raftoral.awakeable.0", "EVENT_WAITING"),
        (0, "raftoral.awakeable.0", "EVENT_RECEIVED"),
    ]
    assert client.codec.decode(history[2].value) == {"amount": 42, "ref": "r-1"}


@raftoral.workflow(name="awk_via_step", version=1)
async def via_step(ctx: raftoral.WorkflowContext, _: None) -> Any:
    """Hands its awakeable's id out in a step (a callback registered with
    another service), then waits for it."""
    callback = ctx.awakeable()

    def register() -> str:
        published[ctx.workflow_id] = callback.id
        return callback.id

    registered = await ctx.checkpoint("register-callback", register)
    assert registered == callback.id
    return {"got": await callback}


async def test_an_id_handed_out_by_a_step_is_resolved_without_a_value(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[via_step]):
        handle = await client.start_workflow(via_step, None, id=wf_id)
        await eventually(lambda: wf_id in published, "the step to hand the id out")
        assert published[wf_id] == f"awk/0/{wf_id}"
        await client.resolve_awakeable(published[wf_id])
        assert await handle.result(timeout=30) == {"got": None}


@raftoral.workflow(name="awk_rejected", version=1)
async def rejected(ctx: raftoral.WorkflowContext, catch: bool) -> dict[str, Any]:
    """Waits for an awakeable; with ``catch``, returns the step failure a
    rejection raises (else it fails the workflow)."""
    await ctx.checkpoint("before", lambda: True)
    approval = ctx.awakeable()
    await ctx.set_status("awakeable", approval.id)
    try:
        value = await approval
    except raftoral.StepFailed as e:
        if not catch:
            raise
        seen[ctx.workflow_id].append(e)
        # The code goes on after it: a compensation step.
        undone = await ctx.checkpoint("undo", lambda: "undone")
        return {"type": e.type, "message": e.error_message, "undone": undone}
    return {"value": value}


async def test_a_rejection_raises_step_failed_in_the_code_which_can_catch_it(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[rejected]):
        handle = await client.start_workflow(rejected, True, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        assert awakeable_id == f"awk/1/{wf_id}"
        info = await client.reject_awakeable(awakeable_id, "card declined", type="Declined")
        assert info.workflow_id == wf_id
        assert await handle.result(timeout=30) == {
            "type": "Declined",
            "message": "card declined",
            "undone": "undone",
        }
    [error] = seen[wf_id]
    assert isinstance(error, raftoral.StepFailed)
    assert (error.workflow_id, error.seq, error.step) == (wf_id, 1, awakeable_id)
    assert (error.attempts, error.details) == (1, None)
    assert "card declined" in error.message
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert [(e.seq, e.checkpoint_name, e.value) for e in received] == [
        (1, "raftoral.awakeable.1", b"")
    ]


async def test_an_uncaught_rejection_fails_the_workflow_with_its_type(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[rejected]):
        handle = await client.start_workflow(rejected, False, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        # The type defaults to "Rejected".
        await client.reject_awakeable(awakeable_id, "nobody approved")
        with pytest.raises(raftoral.WorkflowFailed) as failed:
            await handle.result(timeout=30)
    assert (failed.value.type, failed.value.error_message) == ("Rejected", "nobody approved")
    info = await handle.get()
    assert info.status is WorkflowStatus.FAILED
    assert info.failure == raftoral.Failure("Rejected", "nobody approved")


@raftoral.workflow(name="awk_gated", version=1)
async def gated(ctx: raftoral.WorkflowContext, _: None) -> Any:
    """Creates an awakeable and publishes its id, then a step waits for the
    test before the code awaits the awakeable."""
    later = ctx.awakeable()
    await ctx.set_status("awakeable", later.id)

    async def gate() -> bool:
        await gates[ctx.workflow_id].wait()
        return True

    await ctx.checkpoint("gate", gate)
    return await later


async def test_a_completion_before_the_code_waits_is_kept_until_it_does(
    sidecar: Node, wf_id: str
) -> None:
    gate = gates[wf_id] = asyncio.Event()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[gated]):
        handle = await client.start_workflow(gated, None, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        info = await client.resolve_awakeable(awakeable_id, ["early", 1])
        # Kept in the workflow's inbox: the code has not waited yet.
        assert (info.inbox_size, info.event_waits) == (1, ())
        assert not any(e.kind.startswith("EVENT") for e in await handle.history())
        # Completed once, even before the code waits.
        with pytest.raises(raftoral.AlreadyCompleted):
            await client.resolve_awakeable(awakeable_id, "second")
        gate.set()
        assert await handle.result(timeout=30) == ["early", 1]
    assert (await handle.get()).inbox_size == 0


async def test_a_second_completion_raises_already_completed(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[receipt_waiter]):
        handle = await client.start_workflow(receipt_waiter, None, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        await client.resolve_awakeable(awakeable_id, Receipt(amount=1, ref="first"))
        with pytest.raises(raftoral.AlreadyCompleted) as again:
            await client.resolve_awakeable(awakeable_id, Receipt(amount=2, ref="second"))
        assert again.value.awakeable_id == awakeable_id
        assert "already completed" in again.value.message, again.value.message
        assert awakeable_id in again.value.message
        with pytest.raises(raftoral.AlreadyCompleted):
            await client.reject_awakeable(awakeable_id, "too late")
        assert await handle.result(timeout=30) == "first:1"
    # Also once the workflow has ended.
    with pytest.raises(raftoral.AlreadyCompleted) as after_end:
        await client.resolve_awakeable(awakeable_id, Receipt(amount=3, ref="third"))
    assert isinstance(after_end.value, raftoral.RaftoralError)
    assert not isinstance(after_end.value, (raftoral.NotRunning, raftoral.InvalidArgument))
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert len(received) == 1


async def test_bad_completions_raise_distinct_errors(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    for malformed in ("", "order-1", "awk/x/order-1", "awk/1/"):
        with pytest.raises(raftoral.InvalidArgument) as bad:
            await client.resolve_awakeable(malformed, 1)
        assert "not an awakeable id" in bad.value.message, bad.value.message
    with pytest.raises(raftoral.NotFound) as unknown:
        await client.resolve_awakeable("awk/1/no-such-workflow", 1)
    assert "no-such-workflow" in unknown.value.message, unknown.value.message
    with pytest.raises(raftoral.NotFound):
        await client.reject_awakeable("awk/1/no-such-workflow", "no")
    with pytest.raises(raftoral.InvalidArgument) as unencodable:
        await client.resolve_awakeable("awk/1/no-such-workflow", object())
    assert "nothing was completed" in unencodable.value.message, unencodable.value.message
    with pytest.raises(raftoral.InvalidArgument) as no_type:
        await client.reject_awakeable("awk/1/no-such-workflow", "no", type="")
    assert "failure type" in no_type.value.message, no_type.value.message
    # The reserved event names are not a user event's.
    async with raftoral.Worker(client, workflows=[receipt_waiter]):
        handle = await client.start_workflow(receipt_waiter, None, id=wf_id)
        awakeable_id = await published_id(client, wf_id)
        with pytest.raises(raftoral.InvalidArgument):
            await handle.signal("raftoral.awakeable.0", {"amount": 1, "ref": "forged"})
        await client.resolve_awakeable(awakeable_id, Receipt(amount=5, ref="ok"))
        assert await handle.result(timeout=30) == "ok:5"
    # An awakeable of the ended workflow that was never completed: it has
    # ended.
    for complete in (
        client.resolve_awakeable(f"awk/7/{wf_id}", 1),
        client.reject_awakeable(f"awk/7/{wf_id}", "no"),
    ):
        with pytest.raises(raftoral.NotRunning) as ended:
            await complete
        assert ended.value.workflow_id == wf_id
        assert "has ended" in ended.value.message, ended.value.message


@raftoral.workflow(name="awk_race", version=1)
async def awk_race(ctx: raftoral.WorkflowContext, _: None) -> Any:
    """Publishes an awakeable's id (positions 0 and 1), then races the
    awakeable with a sleep of an hour (position 2)."""
    awakeable = ctx.awakeable(result_type=Receipt)
    assert isinstance(awakeable, raftoral.Durable)
    assert repr(awakeable) == f"<Awakeable 'awk/0/{ctx.workflow_id}' seq=0>"
    assert (awakeable.seq, awakeable.name) == (0, awakeable.id)
    await ctx.set_status("awakeable", awakeable.id)
    index, value = await ctx.first(awakeable, ctx.sleep(3600, name="deadline"))
    assert isinstance(value, Receipt)
    return [index, value.ref]


async def test_an_awakeable_raced_with_a_long_sleep_wins_when_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[awk_race]):
            handle = await node.client.start_workflow(awk_race, None)
            awakeable_id = await published_id(node.client, handle.workflow_id)
            await node.client.resolve_awakeable(awakeable_id, Receipt(amount=7, ref="r-7"))
            assert await handle.result(timeout=30) == [0, "r-7"]
            history = await handle.history()
            info = await handle.get()
    assert awakeable_id == f"awk/0/{handle.workflow_id}"
    by_seq = {seq: [e.kind for e in history if e.seq == seq] for seq in (0, 1, 2)}
    assert by_seq[0] == ["EVENT_WAITING", "EVENT_RECEIVED"]
    assert by_seq[1] == ["STATUS_SET"]
    assert by_seq[2] in (["TIMER_STARTED", "TIMER_CANCELLED"], ["TIMER_CANCELLED"]), by_seq[2]
    assert info.pending_timers == ()
    gc.collect()
    errors = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == [], "no task left with an exception nobody retrieved"


@raftoral.workflow(name="awk_cancelled", version=1)
async def awk_cancelled(ctx: raftoral.WorkflowContext, _: None) -> Any:
    try:
        return await ctx.awakeable()
    except raftoral.Cancelled as e:
        seen[ctx.workflow_id].append(f"awakeable raised Cancelled: {e.reason}")
        raise


async def test_cancelling_a_workflow_that_waits_for_an_awakeable_ends_the_wait() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[awk_cancelled]):
            handle = await node.client.start_workflow(awk_cancelled, None)

            async def waiting() -> bool:
                return bool((await handle.get()).event_waits)

            await eventually(waiting, "the awakeable's wait to be committed")
            [wait] = (await handle.get()).event_waits
            assert wait == raftoral.EventWait(seq=0, name="raftoral.awakeable.0", timeout_at_ms=0)
            await handle.cancel("no more waiting")
            with pytest.raises(raftoral.Cancelled):
                await handle.result(timeout=30)
            await eventually(lambda: bool(seen[handle.workflow_id]), "the wait to end")
        # It has ended: the awakeable can no longer be completed.
        with pytest.raises(raftoral.NotRunning):
            await node.client.resolve_awakeable(f"awk/0/{handle.workflow_id}", 1)
    assert seen[handle.workflow_id] == ["awakeable raised Cancelled: no more waiting"]


async def test_a_replay_after_the_worker_restarts_gets_the_same_value(
    sidecar: Node, effects: Effects, wf_id: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = await WorkerProcess.start(sidecar.url, effects.path, "first")
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(awakeable_then_gate, str(gate), id=wf_id)
    awakeable_id = await published_id(client, wf_id)
    await client.resolve_awakeable(awakeable_id, "value-1")
    # The step after the wait runs only once the awakeable is resolved.
    await eventually(lambda: effects.count(wf_id, "compute", "gate") == 1, "the gate step")
    await first.kill()
    # Completed once: nothing can replace the value the replay gets.
    with pytest.raises(raftoral.AlreadyCompleted):
        await client.resolve_awakeable(awakeable_id, "value-2")
    gate.touch()
    second = await WorkerProcess.start(sidecar.url, effects.path, "second")
    try:
        assert await handle.result(timeout=30) == "value-1"
    finally:
        await second.kill()
    assert [(p[2], p[3]) for p in effects.find(wf_id, "got")] == [
        ("value-1", "first"),
        ("value-1", "second"),
    ]
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert [client.codec.decode(e.value) for e in received] == ["value-1"]
