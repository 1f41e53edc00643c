"""The Python SDK's conformance worker: the same contract as the Rust one
(conformance/src/bin/worker_rust.rs), so the shared scenarios check Python.

Environment: ``RAFTORAL_SIDECAR_URL`` (sidecar), ``CONFORMANCE_EFFECTS`` (file
that records each side effect as a line), ``CONFORMANCE_HANG=1`` (the
``steps`` workflow hangs at ``hang_at`` instead of finishing that step),
``CONFORMANCE_STEP_PREFIX`` (checkpoint names of ``steps``, default
``step``), ``CONFORMANCE_WORKFLOWS`` (comma list of what to register;
``saga``, ``flaky``, ``fanout``, ``helpers``, ``sleeper``, ``racer``,
``scheduled``, ``compensate``, ``waiter``, ``awakener``,
``event_racer``, ``parent`` and ``caller`` only when named),
``CONFORMANCE_BAD_POLICY`` (a retry policy the SDK refuses, made before
anything is registered).
Prints ``worker ready`` once registered; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import raftoral


def effect(workflow_id: str, what: str, step: int) -> None:
    """Appends ``ID WHAT STEP MS`` (MS: ms since the epoch, comparable with
    the sidecar's commit times) with one O_APPEND write: lines never
    interleave."""
    path = os.environ.get("CONFORMANCE_EFFECTS")
    if path:
        ms = time.time_ns() // 1_000_000
        with open(path, "a") as f:
            f.write(f"{workflow_id} {what} {step} {ms}\n")


@dataclass
class StepsInput:
    n: int
    fail_at: Optional[int] = None
    hang_at: Optional[int] = None
    step_delay_ms: int = 0


async def hanging_step(ctx: raftoral.WorkflowContext, name: str, step: int) -> bool:
    """The last step of several types: appends ``ID start STEP``, hangs
    forever under ``CONFORMANCE_HANG=1`` (the app "dies" there), yields
    true."""

    async def compute() -> bool:
        effect(ctx.workflow_id, "start", step)
        if os.environ.get("CONFORMANCE_HANG") == "1":
            await asyncio.Event().wait()  # the app "dies" here
        return True

    return await ctx.checkpoint(name, compute)


@raftoral.workflow(name="ping_pong", version=1)
async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")


@raftoral.workflow(name="steps", version=1)
async def steps(ctx: raftoral.WorkflowContext, inp: StepsInput) -> int:
    hang = os.environ.get("CONFORMANCE_HANG") == "1"
    # Another prefix makes this code differ from the one that wrote the
    # history: replay must report non-determinism.
    prefix = os.environ.get("CONFORMANCE_STEP_PREFIX", "step")
    total = 0
    for i in range(inp.n):

        async def compute(i: int = i) -> int:
            effect(ctx.workflow_id, "start", i)
            if hang and inp.hang_at == i:
                await asyncio.Event().wait()  # the app "dies" here
            if inp.step_delay_ms > 0:
                await asyncio.sleep(inp.step_delay_ms / 1000)
            effect(ctx.workflow_id, "done", i)
            return i * 2

        try:
            total += await ctx.checkpoint(f"{prefix}-{i}", compute)
        except raftoral.Cancelled:
            effect(ctx.workflow_id, "cancelled", i)
            raise
        if inp.fail_at == i:
            raise raftoral.RaftoralError(f"failed on purpose at step {i}")
    return total


@raftoral.workflow(name="saga", version=1)
async def saga(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, Any]:
    """A charge that fails for good, caught; a refund; then a last step, or
    with ``{"fail": true}`` the workflow's own structured error."""

    def charge() -> bool:
        effect(ctx.workflow_id, "start", 0)
        raise raftoral.NonRetryableError(
            "card declined",
            type="CardDeclined",
            details={"code": "insufficient_funds", "amount": 42},
        )

    try:
        await ctx.checkpoint("charge", charge)
        raise raftoral.RaftoralError("the charge cannot succeed")
    except raftoral.StepFailed as e:
        caught = e

    def refund() -> bool:
        effect(ctx.workflow_id, "done", 1)
        return True

    refunded = await ctx.checkpoint("refund", refund)
    if inp.get("fail"):
        # Raised outside any step: the workflow fails with it, structured.
        raise raftoral.ApplicationError(
            "order failed after refund", type="OrderFailed", details={"refunded": refunded}
        )

    await hanging_step(ctx, "finish", 2)
    return {
        "caught": {
            "type": caught.type,
            "message": caught.error_message,
            "details": caught.details,
            "attempts": caught.attempts,
        },
        "refunded": refunded,
    }


@raftoral.workflow(name="helpers", version=1)
async def helpers(ctx: raftoral.WorkflowContext, _inp: dict[str, Any]) -> dict[str, Any]:
    """The deterministic helpers' draws and recorded time, kept in a step and
    returned again after a later step (which hangs under
    ``CONFORMANCE_HANG=1``), so a replay shows whether they changed."""
    random = ctx.random()
    uuid = str(ctx.uuid())
    now = round((await ctx.now()).timestamp() * 1000)
    drawn = {"random": random, "uuid": uuid, "now": now}

    def record() -> dict[str, Any]:
        effect(ctx.workflow_id, "start", 0)
        return drawn

    recorded = await ctx.checkpoint("record", record)
    after = ctx.random()

    await hanging_step(ctx, "gate", 1)
    return {"recorded": recorded, "replayed": drawn, "after": after}


@raftoral.workflow(name="sleeper", version=1)
async def sleeper(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, int]:
    """A step, a durable sleep ``nap-i`` of each ``sleeps[i]`` milliseconds,
    a step (which hangs under ``CONFORMANCE_HANG=1``). A duration the SDK
    refuses (negative, beyond 366 days) fails the workflow with its error."""
    sleeps: list[int] = inp["sleeps"]

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    for i, ms in enumerate(sleeps):
        await ctx.sleep(ms / 1000, name=f"nap-{i}")

    await hanging_step(ctx, "after", 1)
    return {"slept": len(sleeps)}


@dataclass
class RacerInput:
    timer_ms: int
    step_ms: int


@raftoral.workflow(name="racer", version=1)
async def racer(ctx: raftoral.WorkflowContext, inp: RacerInput) -> dict[str, Any]:
    """A durable sleep ``deadline`` (position 0) raced against step
    ``work`` (position 1), then a step (which hangs under
    ``CONFORMANCE_HANG=1``)."""
    deadline = ctx.sleep(inp.timer_ms / 1000, name="deadline")

    async def work() -> str:
        effect(ctx.workflow_id, "start", 0)
        # The step's own work, S ms (WORKERS.md): a delay the race is
        # about, inside the step, not a wait for a condition.
        await asyncio.sleep(inp.step_ms / 1000)
        effect(ctx.workflow_id, "done", 0)
        return "worked"

    index, value = await ctx.first(deadline, ctx.checkpoint("work", work))
    out: dict[str, Any] = {"winner": "timer"} if index == 0 else {"winner": "step", "value": value}

    await hanging_step(ctx, "after", 1)
    return out


@raftoral.workflow(name="scheduled", version=1)
async def scheduled(ctx: raftoral.WorkflowContext, inp: Any) -> dict[str, Any]:
    """One step recording when it ran (started with a start delay)."""

    def ran() -> int:
        effect(ctx.workflow_id, "start", 0)
        return time.time_ns() // 1_000_000

    return {"input": inp, "ran_at": await ctx.checkpoint("ran", ran)}


@raftoral.workflow(name="compensate", version=1)
async def compensate(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> bool:
    """A charge (a step that hangs, or a one-hour sleep) that only a
    cancellation ends; the cancellation is caught, the refund runs, then the
    cancellation is raised again (the workflow ends CANCELLED), or, with
    ``stubborn``, a cleanup step that never ends (the window cuts it off)."""
    wid = ctx.workflow_id

    def reserve() -> bool:
        effect(wid, "done", 0)
        return True

    async def forever(step: int) -> bool:
        effect(wid, "start", step)
        await asyncio.get_running_loop().create_future()  # never resolves
        return True

    await ctx.checkpoint("reserve", reserve)
    try:
        if inp.get("at") == "sleep":
            await ctx.sleep(3600, name="hold")
        else:
            await ctx.checkpoint("charge", lambda: forever(1))
    except raftoral.Cancelled:
        await hanging_step(ctx, "refund", 2)
        if inp.get("stubborn"):
            await ctx.checkpoint("stuck", lambda: forever(3))
        raise
    raise raftoral.RaftoralError("only a cancellation ends the charge")


@raftoral.workflow(name="waiter", version=1)
async def waiter(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, Any]:
    """A step, ``waits`` durable waits one after another for the event
    ``name`` (each with a timeout of ``timeout_ms`` when given), a step
    (which hangs under ``CONFORMANCE_HANG=1``). Returns the payloads, None
    for a wait whose timeout passed first. With ``status``, it also sets
    the status ``stage`` ("waiting" before the first wait, "done" after the
    last) and ``received`` (the number of waits done, after each). With
    ``stream`` (never with ``timeout_ms`` or ``status``), the waits are the
    first ``waits`` items of ``ctx.events(name)``: the same history."""
    name: str = inp["name"]
    timeout_ms: Optional[int] = inp.get("timeout_ms")
    timeout = None if timeout_ms is None else timeout_ms / 1000
    status = bool(inp.get("status"))
    stream = bool(inp.get("stream"))
    if stream and (timeout_ms is not None or status):
        raise raftoral.RaftoralError("waiter: 'stream' is never combined with a timeout or status")

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    if status:
        await ctx.set_status("stage", "waiting")
    events: list[Any] = []
    if stream and inp["waits"] > 0:
        async for item in ctx.events(name):
            events.append(item)
            if len(events) == inp["waits"]:
                break
    for i in range(0 if stream else inp["waits"]):
        events.append(await ctx.wait_event(name, timeout))
        if status:
            await ctx.set_status("received", i + 1)
    if status:
        await ctx.set_status("stage", "done")

    await hanging_step(ctx, "after", 1)
    return {"events": events}


@raftoral.workflow(name="awakener", version=1)
async def awakener(ctx: raftoral.WorkflowContext, _inp: Any) -> dict[str, Any]:
    """A step, then an awakeable whose id it publishes as the status
    ``awakeable``; returns the value it was resolved with, or the type and
    message it was rejected with (the step failure it raises, caught)."""

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    awakeable = ctx.awakeable()
    await ctx.set_status("awakeable", awakeable.id)
    try:
        value = await awakeable
    except raftoral.StepFailed as e:
        return {"rejected": {"type": e.type, "message": e.error_message}}
    return {"value": value}


@raftoral.workflow(name="event_racer", version=1)
async def event_racer(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, Any]:
    """A step, then a wait for the event ``name`` (no timeout) raced with
    the durable sleep ``race`` of ``timer_ms`` ms; when the sleep wins, one
    more wait for ``name``. With ``awakeable``: an awakeable whose id it
    publishes as the status ``awakeable``, raced with the sleep."""
    name: str = inp["name"]
    timer_s = inp["timer_ms"] / 1000

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    if inp.get("awakeable"):
        awakeable = ctx.awakeable()
        await ctx.set_status("awakeable", awakeable.id)
        won: tuple[int, Any] = await ctx.first(awakeable, ctx.sleep(timer_s, name="race"))
        return {"winner": "event", "value": won[1]} if won[0] == 0 else {"winner": "timer"}
    raced: tuple[int, Any] = await ctx.first(ctx.wait_event(name), ctx.sleep(timer_s, name="race"))
    if raced[0] == 0:
        return {"winner": "event", "value": raced[1]}
    return {"winner": "timer", "then": await ctx.wait_event(name)}


@raftoral.workflow(name="parent", version=1)
async def parent(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, Any]:
    """A step, then ``n`` children of type ``child`` with input ``input``
    started one after another (default ids, policy ``policy``); with
    ``self``, one child named as this workflow (the SDK refuses it). With
    ``leave``, returns their ids at once; else their results in start
    order, or the first child failure in start order."""

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    policy: str = inp.get("policy") or "cancel"
    if inp.get("self"):
        own = ctx.workflow_id
        await ctx.start_child(inp["child"], inp.get("input"), id=own, parent_close=policy)
        raise raftoral.RaftoralError("a workflow cannot be its own child")
    handles = [
        await ctx.start_child(inp["child"], inp.get("input"), parent_close=policy)
        for _ in range(inp["n"])
    ]
    if inp.get("leave"):
        return {"children": [h.id for h in handles]}
    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    for outcome in outcomes:
        # The run's own end (a cancellation, a shutdown) is no child's failure.
        if isinstance(outcome, BaseException) and not isinstance(outcome, raftoral.StepFailed):
            raise outcome
    for outcome in outcomes:
        if isinstance(outcome, raftoral.StepFailed):
            return {"failed": {"type": outcome.type, "message": outcome.error_message}}
    return {"results": list(outcomes)}


@raftoral.workflow(name="caller", version=1)
async def caller(ctx: raftoral.WorkflowContext, inp: dict[str, Any]) -> dict[str, Any]:
    """A step, then the event ``name`` with ``payload`` sent to the workflow
    ``target``; with ``result_of``, then that workflow's result. Returns the
    duplicate flag (and the result), or the type of the send's failure (the
    SDK's step failure, caught)."""

    def before() -> bool:
        effect(ctx.workflow_id, "start", 0)
        return True

    await ctx.checkpoint("before", before)
    try:
        sent = await ctx.signal_workflow(inp["target"], inp["name"], inp.get("payload"))
    except raftoral.StepFailed as e:
        return {"failed": {"type": e.type}}
    result_of: Optional[str] = inp.get("result_of")
    if result_of is None:
        return {"sent": sent}
    return {"sent": sent, "result": await ctx.workflow_result(result_of)}


@dataclass
class FlakyInput:
    fail_times: int
    max_attempts: int
    initial_ms: int
    coefficient: float
    non_retryable: bool = False
    catch: bool = False
    timeout_ms: Optional[int] = None
    hang_times: int = 0


@raftoral.workflow(name="flaky", version=1)
async def flaky(ctx: raftoral.WorkflowContext, inp: FlakyInput) -> dict[str, Any]:
    policy = raftoral.RetryPolicy(
        initial_interval=inp.initial_ms / 1000,
        backoff_coefficient=inp.coefficient,
        maximum_interval=max(60.0, inp.initial_ms / 1000),
        maximum_attempts=inp.max_attempts,
        jitter=0.0,
        attempt_timeout=None if inp.timeout_ms is None else inp.timeout_ms / 1000,
    )

    async def attempt() -> int:
        n = raftoral.step_attempt()
        effect(ctx.workflow_id, "attempt", n)
        if n <= inp.hang_times:
            await asyncio.Event().wait()  # until the attempt timeout cancels it
        if n <= inp.fail_times:
            raise raftoral.ApplicationError(
                f"attempt {n} failed", type="Flaky", non_retryable=inp.non_retryable
            )
        return n

    try:
        attempts = await ctx.checkpoint("flaky", attempt, retry=policy)
    except raftoral.StepFailed as e:
        if not inp.catch:
            raise
        return {"caught": {"type": e.type, "message": e.error_message, "attempts": e.attempts}}
    return {"attempts": attempts}


@dataclass
class FanoutInput:
    n: int
    delays_ms: list[int] = field(default_factory=list)
    chain: bool = False


@raftoral.workflow(name="fanout", version=1)
async def fanout(ctx: raftoral.WorkflowContext, inp: FanoutInput) -> dict[str, int]:
    async def branch(i: int) -> int:
        delay = inp.delays_ms[i] if i < len(inp.delays_ms) else 0

        async def first() -> int:
            await asyncio.sleep(delay / 1000)
            effect(ctx.workflow_id, "done", i)
            return i * i

        value = await ctx.checkpoint(f"branch-{i}", first)
        if not inp.chain:
            return value

        def second() -> int:
            effect(ctx.workflow_id, "done", 1000 + i)
            return value + 1

        return await ctx.checkpoint(f"branch-{i}-b", second)

    values = await asyncio.gather(*(branch(i) for i in range(inp.n)))
    hang = os.environ.get("CONFORMANCE_HANG") == "1"

    async def total() -> int:
        effect(ctx.workflow_id, "start", inp.n)
        if hang:
            await asyncio.Event().wait()  # the app "dies" here
        return sum(values)

    return {"sum": await ctx.checkpoint("sum", total)}


async def main() -> None:
    # A bad retry policy stops the worker before it registers anything: the
    # SDK refuses it where it is defined.
    bad = os.environ.get("CONFORMANCE_BAD_POLICY")
    if bad == "negative_interval":
        raftoral.RetryPolicy(initial_interval=-1)
    elif bad == "zero_attempts":
        raftoral.RetryPolicy(maximum_attempts=0)
    client = await raftoral.Client.connect(os.environ["RAFTORAL_SIDECAR_URL"])
    only = os.environ.get("CONFORMANCE_WORKFLOWS", "ping_pong,steps").split(",")
    known: dict[str, raftoral.Workflow[Any, Any]] = {
        "ping_pong": ping_pong,
        "steps": steps,
        "saga": saga,
        "flaky": flaky,
        "fanout": fanout,
        "helpers": helpers,
        "sleeper": sleeper,
        "racer": racer,
        "scheduled": scheduled,
        "compensate": compensate,
        "waiter": waiter,
        "awakener": awakener,
        "event_racer": event_racer,
        "parent": parent,
        "caller": caller,
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with raftoral.Worker(client, workflows=[known[n] for n in only if n]):
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
