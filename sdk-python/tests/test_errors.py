"""Failed steps and retries in the Python SDK, on LocalNode (the engine
in-process): what crosses as a failure, the retry loop, policy checks and
the workflow's error when a step failure is not caught."""

from __future__ import annotations

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
    ],
)
def test_a_bad_policy_is_refused_when_it_is_made(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(raftoral.InvalidArgument) as e:
        raftoral.RetryPolicy(**kwargs)
    assert str(e.value).startswith("retry policy: ") and says in str(e.value)


def test_an_application_error_names_its_type() -> None:
    e = raftoral.ApplicationError("x", type="Custom", details=[1])
    assert (e.type, e.details, e.non_retryable) == ("Custom", [1], False)
    assert CardDeclined("y").type == "CardDeclined" and CardDeclined("y").non_retryable
    assert raftoral.RetryPolicy.none().maximum_attempts == 1
