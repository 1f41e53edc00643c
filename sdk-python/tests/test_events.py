"""Events (``ctx.wait_event``, ``client.signal_workflow``): sent from
outside, kept in the workflow's durable inbox or consumed by its earliest
open wait, first in first out per name; a wait with a timeout resolves to
``None`` when the timeout passes first (decided by the log) and a later
event stays for the next wait; an idempotency key delivers once."""

from __future__ import annotations

import asyncio
import gc
import logging
import typing
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import pytest

import raftoral
from apps.workflows import EventInput, event_then_gate
from harness import Effects, Node, WorkerProcess, eventually, single_node
from raftoral import WorkflowStatus

seen: defaultdict[str, list[str]] = defaultdict(list)
"""Per workflow id, what its function saw (in order)."""

gates: dict[str, asyncio.Event] = {}
"""Per workflow id, what a gate step waits for."""


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


@dataclass
class Approval:
    approved: bool
    by: str


@dataclass
class Waits:
    name: str
    waits: int
    timeout: Optional[float] = None


@raftoral.workflow(name="events_waiter", version=1)
async def waiter(ctx: raftoral.WorkflowContext, inp: Waits) -> list[Any]:
    """``waits`` waits, one after another, for the event ``name``."""
    return [await ctx.wait_event(inp.name, inp.timeout) for _ in range(inp.waits)]


async def test_an_event_sent_before_the_wait_waits_in_the_inbox_and_is_consumed(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    # No worker runs `events_waiter` yet: the workflow is pending, and the
    # event is committed in its inbox all the same.
    handle = await client.start_workflow(waiter, Waits("approval", 1), id=wf_id)
    sent = await handle.signal("approval", {"approved": True, "by": "ana"})
    assert sent.delivered and not sent.duplicate
    assert sent.workflow.workflow_id == wf_id
    assert sent.workflow.status is WorkflowStatus.PENDING
    assert (sent.workflow.inbox_size, sent.workflow.event_waits) == (1, ())
    assert (await handle.get()).inbox_size == 1
    async with raftoral.Worker(client, workflows=[waiter]):
        assert await handle.result(timeout=30) == [{"approved": True, "by": "ana"}]
    info = await handle.get()
    assert (info.inbox_size, info.event_waits) == (0, ())
    history = await handle.history()
    assert kinds(history) == [(0, "approval", "EVENT_WAITING"), (0, "approval", "EVENT_RECEIVED")]
    assert history[0].fire_at_ms == 0, "no timeout"
    assert client.codec.decode(history[1].value) == {"approved": True, "by": "ana"}


@raftoral.workflow(name="typed_waiter", version=1)
async def typed_waiter(ctx: raftoral.WorkflowContext, _: None) -> str:
    approval = await ctx.wait_event("approval", result_type=Approval)
    assert approval is not None
    seen[ctx.workflow_id].append(type(approval).__name__)
    return f"{approval.by}:{approval.approved}"


async def test_the_payload_is_decoded_into_result_type(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[typed_waiter]):
        handle = await client.start_workflow(typed_waiter, None, id=wf_id)
        await client.signal_workflow(wf_id, "approval", Approval(approved=True, by="bo"))
        assert await handle.result(timeout=30) == "bo:True"
    assert seen[wf_id] == ["Approval"]


async def test_events_of_a_name_are_consumed_first_in_first_out(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(waiter, Waits("item", 3), id=wf_id)
    for payload in ("first", "second"):
        await handle.signal("item", payload)
    # Another name between them: not taken by the waits for "item".
    await handle.signal("other", "not-this-one")
    sent = await handle.signal("item", "third")
    assert sent.workflow.inbox_size == 4
    async with raftoral.Worker(client, workflows=[waiter]):
        assert await handle.result(timeout=30) == ["first", "second", "third"]
    # The other name's event stays in the inbox (the workflow has ended).
    assert (await handle.get()).inbox_size == 1
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert [(e.seq, client.codec.decode(e.value)) for e in received] == [
        (0, "first"),
        (1, "second"),
        (2, "third"),
    ]


async def test_the_same_idempotency_key_twice_delivers_once(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    # The second wait times out: only one event was delivered.
    handle = await client.start_workflow(waiter, Waits("pay", 2, timeout=0.2), id=wf_id)
    first = await client.signal_workflow(wf_id, "pay", 10, idempotency_key="pay-1")
    again = await client.signal_workflow(wf_id, "pay", 10, idempotency_key="pay-1")
    assert (first.duplicate, first.delivered) == (False, True)
    assert (again.duplicate, again.delivered) == (True, False)
    assert again.workflow.inbox_size == 1
    async with raftoral.Worker(client, workflows=[waiter]):
        assert await handle.result(timeout=30) == [10, None]
    assert (await handle.get()).inbox_size == 0
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert len(received) == 1


@raftoral.workflow(name="late_event", version=1)
async def late_event(ctx: raftoral.WorkflowContext, timeout: float) -> list[Any]:
    """A wait that times out, a step that waits for the test, then a wait
    with no timeout."""
    early = await ctx.wait_event("late", timeout)

    async def gate() -> bool:
        await gates[ctx.workflow_id].wait()
        return True

    await ctx.checkpoint("gate", gate)
    return [early, await ctx.wait_event("late")]


async def test_a_timed_out_wait_returns_none_and_a_later_event_stays_for_the_next_wait(
    sidecar: Node, wf_id: str
) -> None:
    gate = gates[wf_id] = asyncio.Event()
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[late_event]):
        handle = await client.start_workflow(late_event, 0.2, id=wf_id)

        async def timed_out() -> bool:
            return any(e.kind == "EVENT_TIMED_OUT" for e in await handle.history())

        await eventually(timed_out, "the first wait to time out")
        sent = await handle.signal("late", "after-the-timeout")
        # The timed-out wait does not take it: it waits in the inbox.
        assert (sent.workflow.inbox_size, sent.workflow.event_waits) == (1, ())
        gate.set()
        assert await handle.result(timeout=30) == [None, "after-the-timeout"]
        history = await handle.history()
    assert kinds(history) == [
        (0, "late", "EVENT_WAITING"),
        (0, "late", "EVENT_TIMED_OUT"),
        (1, "gate", "VALUE"),
        (2, "late", "EVENT_WAITING"),
        (2, "late", "EVENT_RECEIVED"),
    ]
    waiting, timed_out_entry = history[0], history[1]
    assert waiting.fire_at_ms == waiting.committed_at_ms + 200, "timeout = commit + 0.2 s"
    assert timed_out_entry.committed_at_ms >= waiting.fire_at_ms
    assert history[3].fire_at_ms == 0


@raftoral.workflow(name="long_wait", version=1)
async def long_wait(ctx: raftoral.WorkflowContext, _: None) -> Any:
    return await ctx.wait_event("approval", timedelta(hours=24))


async def test_open_waits_and_the_inbox_are_reported(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[long_wait]):
        handle = await client.start_workflow(long_wait, None, id=wf_id)

        async def waiting() -> bool:
            return bool((await handle.get()).event_waits)

        await eventually(waiting, "the wait to be committed")
        info = await handle.get()
        [wait] = info.event_waits
        [entry] = await handle.history()
        assert entry.kind == "EVENT_WAITING"
        assert wait == raftoral.EventWait(seq=0, name="approval", timeout_at_ms=entry.fire_at_ms)
        assert wait.timeout_at_ms == entry.committed_at_ms + 24 * 3600 * 1000
        assert info.inbox_size == 0
        # Consumed at once by the open wait: nothing stays in the inbox.
        sent = await handle.signal("approval", True)
        assert (sent.workflow.inbox_size, sent.workflow.event_waits) == (0, ())
        assert await handle.result(timeout=30) is True
    listed = await client.list_workflows(workflow_name="long_wait")
    assert [(w.workflow_id, w.inbox_size, w.event_waits) for w in listed] == [(wf_id, 0, ())]


@raftoral.workflow(name="cancelled_wait", version=1)
async def cancelled_wait(ctx: raftoral.WorkflowContext, _: None) -> Any:
    try:
        return await ctx.wait_event("never")
    except raftoral.Cancelled as e:
        seen[ctx.workflow_id].append(f"wait raised Cancelled: {e.reason}")
        raise


async def test_cancelling_a_waiting_workflow_ends_its_wait(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[cancelled_wait]):
        handle = await client.start_workflow(cancelled_wait, None, id=wf_id)

        async def waiting() -> bool:
            return bool((await handle.get()).event_waits)

        await eventually(waiting, "the wait to be committed")
        await handle.cancel("no more waiting")
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=30)
        await eventually(lambda: bool(seen[wf_id]), "the wait to end")
    assert seen[wf_id] == ["wait raised Cancelled: no more waiting"]


async def test_signals_to_an_unknown_or_ended_workflow_raise_distinct_errors(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    with pytest.raises(raftoral.NotFound) as unknown:
        await client.signal_workflow("no-such-workflow", "approval", True)
    assert "no-such-workflow" in unknown.value.message
    async with raftoral.Worker(client, workflows=[waiter]):
        handle = await client.start_workflow(waiter, Waits("approval", 0), id=wf_id)
        assert await handle.result(timeout=30) == []
    with pytest.raises(raftoral.NotRunning) as ended:
        await handle.signal("approval", True)
    assert ended.value.workflow_id == wf_id
    assert "has ended (status completed)" in ended.value.message, ended.value.message
    assert not isinstance(ended.value, raftoral.NotFound)
    assert not isinstance(unknown.value, raftoral.NotRunning)


async def test_bad_names_and_payloads_are_refused(tmp_path: Path, wf_id: str) -> None:
    node = single_node(tmp_path / "sidecar", ["--max-value-bytes", "1024"])
    try:
        client = await raftoral.Client.connect(node.url)
        handle = await client.start_workflow(waiter, Waits("big", 1), id=wf_id)
        with pytest.raises(raftoral.InvalidArgument) as too_big:
            await handle.signal("big", "x" * 2000)
        assert "1024" in too_big.value.message, too_big.value.message
        with pytest.raises(raftoral.InvalidArgument):
            await handle.signal("", True)
        with pytest.raises(raftoral.InvalidArgument):
            await handle.signal("n" * 257, True)
        with pytest.raises(raftoral.InvalidArgument):
            await handle.signal("big", True, idempotency_key="k" * 257)
        with pytest.raises(raftoral.InvalidArgument) as unencodable:
            await handle.signal("big", object())
        assert "nothing was sent" in unencodable.value.message
        # Nothing was delivered; a payload at the limit is.
        assert (await handle.get()).inbox_size == 0
        sent = await handle.signal("big", "x" * 1000)
        assert sent.workflow.inbox_size == 1
    finally:
        node.kill()


@raftoral.workflow(name="bad_wait", version=1)
async def bad_wait(ctx: raftoral.WorkflowContext, timeout: float) -> str:
    try:
        await ctx.wait_event("approval", timeout)
    except raftoral.InvalidArgument as e:
        # Refused before a position was taken: the next step takes seq 0.
        seen[ctx.workflow_id].append(e.message)
        return await ctx.checkpoint("after", lambda: "refused")
    return "waited"


@pytest.mark.parametrize(
    ("timeout", "says"),
    [(-1.0, "negative"), (366 * 24 * 3600 + 0.001, "366 days")],
    ids=["negative", "beyond-366-days"],
)
async def test_a_negative_or_too_long_timeout_raises_and_commits_nothing(
    timeout: float, says: str
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[bad_wait]):
            handle = await node.client.start_workflow(bad_wait, timeout)
            assert await handle.result(timeout=30) == "refused"
            history = await handle.history()
    [message] = seen[handle.workflow_id]
    assert says in message and "'approval'" in message, message
    assert kinds(history) == [(0, "after", "VALUE")]


@raftoral.workflow(name="race_wait", version=1)
async def race_wait(ctx: raftoral.WorkflowContext, nap_s: float) -> list[Any]:
    """A wait for ``approval`` (position 0, no timeout) raced with a sleep
    of ``nap_s`` seconds (position 1); when the sleep wins, a second wait
    for ``approval`` (position 2)."""
    wait = ctx.wait_event("approval", result_type=Approval)
    assert repr(wait) == "<Durable wait_event 'approval' seq=0>"
    index, value = await ctx.first(wait, ctx.sleep(nap_s, name="reminder"))
    if index == 0:
        assert isinstance(value, Approval)
        return [index, value.by]
    assert value is None
    then = await ctx.wait_event("approval", result_type=Approval)
    assert isinstance(then, Approval)
    return [index, None, then.by]


def asyncio_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio logged as errors (a task's exception nobody retrieved)."""
    gc.collect()
    return [
        r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]


async def test_a_wait_raced_with_a_long_sleep_wins_with_the_event_and_cancels_the_sleep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[race_wait]):
            handle = await node.client.start_workflow(race_wait, 3600.0)

            async def waiting() -> bool:
                return bool((await handle.get()).event_waits)

            await eventually(waiting, "the raced wait to be committed")
            await handle.signal("approval", Approval(approved=True, by="ann"))
            assert await handle.result(timeout=30) == [0, "ann"]
            history = await handle.history()
            info = await handle.get()
    by_seq = {seq: [(e.checkpoint_name, e.kind) for e in history if e.seq == seq] for seq in (0, 1)}
    assert by_seq[0] == [("approval", "EVENT_WAITING"), ("approval", "EVENT_RECEIVED")]
    assert by_seq[1] in (
        [("reminder", "TIMER_STARTED"), ("reminder", "TIMER_CANCELLED")],
        [("reminder", "TIMER_CANCELLED")],
    ), by_seq[1]
    assert len(history) == len(by_seq[0]) + len(by_seq[1])
    assert (info.pending_timers, info.event_waits, info.inbox_size) == ((), (), 0)
    assert asyncio_errors(caplog) == []


async def test_a_short_sleep_beats_a_wait_whose_cancel_leaves_the_event_for_the_next_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[race_wait]):
            handle = await node.client.start_workflow(race_wait, 0.2)

            async def second_wait_open() -> bool:
                waits = (await handle.get()).event_waits
                return [w.seq for w in waits] == [2]

            await eventually(second_wait_open, "the wait after the race to be open")
            history = await handle.history()
            at_0 = [e.kind for e in history if e.seq == 0]
            assert at_0 in (
                ["EVENT_WAITING", "EVENT_WAIT_CANCELLED"],
                ["EVENT_WAIT_CANCELLED"],
            ), at_0
            [cancel] = [e for e in history if e.kind == "EVENT_WAIT_CANCELLED"]
            assert (cancel.seq, cancel.checkpoint_name, cancel.value) == (0, "approval", b"")
            # The cancelled wait takes nothing: the event goes to the second.
            await handle.signal("approval", Approval(approved=True, by="bob"))
            assert await handle.result(timeout=30) == [1, None, "bob"]
            history = await handle.history()
    by_seq = {seq: [e.kind for e in history if e.seq == seq] for seq in (0, 1, 2)}
    assert by_seq[0] == at_0
    assert by_seq[1] == ["TIMER_STARTED", "TIMER_FIRED"]
    assert by_seq[2] == ["EVENT_WAITING", "EVENT_RECEIVED"]
    assert asyncio_errors(caplog) == []


async def test_a_worker_killed_after_consuming_an_event_replays_the_same_payload(
    sidecar: Node, effects: Effects, wf_id: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = await WorkerProcess.start(sidecar.url, effects.path, "first")
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(
        event_then_gate, EventInput(name="go", gate=str(gate)), id=wf_id
    )
    await handle.signal("go", "payload-1")
    # The step after the wait runs only once the event is consumed.
    await eventually(lambda: effects.count(wf_id, "compute", "gate") == 1, "the gate step")
    await first.kill()
    # Sent after the kill: the replay must not take it in place of the first.
    await handle.signal("go", "payload-2")
    gate.touch()
    second = await WorkerProcess.start(sidecar.url, effects.path, "second")
    try:
        assert await handle.result(timeout=30) == "payload-1"
    finally:
        await second.kill()
    assert [(p[2], p[3]) for p in effects.find(wf_id, "got")] == [
        ("payload-1", "first"),
        ("payload-1", "second"),
    ]
    received = [e for e in await handle.history() if e.kind == "EVENT_RECEIVED"]
    assert [client.codec.decode(e.value) for e in received] == ["payload-1"]
    assert (await handle.get()).inbox_size == 1


async def test_a_full_inbox_refuses_more_events() -> None:
    async with raftoral.LocalNode() as node:
        client = node.client
        # Nobody runs it: every event stays in the inbox.
        handle = await client.start_workflow(waiter, Waits("fill", 1))
        limit = 1000  # the engine's MAX_INBOX_EVENTS
        assert (await handle.signal("fill", 0, idempotency_key="fill-0")).delivered
        for batch in range(1, limit, 111):
            end = min(batch + 111, limit)
            await asyncio.gather(*(handle.signal("fill", i) for i in range(batch, end)))
        assert (await handle.get()).inbox_size == limit
        with pytest.raises(raftoral.ResourceExhausted) as full:
            await handle.signal("fill", "one-too-many")
        assert "inbox" in full.value.message and "full" in full.value.message, full.value.message
        # A duplicate is no new event: answered as such, not refused.
        again = await handle.signal("fill", 0, idempotency_key="fill-0")
        assert again.duplicate and again.workflow.inbox_size == limit


# --- ctx.events(): the events of a name as an async iterator -----------------


@raftoral.workflow(name="events_stream", version=1)
async def stream_waiter(ctx: raftoral.WorkflowContext, inp: Waits) -> list[Any]:
    """The first ``waits`` items of ``ctx.events(name)``."""
    items: list[Any] = []
    if inp.waits == 0:
        return items
    async for item in ctx.events(inp.name, timeout=inp.timeout):
        items.append(item)
        if len(items) == inp.waits:
            break
    return items


def waits_of(n: int) -> list[tuple[int, str, str]]:
    """The entries of ``n`` plain waits for ``item`` that each got an event."""
    return [(seq, "item", kind) for seq in range(n) for kind in ("EVENT_WAITING", "EVENT_RECEIVED")]


async def test_an_event_stream_yields_events_in_order_including_those_sent_before(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    # Nobody runs it yet: these wait in the inbox, and come first.
    handle = await client.start_workflow(stream_waiter, Waits("item", 4), id=wf_id)
    await handle.signal("item", "a")
    # A payload of JSON null is an item (None), not the end of the stream.
    await handle.signal("item", None)
    await handle.signal("other", "not-this-one")
    async with raftoral.Worker(client, workflows=[stream_waiter]):

        async def third_wait_open() -> bool:
            return [w.seq for w in (await handle.get()).event_waits] == [2]

        await eventually(third_wait_open, "the stream's third wait to be committed")
        for payload in ("c", "d"):
            await handle.signal("item", payload)
        assert await handle.result(timeout=30) == ["a", None, "c", "d"]
    history = await handle.history()
    assert kinds(history) == waits_of(4)
    assert all(e.fire_at_ms == 0 for e in history if e.kind == "EVENT_WAITING"), "no timeout"
    # The other name's event is not taken.
    assert (await handle.get()).inbox_size == 1


@raftoral.workflow(name="stream_until_timeout", version=1)
async def stream_until_timeout(ctx: raftoral.WorkflowContext, timeout: float) -> dict[str, Any]:
    """The items of ``ctx.events("late", timeout=...)`` until a wait times
    out, a step that waits for the test, then a plain wait."""
    stream = ctx.events("late", timeout=timeout)
    items = [item async for item in stream]
    # Ended: asking again takes no position.
    again = [item async for item in stream]
    seen[ctx.workflow_id].append(repr(stream))

    async def gate() -> bool:
        await gates[ctx.workflow_id].wait()
        return True

    await ctx.checkpoint("gate", gate)
    return {"items": items, "again": again, "next": await ctx.wait_event("late")}


async def test_a_timeout_ends_the_stream_and_the_late_event_goes_to_the_next_wait(
    sidecar: Node, wf_id: str
) -> None:
    gate = gates[wf_id] = asyncio.Event()
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(stream_until_timeout, 0.2, id=wf_id)
    # In the inbox before the stream starts: its first wait takes it at once.
    await handle.signal("late", "early")
    async with raftoral.Worker(client, workflows=[stream_until_timeout]):

        async def timed_out() -> bool:
            return any(e.kind == "EVENT_TIMED_OUT" for e in await handle.history())

        await eventually(timed_out, "the stream's second wait to time out")
        sent = await handle.signal("late", "after-the-timeout")
        # The timed-out wait does not take it: it waits in the inbox.
        assert (sent.workflow.inbox_size, sent.workflow.event_waits) == (1, ())
        gate.set()
        assert await handle.result(timeout=30) == {
            "items": ["early"],
            "again": [],
            "next": "after-the-timeout",
        }
        history = await handle.history()
    assert kinds(history) == [
        (0, "late", "EVENT_WAITING"),
        (0, "late", "EVENT_RECEIVED"),
        (1, "late", "EVENT_WAITING"),
        (1, "late", "EVENT_TIMED_OUT"),
        (2, "gate", "VALUE"),
        (3, "late", "EVENT_WAITING"),
        (3, "late", "EVENT_RECEIVED"),
    ]
    # Each item's wait has the timeout; the plain wait after it has none.
    for waiting in (history[0], history[2]):
        assert waiting.fire_at_ms == waiting.committed_at_ms + 200
    assert history[5].fire_at_ms == 0
    assert seen[wf_id] == ["<EventStream 'late' ended>"]


@raftoral.workflow(name="stream_break", version=1)
async def stream_break(ctx: raftoral.WorkflowContext, take: int) -> list[str]:
    """The first ``take`` approvals of the stream, a step that waits for the
    test, then one plain wait."""
    taken: list[Approval] = []
    async for approval in ctx.events("approval", result_type=Approval):
        seen[ctx.workflow_id].append(type(approval).__name__)
        taken.append(approval)
        if len(taken) == take:
            break

    async def gate() -> bool:
        seen[ctx.workflow_id].append("gate")
        await gates[ctx.workflow_id].wait()
        return True

    await ctx.checkpoint("gate", gate)
    after = await ctx.wait_event("approval", result_type=Approval)
    assert after is not None
    return [a.by for a in (*taken, after)]


async def test_breaking_out_of_a_stream_leaves_later_events_in_the_inbox(
    sidecar: Node, wf_id: str
) -> None:
    gate = gates[wf_id] = asyncio.Event()
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(stream_break, 3, id=wf_id)
    for who in ("ana", "bo", "cy", "di", "ed"):
        await handle.signal("approval", Approval(approved=True, by=who))
    assert (await handle.get()).inbox_size == 5
    async with raftoral.Worker(client, workflows=[stream_break]):
        await eventually(lambda: "gate" in seen[wf_id], "the step after the loop")
        # Three were taken; the stream holds no wait open after the break.
        info = await handle.get()
        assert (info.inbox_size, info.event_waits) == (2, ())
        gate.set()
        assert await handle.result(timeout=30) == ["ana", "bo", "cy", "di"]
        history = await handle.history()
    assert seen[wf_id] == ["Approval"] * 3 + ["gate"]
    assert (await handle.get()).inbox_size == 1
    assert kinds(history) == [
        *[(seq, "approval", k) for seq in range(3) for k in ("EVENT_WAITING", "EVENT_RECEIVED")],
        (3, "gate", "VALUE"),
        (4, "approval", "EVENT_WAITING"),
        (4, "approval", "EVENT_RECEIVED"),
    ]


async def test_a_stream_of_k_items_makes_the_history_of_k_plain_waits(sidecar: Node) -> None:
    client = await raftoral.Client.connect(sidecar.url)

    def shape(history: list[raftoral.HistoryEntry]) -> list[tuple[Any, ...]]:
        """The history without its commit times (a wait's timeout as the
        time from its commit)."""
        return [
            (
                e.seq,
                e.checkpoint_name,
                e.kind,
                client.codec.decode(e.value) if e.kind == "EVENT_RECEIVED" else None,
                e.fire_at_ms - e.committed_at_ms if e.kind == "EVENT_WAITING" else None,
            )
            for e in history
        ]

    handles = [
        await client.start_workflow(wf, Waits("item", 3, timeout=60.0))
        for wf in (waiter, stream_waiter)
    ]
    for handle in handles:
        await handle.signal("item", "a")
        await handle.signal("item", {"n": 2})
    async with raftoral.Worker(client, workflows=[waiter, stream_waiter]):
        for handle in handles:

            async def third_wait_open() -> bool:
                return [w.seq for w in (await handle.get()).event_waits] == [2]  # noqa: B023

            await eventually(third_wait_open, f"the third wait of {handle.workflow_id}")
            await handle.signal("item", 3)
            assert await handle.result(timeout=30) == ["a", {"n": 2}, 3]
    shapes = [shape(await handle.history()) for handle in handles]
    plain, streamed = shapes
    assert streamed == plain
    assert [s[:3] for s in streamed] == waits_of(3)
    assert {s[4] for s in streamed if s[2] == "EVENT_WAITING"} == {60_000}


@raftoral.workflow(name="stream_misuse", version=1)
async def stream_misuse(ctx: raftoral.WorkflowContext, _: None) -> list[str]:
    said: list[str] = []
    try:
        ctx.events("item", timeout=typing.cast(Any, "soon"))
    except raftoral.InvalidArgument as e:
        said.append(e.message)
    # A negative timeout is refused when the first item is asked for, before
    # a position is taken; the stream has ended then.
    bad = ctx.events("item", timeout=-1.0)
    try:
        async for _item in bad:
            said.append("an item")
    except raftoral.InvalidArgument as e:
        said.append(e.message)
    said.append(repr(bad))
    said.extend([str(item) async for item in bad])
    stream = ctx.events("item", timeout=0.05)
    first = stream.__anext__()
    try:
        stream.__anext__()
    except raftoral.InvalidArgument as e:
        said.append(e.message)
    try:
        await first
    except StopAsyncIteration:
        said.append(repr(stream))
    return said


async def test_a_stream_refuses_a_bad_timeout_and_takes_one_item_at_a_time() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[stream_misuse]):
            handle = await node.client.start_workflow(stream_misuse, None)
            said = await handle.result(timeout=30)
            history = await handle.history()
    wrong_type, negative, ended, busy, timed_out = said
    assert "events 'item'" in wrong_type and "timeout" in wrong_type, wrong_type
    assert "negative" in negative and "'item'" in negative, negative
    assert ended == "<EventStream 'item' ended>"
    assert "one item at a time" in busy, busy
    assert timed_out == "<EventStream 'item' ended>"
    # Only the one wait that was asked for and awaited is in the history.
    assert kinds(history) == [(0, "item", "EVENT_WAITING"), (0, "item", "EVENT_TIMED_OUT")]
