"""Readable status (``ctx.set_status``, ``client.get_status``) and
signal-with-start (``client.signal_with_start``): a status the code set is
read by key from the history (the latest value of each), also after the
workflow ended, and a replay does not set it again; signal-with-start
starts a workflow unless it exists and sends it an event, in one entry."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

import raftoral
from apps.workflows import status_then_event
from harness import Effects, Node, WorkerProcess, eventually
from raftoral import WorkflowStatus

seen: defaultdict[str, list[str]] = defaultdict(list)
"""Per workflow id, what its function saw (in order)."""


def status_sets(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, Any]]:
    """The ``STATUS_SET`` entries: (seq, key, decoded value)."""
    return [
        (e.seq, e.checkpoint_name, json.loads(e.value)) for e in history if e.kind == "STATUS_SET"
    ]


@dataclass
class Progress:
    done: int
    of: int


@raftoral.workflow(name="status_progress", version=1)
async def progress(ctx: raftoral.WorkflowContext, items: int) -> str:
    """Sets ``stage`` twice and ``progress`` once per item (each item an
    event), then ``stage`` to "done"."""
    await ctx.set_status("stage", "starting")
    await ctx.set_status("stage", "waiting")
    for i in range(items):
        await ctx.wait_event("item")
        await ctx.set_status("progress", Progress(done=i + 1, of=items))
    await ctx.set_status("stage", "done")
    return "ok"


async def test_the_latest_value_of_each_key_is_read_while_it_runs_and_after_it_ended(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[progress]):
        handle = await client.start_workflow(progress, 2, id=wf_id)

        async def waiting() -> bool:
            return await handle.get_status() == {"stage": "waiting"}

        await eventually(waiting, "the stage to be set")
        await handle.signal("item", 1)

        async def one_done() -> bool:
            return "progress" in await handle.get_status()

        await eventually(one_done, "the first item to be counted")
        assert await client.get_status(wf_id) == {
            "stage": "waiting",
            "progress": {"done": 1, "of": 2},
        }
        # Only the keys asked for; a key never set is absent.
        assert await client.get_status(wf_id, ["progress", "never-set"]) == {
            "progress": {"done": 1, "of": 2}
        }
        assert await client.get_status(wf_id, ("stage",)) == {"stage": "waiting"}
        assert await client.get_status(wf_id, []) == {}
        await handle.signal("item", 2)
        assert await handle.result(timeout=30) == "ok"
    # Read from the history: no worker needed, after the end too.
    assert await client.get_status(wf_id) == {"stage": "done", "progress": {"done": 2, "of": 2}}
    history = await handle.history()
    assert status_sets(history) == [
        (0, "stage", "starting"),
        (1, "stage", "waiting"),
        (3, "progress", {"done": 1, "of": 2}),
        (5, "progress", {"done": 2, "of": 2}),
        (6, "stage", "done"),
    ]


@raftoral.workflow(name="status_side_by_side", version=1)
async def side_by_side(ctx: raftoral.WorkflowContext, _: None) -> int:
    """Statuses and a step started side by side keep their call order."""
    first = ctx.set_status("a", 1)
    step = ctx.checkpoint("step", lambda: 2)
    last = ctx.set_status("b", [3])
    assert repr(first) == "<Durable set_status 'a' seq=0>"
    assert (first.seq, step.seq, last.seq) == (0, 1, 2)
    set_last, value, set_first = await asyncio.gather(last, step, first)
    assert set_last is None and set_first is None
    return value


async def test_a_status_takes_its_position_when_set_status_is_called() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[side_by_side]):
            handle = await node.client.start_workflow(side_by_side, None)
            assert await handle.result(timeout=30) == 2
            history = await handle.history()
        # At the positions taken (the history is in commit order).
        assert sorted((e.seq, e.checkpoint_name, e.kind) for e in history) == [
            (0, "a", "STATUS_SET"),
            (1, "step", "VALUE"),
            (2, "b", "STATUS_SET"),
        ]
        assert await handle.get_status() == {"a": 1, "b": [3]}


@raftoral.workflow(name="status_too_big", version=1)
async def too_big(ctx: raftoral.WorkflowContext, size: int) -> str:
    try:
        await ctx.set_status("report", "x" * size)
    except raftoral.InvalidArgument as e:
        # Refused before a position was taken: the next step takes seq 0.
        seen[ctx.workflow_id].append(e.message)
        return await ctx.checkpoint("after", lambda: "refused")
    return await ctx.checkpoint("after", lambda: "set")


async def test_a_status_over_64_kib_raises_in_the_workflow_and_commits_nothing() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[too_big]):
            # The JSON string's quotes count: 65,536 bytes in all is the limit.
            at_limit = await node.client.start_workflow(too_big, 64 * 1024 - 2)
            assert await at_limit.result(timeout=30) == "set"
            over = await node.client.start_workflow(too_big, 64 * 1024 - 1)
            assert await over.result(timeout=30) == "refused"
            history = await over.history()
        [message] = seen[over.workflow_id]
        assert "'report'" in message and "65537 bytes" in message, message
        assert "65536-byte limit" in message, message
        assert [(e.seq, e.checkpoint_name, e.kind) for e in history] == [(0, "after", "VALUE")]
        assert await over.get_status() == {}
        assert len((await at_limit.get_status())["report"]) == 64 * 1024 - 2


class BytesCodec(raftoral.JsonCodec):
    """JSON, except bytes, which are written as they are (not JSON) and
    read back as bytes."""

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        return super().encode(value)

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        try:
            return super().decode(data, type_hint)
        except ValueError:  # not JSON (UnicodeDecodeError is one too)
            return data


@raftoral.workflow(name="status_not_json", version=1)
async def not_json(ctx: raftoral.WorkflowContext, _: None) -> str:
    await ctx.set_status("raw", b"\xff\xfe")
    await ctx.set_status("text", b"not json")
    try:
        await ctx.set_status("raw", object())
    except raftoral.InvalidArgument as e:
        # Refused before a position was taken: the next step takes seq 2.
        seen[ctx.workflow_id].append(e.message)
    return await ctx.checkpoint("after", lambda: "done")


async def test_any_codec_output_is_a_status_and_an_unencodable_value_is_refused() -> None:
    async with raftoral.LocalNode(codec=BytesCodec()) as node:
        async with raftoral.Worker(node.client, workflows=[not_json]):
            handle = await node.client.start_workflow(not_json, None)
            assert await handle.result(timeout=30) == "done"
            history = await handle.history()
        # Committed as the codec wrote them, read back with the same codec.
        assert await handle.get_status() == {"raw": b"\xff\xfe", "text": b"not json"}
    [unencodable] = seen[handle.workflow_id]
    assert "cannot encode" in unencodable and "nothing was set" in unencodable, unencodable
    assert "'raw'" in unencodable, unencodable
    assert [(e.seq, e.checkpoint_name, e.kind, e.value) for e in history] == [
        (0, "raw", "STATUS_SET", b"\xff\xfe"),
        (1, "text", "STATUS_SET", b"not json"),
        (2, "after", "VALUE", b'"done"'),
    ]


@raftoral.workflow(name="status_race", version=1)
async def status_race(ctx: raftoral.WorkflowContext, _: None) -> str:
    status = ctx.set_status("stage", "racing")
    nap = ctx.sleep(0.01)
    try:
        await ctx.first(status, nap)
    except raftoral.InvalidArgument as e:
        seen[ctx.workflow_id].append(e.message)
    await status
    await nap
    return "done"


async def test_a_status_set_is_not_raced_with_first() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[status_race]):
            handle = await node.client.start_workflow(status_race, None)
            assert await handle.result(timeout=30) == "done"
    [message] = seen[handle.workflow_id]
    assert "status set" in message and "first()" in message, message


async def test_a_replay_after_the_worker_restarts_does_not_set_the_status_again(
    sidecar: Node, effects: Effects, wf_id: str
) -> None:
    first = await WorkerProcess.start(sidecar.url, effects.path, "first")
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(status_then_event, "go", id=wf_id)

    async def waiting() -> bool:
        return bool((await handle.get()).event_waits)

    await eventually(waiting, "the wait after the status")
    assert await handle.get_status() == {"stage": "waiting"}
    await first.kill()
    second = await WorkerProcess.start(sidecar.url, effects.path, "second")
    try:
        # The second worker replays the status set, then waits again.
        await eventually(
            lambda: len(effects.find(wf_id, "status")) == 2, "the replay on the second worker"
        )
        await handle.signal("go", "payload")
        assert await handle.result(timeout=30) == "payload"
    finally:
        await second.kill()
    assert [p[3] for p in effects.find(wf_id, "status")] == ["first", "second"]
    assert status_sets(await handle.history()) == [(0, "stage", "waiting"), (2, "stage", "done")]
    assert await handle.get_status() == {"stage": "done"}


async def test_reading_the_status_of_an_unknown_workflow_raises_not_found(sidecar: Node) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    with pytest.raises(raftoral.NotFound) as unknown:
        await client.get_status("no-such-workflow")
    assert "no-such-workflow" in unknown.value.message
    with pytest.raises(raftoral.NotFound):
        await client.get_status("no-such-workflow", [])
    with pytest.raises(raftoral.InvalidArgument) as one_str:
        await client.get_status("no-such-workflow", "stage")
    assert "['stage']" in one_str.value.message, one_str.value.message


@dataclass
class Cart:
    user: str
    items: int


@raftoral.workflow(name="status_cart", version=1)
async def cart(ctx: raftoral.WorkflowContext, inp: Cart) -> list[Any]:
    """Waits for ``items`` events ``add``; returns the user and the items."""
    return [inp.user, *[await ctx.wait_event("add") for _ in range(inp.items)]]


async def test_signal_with_start_starts_once_and_delivers_every_event(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    first = await client.signal_with_start(
        cart, Cart("ana", 2), id=wf_id, event="add", payload="book"
    )
    assert (first.started, first.duplicate, first.delivered) == (True, False, True)
    assert first.workflow.workflow_id == wf_id
    assert first.workflow.workflow_name == "status_cart"
    assert first.workflow.status is WorkflowStatus.PENDING, "no worker runs it yet"
    assert first.workflow.inbox_size == 1
    # It exists: not started again, its input kept, the event delivered.
    again = await client.signal_with_start(
        cart, Cart("bo", 5), id=wf_id, event="add", payload="pen"
    )
    assert (again.started, again.duplicate) == (False, False)
    assert again.workflow.inbox_size == 2
    async with raftoral.Worker(client, workflows=[cart]):
        assert await client.get_handle(wf_id).result(timeout=30) == ["ana", "book", "pen"]
    assert client.codec.decode((await client.get_workflow(wf_id)).input) == {
        "user": "ana",
        "items": 2,
    }


async def test_signal_with_start_to_a_running_workflow_is_consumed_by_its_wait(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[cart]):
        # By name and version, as start_workflow takes them.
        handle = await client.start_workflow("status_cart", {"user": "cy", "items": 1}, id=wf_id)

        async def waiting() -> bool:
            return bool((await handle.get()).event_waits)

        await eventually(waiting, "the wait to be committed")
        sent = await client.signal_with_start(
            "status_cart",
            {"user": "other", "items": 9},
            version=1,
            id=wf_id,
            event="add",
            payload={"sku": 7},
        )
        assert (sent.started, sent.duplicate) == (False, False)
        assert await handle.result(timeout=30) == ["cy", {"sku": 7}]


async def test_concurrent_signal_with_starts_start_one_workflow(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    answers = await asyncio.gather(
        *(
            client.signal_with_start(cart, Cart("many", 20), id=wf_id, event="add", payload=i)
            for i in range(20)
        )
    )
    assert sum(a.started for a in answers) == 1
    assert not any(a.duplicate for a in answers)
    async with raftoral.Worker(client, workflows=[cart]):
        result = await client.get_handle(wf_id).result(timeout=30)
    assert result[0] == "many" and sorted(result[1:]) == list(range(20))


async def test_signal_with_start_with_the_same_key_twice_delivers_once(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    first = await client.signal_with_start(
        cart, Cart("dee", 1), id=wf_id, event="add", payload="x", key="add-x"
    )
    again = await client.signal_with_start(
        cart, Cart("dee", 1), id=wf_id, event="add", payload="x", key="add-x"
    )
    assert (first.started, first.duplicate) == (True, False)
    assert (again.started, again.duplicate, again.delivered) == (False, True, False)
    assert again.workflow.inbox_size == 1
    async with raftoral.Worker(client, workflows=[cart]):
        assert await client.get_handle(wf_id).result(timeout=30) == ["dee", "x"]
    assert (await client.get_workflow(wf_id)).inbox_size == 0


async def test_signal_with_start_to_an_ended_workflow_raises_not_running(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[cart]):
        await client.signal_with_start(cart, Cart("eve", 1), id=wf_id, event="add", payload=1)
        assert await client.get_handle(wf_id).result(timeout=30) == ["eve", 1]
    with pytest.raises(raftoral.NotRunning) as ended:
        await client.signal_with_start(cart, Cart("eve", 1), id=wf_id, event="add", payload=2)
    assert ended.value.workflow_id == wf_id
    assert "has ended (status completed)" in ended.value.message, ended.value.message
    info = await client.get_workflow(wf_id)
    assert (info.status, info.inbox_size) == (WorkflowStatus.COMPLETED, 0)


async def test_signal_with_start_without_an_id_or_with_bad_input_starts_nothing(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    for no_id in ("", None):
        with pytest.raises(raftoral.InvalidArgument) as missing:
            await client.signal_with_start(
                cart,
                Cart("fay", 1),
                id=no_id,  # type: ignore[arg-type]
                event="add",
                payload=1,
            )
        assert "needs an id" in missing.value.message, missing.value.message
        assert "nothing was started or sent" in missing.value.message
    with pytest.raises(raftoral.InvalidArgument) as bad_input:
        await client.signal_with_start("status_cart", object(), id=wf_id, event="add")
    assert "input" in bad_input.value.message and "nothing was started" in bad_input.value.message
    with pytest.raises(raftoral.InvalidArgument) as bad_payload:
        await client.signal_with_start(
            cart, Cart("fay", 1), id=wf_id, event="add", payload=object()
        )
    assert "payload of event 'add'" in bad_payload.value.message
    with pytest.raises(raftoral.InvalidArgument) as negative:
        await client.signal_with_start(cart, Cart("fay", 1), id=wf_id, event="add", start_delay=-1)
    assert "start_delay" in negative.value.message
    with pytest.raises(raftoral.InvalidArgument):
        await client.signal_with_start(cart, Cart("fay", 1), id=wf_id, event="")
    assert await client.list_workflows(workflow_name="status_cart") == []


async def test_signal_with_start_takes_the_start_options(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    sent = await client.signal_with_start(
        cart,
        Cart("gus", 1),
        id=wf_id,
        event="add",
        payload="later",
        start_delay=3600,
        execution_timeout=7200,
    )
    info = sent.workflow
    assert sent.started and info.status is WorkflowStatus.PENDING
    assert info.start_at_ms >= info.created_at_ms + 3_600_000
    assert info.inbox_size == 1, "the event waits in the inbox until it starts"
