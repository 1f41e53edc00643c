"""Durable calls from a workflow to other workflows
(``ctx.signal_workflow``, ``ctx.workflow_result``, as the Rust SDK's
``outbound.rs``), and the client's conveniences (``execute_workflow``,
``workflows()`` paging as an async iterator)."""

from __future__ import annotations

from typing import Any

import raftoral
from harness import Node, eventually
from raftoral import WorkflowStatus


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


@raftoral.workflow(name="calls_target", version=1)
async def target(ctx: raftoral.WorkflowContext, _: None) -> str:
    """Waits for ``go`` then ``done``; returns the payload of ``go``."""
    got = await ctx.wait_event("go")
    await ctx.wait_event("done")
    return f"got:{got}"


@raftoral.workflow(name="calls_signal", version=1)
async def signal(ctx: raftoral.WorkflowContext, args: dict[str, Any]) -> Any:
    """Sends ``go`` with ``payload`` to ``target``; returns the duplicate
    flag, or the step's failure."""
    try:
        return await ctx.signal_workflow(args["target"], "go", args["payload"])
    except raftoral.StepFailed as e:
        return {"type": e.type, "step": e.step, "non_retryable": e.non_retryable}


@raftoral.workflow(name="calls_quick", version=1)
async def quick(ctx: raftoral.WorkflowContext, n: int) -> int:
    return await ctx.checkpoint("double", lambda: n * 2)


@raftoral.workflow(name="calls_fail", version=1)
async def failing(ctx: raftoral.WorkflowContext, sku: str) -> int:
    await ctx.checkpoint("look", lambda: sku)
    raise raftoral.ApplicationError(f"no {sku} left", type="OutOfStock", details={"sku": sku})


@raftoral.workflow(name="calls_result", version=1)
async def result_of(ctx: raftoral.WorkflowContext, target_id: str) -> Any:
    """The result of ``target_id`` (and its Python type), or the step's
    failure."""
    try:
        value = await ctx.workflow_result(target_id, result_type=int)
    except raftoral.StepFailed as e:
        return {"type": e.type, "message": e.error_message, "details": e.details}
    return {"value": value, "type": type(value).__name__}


async def test_a_workflow_signals_another_once_with_its_step_position_as_the_key(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[target, signal]):
        waiting = await client.start_workflow(target, None, id=f"{wf_id}-target")
        sender = await client.start_workflow(
            signal, {"target": waiting.workflow_id, "payload": "parcel-7"}, id=f"{wf_id}-sender"
        )
        assert await sender.result(timeout=30) is False, "delivered, not a duplicate"
        step = f"signal:{waiting.workflow_id}:go"
        assert kinds(await sender.history()) == [(0, step, "VALUE")]

        # The send's idempotency key is "{workflow_id}/{position}": the same
        # event sent again with it is a duplicate, not a second event.
        again = await client.signal_workflow(
            waiting.workflow_id, "go", "other", idempotency_key=f"{sender.workflow_id}/0"
        )
        assert again.duplicate
        assert again.workflow.inbox_size == 0, "the duplicate was not kept in the inbox"
        await waiting.signal("done")
        assert await waiting.result(timeout=30) == "got:parcel-7"
        received = [e for e in await waiting.history() if e.kind == "EVENT_RECEIVED"]
        assert [e.checkpoint_name for e in received] == ["go", "done"], "one 'go' received"


async def test_a_signal_to_a_missing_or_ended_workflow_fails_its_step_for_good(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[signal, quick]):
        missing = await client.execute_workflow(
            signal, {"target": "nobody-here", "payload": 1}, id=f"{wf_id}-missing"
        )
        assert missing == {
            "type": "raftoral.WorkflowNotFound",
            "step": "signal:nobody-here:go",
            "non_retryable": True,
        }
        history = await client.get_workflow_history(f"{wf_id}-missing")
        assert [e.kind for e in history] == ["STEP_FAILED"], "no retry of a missing target"

        ended = await client.execute_workflow(quick, 1, id=f"{wf_id}-ended")
        assert ended == 2
        refused = await client.execute_workflow(
            signal, {"target": f"{wf_id}-ended", "payload": 1}, id=f"{wf_id}-late"
        )
        assert refused["type"] == "raftoral.WorkflowEnded"


async def test_workflow_result_returns_a_completed_targets_result(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[quick, result_of]):
        done = await client.start_workflow(quick, 21, id=f"{wf_id}-quick")
        caller = await client.start_workflow(result_of, done.workflow_id, id=f"{wf_id}-caller")
        assert await caller.result(timeout=30) == {"value": 42, "type": "int"}
        history = await caller.history()
        assert kinds(history) == [(0, f"result:{done.workflow_id}", "VALUE")]
        assert client.codec.decode(history[0].value) == 42


async def test_workflow_result_waits_for_a_running_target(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[target, result_of]):
        waiting = await client.start_workflow(target, None, id=f"{wf_id}-target")
        caller = await client.start_workflow(result_of, waiting.workflow_id, id=f"{wf_id}-caller")

        async def caller_running() -> bool:
            return (await caller.get()).status is WorkflowStatus.RUNNING

        await eventually(caller_running, "the caller to run")
        await client.cancel_workflow(waiting.workflow_id, "stop", cleanup=0)
        out = await caller.result(timeout=30)
        assert out["type"] == "raftoral.WorkflowCancelled", out
        assert "stop" in out["message"]


async def test_workflow_result_of_a_failed_or_missing_target_fails_with_its_failure(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[failing, result_of]):
        failed = await client.start_workflow(failing, "book", id=f"{wf_id}-fail")
        out = await client.execute_workflow(result_of, failed.workflow_id, id=f"{wf_id}-a")
        assert out == {"type": "OutOfStock", "message": "no book left", "details": {"sku": "book"}}
        history = await client.get_workflow_history(f"{wf_id}-a")
        assert [e.kind for e in history] == ["STEP_FAILED"], "a failed target is not retried"

        missing = await client.execute_workflow(result_of, "nobody-here", id=f"{wf_id}-b")
        assert missing["type"] == "raftoral.WorkflowNotFound"


async def test_execute_workflow_starts_and_returns_the_result(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[quick]):
        assert await client.execute_workflow(quick, 4, id=wf_id, timeout=30) == 8
        # By name, decoded into result_type; the same id is the same workflow.
        again = await client.execute_workflow(
            "calls_quick", 100, id=wf_id, result_type=float, timeout=30
        )
        assert again == 8.0 and isinstance(again, float)
        history = await client.get_workflow_history(wf_id)
        assert kinds(history) == [(0, "double", "VALUE")], "started once"
        # Without an id, a new workflow each time; the start options apply.
        assert await client.execute_workflow(quick, 5, execution_timeout=60) == 10


@raftoral.workflow(name="calls_fanout", version=1)
async def fanout(ctx: raftoral.WorkflowContext, n: int) -> int:
    values = [await ctx.call_child("calls_quick", i, result_type=int) for i in range(n)]
    return sum(values)


async def test_workflows_iterates_every_page_and_filters_by_parent(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[quick, fanout]):
        ids = [f"{wf_id}-{i}" for i in range(5)]
        for i, workflow_id in enumerate(ids):
            await client.execute_workflow(quick, i, id=workflow_id, timeout=30)

        listed = client.workflows(workflow_name="calls_quick", page_size=2)
        seen = [info.workflow_id async for info in listed]
        assert seen == sorted(ids), "three pages of at most 2, in id order"

        # A break fetches no more; the next iteration starts afresh.
        async for info in client.workflows(workflow_name="calls_quick", page_size=2):
            assert info.workflow_id == min(ids)
            break
        done = client.workflows(
            status=WorkflowStatus.COMPLETED, workflow_name="calls_quick", page_size=2
        )
        assert len([i async for i in done]) == 5

        parent = f"{wf_id}-parent"
        assert await client.execute_workflow(fanout, 3, id=parent, timeout=30) == 6
        children = [info async for info in client.workflows(parent_id=parent, page_size=2)]
        assert [c.workflow_id for c in children] == [f"{parent}/{i}" for i in range(3)]
        assert {c.parent_id for c in children} == {parent}
        listed_children = await client.list_workflows(parent_id=parent)
        assert [c.workflow_id for c in listed_children] == [c.workflow_id for c in children]
        assert [i async for i in client.workflows(parent_id=ids[0])] == []

        try:
            async for _ in client.workflows(page_size=0):
                pass
        except raftoral.InvalidArgument:
            pass
        else:  # pragma: no cover - a failure
            raise AssertionError("a page size of 0 is refused")
