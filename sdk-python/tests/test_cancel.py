"""Cancel requests with a cleanup window, against a real `raftoral serve`:
the cancellation reaches the code at the step or sleep it awaits (a running
step's task is stopped), compensation steps run, and the workflow ends as
its code ends (CANCELLED when it raises the cancellation again); a window of
0 cancels at once, and a cleanup that outlasts its window is cut off."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

import raftoral
from harness import Node, eventually
from raftoral import WorkflowStatus

WAIT = 30.0
"""Longest a test waits for an event (it fails then)."""

seen: defaultdict[str, list[Any]] = defaultdict(list)
"""Per workflow id, what its code did, in order."""

gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
"""Per workflow id, what a ``gated`` refund waits for (the worker runs in
the test's event loop)."""


async def hang(workflow_id: str, what: str) -> bool:
    """A step's work that never ends by itself; notes when its task is
    stopped."""
    seen[workflow_id].append(f"{what} started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen[workflow_id].append(f"{what} stopped")
        raise
    return True


@raftoral.workflow(name="order", version=1)
async def order(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> str:
    """Reserves, then charges (a step that hangs) or holds (a one-hour
    sleep), which only a cancellation ends; on it, refunds (with ``gated``,
    once the test opens its gate), then (per ``then``) raises the
    cancellation again, returns, or fails; with ``stubborn``, a last
    cleanup step hangs first."""
    wid = ctx.workflow_id
    try:
        await ctx.checkpoint("reserve", lambda: True)
        try:
            if inp["at"] == "sleep":
                await ctx.sleep(3600, name="hold")
            else:
                await ctx.checkpoint("charge", lambda: hang(wid, "charge"))
            return "charged"
        except raftoral.Cancelled as e:
            seen[wid].append(("caught", e.reason))

            async def refund() -> bool:
                seen[wid].append(("refund", ctx.is_cancelled))
                if inp.get("gated"):
                    await gates[wid].wait()
                return True

            await ctx.checkpoint("refund", refund)
            if inp.get("stubborn"):
                await ctx.checkpoint("stuck", lambda: hang(wid, "stuck"))
            then = inp.get("then", "raise")
            if then == "return":
                return "compensated"
            if then == "fail":
                raise raftoral.ApplicationError("refunded, then failed", type="Refunded") from e
            raise
    finally:
        seen[wid].append("ended")


def window_start(info: raftoral.WorkflowInfo, window_ms: int) -> bool:
    """True when ``info``'s cleanup deadline is ``window_ms`` after a
    moment between the workflow's start and its last update (the cancel's
    commit, in log time)."""
    start = info.cancel_deadline_ms - window_ms
    return info.created_at_ms <= start <= info.updated_at_ms


def kinds(history: list[raftoral.HistoryEntry]) -> list[tuple[int, str, str]]:
    return [(e.seq, e.checkpoint_name, e.kind) for e in history]


async def charging(client: raftoral.Client, wf_id: str, **inp: Any) -> raftoral.WorkflowHandle[str]:
    """Starts ``order`` and waits until its charge step hangs."""
    handle = await client.start_workflow(order, {"at": "step", **inp}, id=wf_id)
    await eventually(lambda: "charge started" in seen[wf_id], "the charge to start")
    return handle


async def test_a_cancel_stops_the_hanging_step_and_the_saga_refunds(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await charging(client, wf_id, gated=True)
        requested = await handle.cancel("customer asked")
        # The workflow runs on (its refund waits for the gate), with the
        # sidecar's default window: 30 s from the cancel's commit.
        assert requested.status is WorkflowStatus.RUNNING
        assert requested.cancel_reason == "customer asked"
        assert window_start(requested, 30_000)
        await eventually(lambda: ("refund", True) in seen[wf_id], "the refund to start")
        assert (await handle.get()).status is WorkflowStatus.RUNNING
        gates[wf_id].set()
        with pytest.raises(raftoral.Cancelled) as raised:
            await handle.result(timeout=WAIT)
        assert raised.value.reason == "customer asked"
        info = await handle.get()
        history = await handle.history()
    assert info.status is WorkflowStatus.CANCELLED and info.error == "customer asked"
    assert seen[wf_id] == [
        "charge started",
        "charge stopped",
        ("caught", "customer asked"),
        ("refund", True),
        "ended",
    ]
    assert kinds(history) == [
        (0, "reserve", "VALUE"),
        (1, "charge", "STEP_FAILED"),
        (2, "refund", "VALUE"),
    ]


async def test_a_cancel_during_a_sleep_ends_it_and_the_saga_refunds(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await client.start_workflow(order, {"at": "sleep", "gated": True}, id=wf_id)

        async def sleeping() -> bool:
            return bool((await handle.get()).pending_timers)

        await eventually(sleeping, "the sleep to start")
        requested = await handle.cancel("no more waiting", cleanup=timedelta(minutes=5))
        assert requested.status is WorkflowStatus.RUNNING
        assert requested.cancel_reason == "no more waiting"
        assert window_start(requested, 300_000)
        await eventually(lambda: ("refund", True) in seen[wf_id], "the refund to start")
        gates[wf_id].set()
        with pytest.raises(raftoral.Cancelled) as raised:
            await handle.result(timeout=WAIT)
        assert raised.value.reason == "no more waiting"
        info = await handle.get()
        history = await handle.history()
    assert info.status is WorkflowStatus.CANCELLED and info.pending_timers == ()
    assert seen[wf_id] == [("caught", "no more waiting"), ("refund", True), "ended"]
    assert kinds(history) == [
        (0, "reserve", "VALUE"),
        (1, "hold", "TIMER_STARTED"),
        (1, "hold", "TIMER_CANCELLED"),
        (2, "refund", "VALUE"),
    ]


async def test_a_cancel_without_cleanup_cancels_at_once_and_nothing_more_runs(
    sidecar: Node, wf_id: str
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await charging(client, wf_id)
        info = await handle.cancel("stop now", cleanup=0)
        assert info.status is WorkflowStatus.CANCELLED and info.error == "stop now"
        assert (info.cancel_reason, info.cancel_deadline_ms) == ("", 0)
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=WAIT)
        await eventually(lambda: "ended" in seen[wf_id], "the function to end")
        history = await handle.history()
    # The step was stopped and the function got Cancelled, but its refund
    # raised Cancelled too: no cleanup ran.
    assert seen[wf_id] == ["charge started", "charge stopped", ("caught", "stop now"), "ended"]
    assert kinds(history) == [(0, "reserve", "VALUE")]


async def test_a_cleanup_that_outlasts_its_window_is_cut_off(sidecar: Node, wf_id: str) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await charging(client, wf_id, stubborn=True)
        requested = await handle.cancel("too slow", cleanup=0.5)
        assert window_start(requested, 500)
        with pytest.raises(raftoral.Cancelled) as raised:
            await handle.result(timeout=WAIT)
        assert "cleanup window ran out" in raised.value.reason
        assert raised.value.reason.startswith("too slow")
        info = await handle.get()
        # The stuck cleanup step is stopped, and the function ends.
        await eventually(lambda: "ended" in seen[wf_id], "the function to end")
    assert info.status is WorkflowStatus.CANCELLED
    assert "cleanup window ran out" in info.error
    assert seen[wf_id][:3] == ["charge started", "charge stopped", ("caught", "too slow")]
    if "stuck started" in seen[wf_id]:
        assert seen[wf_id][-3:] == ["stuck started", "stuck stopped", "ended"]
    assert seen[wf_id].count(("refund", True)) <= 1


@pytest.mark.parametrize(
    ("then", "status"),
    [("return", WorkflowStatus.COMPLETED), ("fail", WorkflowStatus.FAILED)],
    ids=["returns-a-value", "raises-another-error"],
)
async def test_a_function_that_does_not_raise_the_cancellation_ends_as_it_ends(
    sidecar: Node, wf_id: str, then: str, status: WorkflowStatus
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await charging(client, wf_id, then=then)
        await handle.cancel("customer asked")
        info = await handle.wait(timeout=WAIT)
    assert info.status is status
    if then == "return":
        assert client.codec.decode(info.result) == "compensated"
    else:
        assert info.failure is not None and info.failure.type == "Refunded"


@pytest.mark.parametrize("cleanup", [-1, -0.001, timedelta(seconds=-5), float("nan"), "soon"])
async def test_a_bad_cleanup_window_is_refused_and_cancels_nothing(
    sidecar: Node, wf_id: str, cleanup: Any
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[order]):
        handle = await charging(client, wf_id)
        with pytest.raises(raftoral.InvalidArgument) as raised:
            await handle.cancel("refused", cleanup=cleanup)
        assert "cleanup window" in raised.value.message, raised.value.message
        assert "nothing was cancelled" in raised.value.message
        info = await handle.get()
        assert info.status is WorkflowStatus.RUNNING and info.cancel_reason == ""
        assert seen[wf_id] == ["charge started"]
        with pytest.raises(raftoral.InvalidArgument, match="366 days"):
            await client.cancel_workflow(wf_id, "too long", cleanup=timedelta(days=367))
        await handle.cancel("done", cleanup=0)
        with pytest.raises(raftoral.Cancelled):
            await handle.result(timeout=WAIT)
