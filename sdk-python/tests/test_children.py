"""Child workflows (``ctx.start_child``, ``ctx.call_child``, app protocol
8): the child is started by the cluster in the same entry as the parent's
``CHILD_STARTED``; its result (``CHILD_COMPLETED``) or failure
(``CHILD_FAILED``, raised as ``StepFailed``) resolves the parent's
position; a child still running when its parent ends meets its
parent-close policy; clients list a workflow's children."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import raftoral
from harness import Node, eventually
from raftoral import ParentClose, WorkflowStatus


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


@raftoral.workflow(name="child_double", version=1)
async def double(ctx: raftoral.WorkflowContext, n: int) -> int:
    return await ctx.checkpoint("double", lambda: n * 2)


@raftoral.workflow(name="child_fail", version=1)
async def failing(ctx: raftoral.WorkflowContext, item: str) -> int:
    await ctx.checkpoint("look", lambda: item)
    raise raftoral.ApplicationError(f"no {item} left", type="OutOfStock")


@raftoral.workflow(name="child_wait", version=1)
async def waiting(ctx: raftoral.WorkflowContext, _: None) -> str:
    """Waits for the event ``go``; returns its payload."""
    got = await ctx.wait_event("go")
    return f"went:{got}"


@raftoral.workflow(name="parent_call", version=1)
async def parent_call(ctx: raftoral.WorkflowContext, n: int) -> dict[str, Any]:
    await ctx.checkpoint("before", lambda: True)
    doubled = await ctx.call_child("child_double", n, result_type=int)
    return {"doubled": doubled, "type": type(doubled).__name__}


async def test_call_child_returns_the_childs_result_recorded_in_the_parents_history(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_call, double]):
        handle = await client.start_workflow(parent_call, 21, id=wf_id)
        assert await handle.result(timeout=30) == {"doubled": 42, "type": "int"}
        child_id = f"{wf_id}/1"
        history = await handle.history()
        assert kinds(history) == [
            (0, "before", "VALUE"),
            (1, "child_double", "CHILD_STARTED"),
            (1, "child_double", "CHILD_COMPLETED"),
        ]
        assert history[1].value == child_id.encode()
        assert client.codec.decode(history[2].value) == 42
        child = await client.get_workflow(child_id)
        assert child.status is WorkflowStatus.COMPLETED
        assert (child.workflow_name, child.parent_id, child.parent_seq) == (
            "child_double",
            wf_id,
            1,
        )
        assert child.parent_close is ParentClose.CANCEL
        parent = await handle.get()
        assert (parent.parent_id, parent.parent_close, parent.open_children) == ("", None, ())


@raftoral.workflow(name="parent_fanout", version=1)
async def parent_fanout(ctx: raftoral.WorkflowContext, n: int) -> list[int]:
    # Started side by side: positions follow call order, so child i is at
    # position i whichever start commits first.
    handles = await asyncio.gather(
        *(ctx.start_child("child_double", i, result_type=int) for i in range(n))
    )
    assert [h.id for h in handles] == [f"{ctx.workflow_id}/{i}" for i in range(n)]
    return list(await asyncio.gather(*(h.result() for h in handles)))


async def test_a_fan_out_of_twenty_children_gathers_every_result_in_order(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_fanout, double]):
        handle = await client.start_workflow(parent_fanout, 20, id=wf_id)
        assert await handle.result(timeout=60) == [i * 2 for i in range(20)]
        history = await handle.history()
        started = sorted(e.seq for e in history if e.kind == "CHILD_STARTED")
        completed = sorted(e.seq for e in history if e.kind == "CHILD_COMPLETED")
        assert started == completed == list(range(20))
        children = await client.list_workflows(parent_id=wf_id)
        assert sorted((c.workflow_id, c.parent_seq) for c in children) == sorted(
            (f"{wf_id}/{i}", i) for i in range(20)
        )
        assert {c.status for c in children} == {WorkflowStatus.COMPLETED}
        assert (await handle.get()).open_children == ()


@raftoral.workflow(name="parent_catch", version=1)
async def parent_catch(ctx: raftoral.WorkflowContext, catch: bool) -> dict[str, Any]:
    handle = await ctx.start_child("child_fail", "widgets", id=f"{ctx.workflow_id}-stock")
    try:
        await handle.result()
    except raftoral.StepFailed as e:
        if not catch:
            raise
        after = await ctx.checkpoint("after", lambda: "compensated")
        return {"type": e.type, "message": e.error_message, "seq": e.seq, "after": after}
    return {"unexpected": True}


async def test_a_failed_child_raises_step_failed_with_its_type_in_the_parent(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_catch, failing]):
        handle = await client.start_workflow(parent_catch, True, id=wf_id)
        assert await handle.result(timeout=30) == {
            "type": "OutOfStock",
            "message": "no widgets left",
            "seq": 0,
            "after": "compensated",
        }
        assert kinds(await handle.history()) == [
            (0, "child_fail", "CHILD_STARTED"),
            (0, "child_fail", "CHILD_FAILED"),
            (1, "after", "VALUE"),
        ]
        child = await client.get_workflow(f"{wf_id}-stock")
        assert child.status is WorkflowStatus.FAILED

        # Not caught: the parent fails with the child's failure.
        other = f"{wf_id}-b"
        uncaught = await client.start_workflow(parent_catch, False, id=other)
        with pytest.raises(raftoral.WorkflowFailed) as failed:
            await uncaught.result(timeout=30)
        assert (failed.value.type, failed.value.error_message) == (
            "OutOfStock",
            "no widgets left",
        )


@raftoral.workflow(name="parent_leave", version=1)
async def parent_leave(ctx: raftoral.WorkflowContext, policy: str) -> list[str]:
    """Starts a waiting child with ``policy`` (empty: the default) and
    returns at once, leaving it to the policy."""
    if policy:
        handle = await ctx.start_child("child_wait", None, parent_close=policy)
    else:
        handle = await ctx.start_child("child_wait", None)
    return [handle.id]


async def test_the_default_policy_cancels_a_child_still_running_when_the_parent_ends(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_leave, waiting]):
        handle = await client.start_workflow(parent_leave, "", id=wf_id)
        assert await handle.result(timeout=30) == [f"{wf_id}/0"]
        child = client.get_handle(f"{wf_id}/0")
        info = await child.wait(timeout=30)
        assert info.status is WorkflowStatus.CANCELLED
        assert info.parent_close is ParentClose.CANCEL


async def test_an_abandoned_child_runs_on_after_its_parent_ended(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_leave, waiting]):
        handle = await client.start_workflow(parent_leave, "abandon", id=wf_id)
        assert await handle.result(timeout=30) == [f"{wf_id}/0"]
        child_id = f"{wf_id}/0"
        info = await client.get_workflow(child_id)
        assert info.status is WorkflowStatus.RUNNING
        assert info.parent_close is ParentClose.ABANDON
        # It still takes its event and completes, its parent long done.
        await client.signal_workflow(child_id, "go", 7)
        assert await client.get_handle(child_id).result(timeout=30) == "went:7"


@raftoral.workflow(name="parent_hold", version=1)
async def parent_hold(ctx: raftoral.WorkflowContext, n: int) -> list[str]:
    """Starts ``n`` waiting children (abandon: the test ends them), then
    waits for the event ``finish``."""
    handles = [
        await ctx.start_child("child_wait", None, parent_close=ParentClose.ABANDON)
        for _ in range(n)
    ]
    await ctx.wait_event("finish")
    return list(await asyncio.gather(*(h.result() for h in handles)))


async def test_list_workflows_by_parent_lists_its_children_and_open_children(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_hold, waiting, double]):
        handle = await client.start_workflow(parent_hold, 3, id=wf_id)
        ids = [f"{wf_id}/{i}" for i in range(3)]
        # An unrelated workflow is no child.
        await client.start_workflow(double, 1, id=f"{wf_id}-other")

        async def listed() -> bool:
            return len(await client.list_workflows(parent_id=wf_id)) == 3

        await eventually(listed, "the three children to be listed")
        children = await client.list_workflows(parent_id=wf_id)
        assert [c.workflow_id for c in children] == ids
        assert [(c.parent_id, c.parent_seq) for c in children] == [(wf_id, i) for i in range(3)]
        assert {c.parent_close for c in children} == {ParentClose.ABANDON}
        assert sorted((await handle.get()).open_children) == ids
        assert await client.list_workflows(parent_id=f"{wf_id}-none") == []

        for i, child_id in enumerate(ids):
            await client.signal_workflow(child_id, "go", i)
        await client.signal_workflow(wf_id, "finish", None)
        assert await handle.result(timeout=30) == [f"went:{i}" for i in range(3)]
        assert (await handle.get()).open_children == ()


@raftoral.workflow(name="parent_race", version=1)
async def parent_race(ctx: raftoral.WorkflowContext, _: None) -> dict[str, Any]:
    """Races a child that waits for ``go`` with a short sleep, then a child
    that completes at once with a long sleep."""
    slow = await ctx.start_child("child_wait", None)
    raced: tuple[int, Any] = await ctx.first(slow.result(), ctx.sleep(0.2, name="short"))
    won: tuple[int, Any] = await ctx.first(
        ctx.call_child("child_double", 5, result_type=int), ctx.sleep(3600, name="long")
    )
    return {"first": raced[0], "second": won[0], "value": won[1], "slow": slow.id}


async def test_first_races_a_childs_result_with_a_sleep(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_race, waiting, double]):
        handle = await client.start_workflow(parent_race, None, id=wf_id)
        assert await handle.result(timeout=30) == {
            "first": 1,
            "second": 0,
            "value": 10,
            "slow": f"{wf_id}/0",
        }
        # The losing child was left to its policy (cancel) when the parent ended.
        info = await client.get_handle(f"{wf_id}/0").wait(timeout=30)
        assert info.status is WorkflowStatus.CANCELLED


@raftoral.workflow(name="parent_self", version=1)
async def parent_self(ctx: raftoral.WorkflowContext, what: str) -> str:
    if what == "self":
        await ctx.start_child("child_double", 1, id=ctx.workflow_id)
    else:
        await ctx.start_child("child_double", 1, parent_close=what)
    return "started"


async def test_a_workflow_cannot_be_its_own_child_nor_take_an_unknown_policy(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[parent_self, double]):
        own = await client.start_workflow(parent_self, "self", id=wf_id)
        with pytest.raises(raftoral.WorkflowFailed, match="own child"):
            await own.result(timeout=30)
        bad = await client.start_workflow(parent_self, "linger", id=f"{wf_id}-b")
        with pytest.raises(raftoral.WorkflowFailed, match="parent_close"):
            await bad.result(timeout=30)
        assert await client.list_workflows(parent_id=wf_id) == []


class PrefixCodec:
    """JSON behind a prefix that makes no byte string JSON."""

    _json = raftoral.JsonCodec()

    def encode(self, value: Any) -> bytes:
        return b"\xff" + self._json.encode(value)

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        assert data[:1] == b"\xff", data
        return self._json.decode(data[1:], type_hint)


@raftoral.workflow(name="parent_codec", version=1)
async def parent_codec(ctx: raftoral.WorkflowContext, n: int) -> int:
    return await ctx.call_child("child_double", n, result_type=int)


async def test_a_childs_input_and_result_go_through_any_codec() -> None:
    async with raftoral.LocalNode(codec=PrefixCodec()) as node:
        client = node.client
        async with raftoral.Worker(client, workflows=[parent_codec, double]):
            handle = await client.start_workflow(parent_codec, 4)
            assert await handle.result(timeout=30) == 8
            history = await handle.history()
        child = await client.get_workflow(f"{handle.workflow_id}/0")
        assert (child.input, child.result) == (b"\xff4", b"\xff8")
        assert [(e.kind, e.value) for e in history] == [
            ("CHILD_STARTED", f"{handle.workflow_id}/0".encode()),
            ("CHILD_COMPLETED", b"\xff8"),
        ]
