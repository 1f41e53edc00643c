"""Failed steps and retries in the Python SDK, on LocalNode (the engine
in-process): what crosses as a failure, the retry loop, policy checks and
the workflow's error when a step failure is not caught."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import raftoral
from raftoral import WorkflowStatus


class CardDeclined(raftoral.NonRetryableError):
    pass


attempts_seen: list[int] = []


@raftoral.workflow(name="charge", version=1)
async def charge(ctx: raftoral.WorkflowContext, catch: bool) -> dict[str, Any]:
    def declined() -> int:
        raise CardDeclined("no funds", details={"code": "insufficient_funds"})

    try:
        await ctx.checkpoint("charge", declined)
    except raftoral.StepFailed as e:
        if not catch:
            raise
        refunded = await ctx.checkpoint("refund", lambda: True)
        return {"type": e.type, "details": e.details, "refunded": refunded}
    return {}


@raftoral.workflow(
    name="retried", version=1, retry=raftoral.RetryPolicy(initial_interval=0, maximum_attempts=3)
)
async def retried(ctx: raftoral.WorkflowContext, fail_times: int) -> int:
    def flaky() -> int:
        n = raftoral.step_attempt()
        attempts_seen.append(n)
        if n <= fail_times:
            raise ValueError(f"attempt {n} failed")
        return n

    return await ctx.checkpoint("flaky", flaky)


async def test_a_caught_failure_is_committed_with_its_type_and_details() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[charge]):
            handle = await node.client.start_workflow(charge, True)
            out = await handle.result()
            assert out == {
                "type": "CardDeclined",
                "details": {"code": "insufficient_funds"},
                "refunded": True,
            }
            names = [e.checkpoint_name for e in await handle.history()]
            assert names == ["charge", "refund"]


async def test_attempts_retry_per_the_workflow_policy_then_fail_the_workflow() -> None:
    attempts_seen.clear()
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[retried]):
            ok = await node.client.start_workflow(retried, 2)
            assert await ok.result() == 3
            assert attempts_seen == [1, 2, 3]
            attempts_seen.clear()
            failing = await node.client.start_workflow(retried, 9)
            with pytest.raises(raftoral.WorkflowFailed) as e:
                await failing.result()
            assert attempts_seen == [1, 2, 3], "three attempts, then the step fails"
            # The same text every SDK reports for an uncaught step failure.
            assert e.value.error == (
                f"step 'flaky' (seq 0) of workflow '{failing.workflow_id}' failed "
                "after 3 attempts: ValueError: attempt 3 failed"
            )
            assert e.value.type == "ValueError" and e.value.details is None
            info = await node.client.get_workflow(failing.workflow_id)
            assert info.status is WorkflowStatus.FAILED
            assert info.failure == raftoral.Failure("ValueError", "attempt 3 failed")


async def test_an_uncaught_non_retryable_failure_fails_the_workflow_at_once() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[charge]):
            handle = await node.client.start_workflow(charge, False)
            with pytest.raises(raftoral.WorkflowFailed) as e:
                await handle.result()
            assert "after 1 attempt: CardDeclined: no funds" in e.value.error


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"maximum_attempts": 0}, "maximum_attempts"),
        ({"initial_interval": -1}, "initial_interval"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
        ({"jitter": 2.0}, "jitter"),
        ({"initial_interval": 10, "maximum_interval": 1}, "maximum_interval"),
        ({"attempt_timeout": 0}, "attempt_timeout must be more than 0"),
        ({"attempt_timeout": -1}, "attempt_timeout"),
        ({"attempt_timeout": timedelta(0)}, "attempt_timeout"),
    ],
)
def test_a_bad_policy_is_refused_when_it_is_made(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(raftoral.InvalidArgument) as e:
        raftoral.RetryPolicy(**kwargs)
    assert str(e.value).startswith("retry policy: ") and says in str(e.value)


def test_an_attempt_timeout_is_seconds_or_a_timedelta() -> None:
    assert raftoral.RetryPolicy().attempt_timeout is None, "no limit by default"
    assert raftoral.RetryPolicy(attempt_timeout=1.5).attempt_timeout == 1.5
    policy = raftoral.RetryPolicy(attempt_timeout=timedelta(milliseconds=250))
    assert policy.attempt_timeout == 0.25
    assert policy._native.attempt_timeout == 0.25, "the core has it"


class OrderFailed(raftoral.NonRetryableError):
    pass


@raftoral.workflow(name="order", version=1)
async def order(ctx: raftoral.WorkflowContext, kind: str) -> None:
    """Refunds, then fails with its own error, raised outside any step."""
    refunded = await ctx.checkpoint("refund", lambda: True)
    if kind == "application":
        raise raftoral.ApplicationError(
            "order failed after refund",
            type="OrderFailed",
            details={"refunded": refunded, "items": [1, 2]},
        )
    if kind == "subclass":
        raise OrderFailed("no stock", details="sku-1")
    raise ValueError("plain")


async def test_an_application_error_of_the_workflow_reaches_the_client_structured() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[order]):
            handle = await node.client.start_workflow(order, "application")
            with pytest.raises(raftoral.WorkflowFailed) as raised:
                await handle.result()
            e = raised.value
            failure = raftoral.Failure(
                "OrderFailed", "order failed after refund", {"refunded": True, "items": [1, 2]}
            )
            assert e.failure == failure
            assert (e.type, e.error_message, e.details, e.non_retryable) == (
                "OrderFailed",
                "order failed after refund",
                {"refunded": True, "items": [1, 2]},
                False,
            )
            # The error text is the core's, as the Rust SDK's.
            assert e.error == "OrderFailed: order failed after refund"
            assert e.message.endswith("failed: OrderFailed: order failed after refund")
            info = await node.client.get_workflow(handle.workflow_id)
            assert info.status is WorkflowStatus.FAILED
            assert info.failure == failure
            assert info.error == "OrderFailed: order failed after refund"
            # Its own error is no step of the history.
            assert [e.checkpoint_name for e in await handle.history()] == ["refund"]

            handle = await node.client.start_workflow(order, "subclass")
            with pytest.raises(raftoral.WorkflowFailed) as raised:
                await handle.result()
            subclass = raftoral.Failure("OrderFailed", "no stock", "sku-1", non_retryable=True)
            assert raised.value.failure == subclass
            info = await node.client.get_workflow(handle.workflow_id)
            assert info.failure == raised.value.failure


async def test_another_exception_of_the_workflow_fails_it_with_text_only() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[order]):
            handle = await node.client.start_workflow(order, "plain")
            with pytest.raises(raftoral.WorkflowFailed) as raised:
                await handle.result()
            e = raised.value
            assert (e.error, e.type, e.failure, e.details) == ("ValueError: plain", "", None, None)
            info = await node.client.get_workflow(handle.workflow_id)
            assert (info.error, info.failure) == ("ValueError: plain", None)


def test_an_application_error_names_its_type() -> None:
    e = raftoral.ApplicationError("x", type="Custom", details=[1])
    assert (e.type, e.details, e.non_retryable) == ("Custom", [1], False)
    assert CardDeclined("y").type == "CardDeclined" and CardDeclined("y").non_retryable
    assert raftoral.RetryPolicy.none().maximum_attempts == 1
