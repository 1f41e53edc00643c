"""The SDK against one real `raftoral serve` process."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, cast

import pytest

import raftoral
from apps.workflows import StepsInput, fails, ping_pong, steps
from harness import Effects, Node, WorkerProcess, eventually, single_node
from raftoral import WorkflowStatus


async def test_ping_pong_through_a_worker_process(
    sidecar: Node, effects: Effects, wf_id: str
) -> None:
    worker = await WorkerProcess.start(sidecar.url, effects.path, "a")
    try:
        client = await raftoral.Client.connect(sidecar.url)
        handle = await client.start_workflow(ping_pong, "ping", id=wf_id)
        assert await handle.result(timeout=30) == "pong"
        info = await handle.get()
        assert info.status is WorkflowStatus.COMPLETED
        assert info.checkpoint_count == 1
        assert client.codec.decode(info.result) == "pong"
        [entry] = await handle.history()
        assert (entry.seq, entry.checkpoint_name, entry.value) == (0, "result", b'"pong"')
        listed = await client.list_workflows(workflow_name="ping_pong")
        assert [w.workflow_id for w in listed] == [wf_id]
        # Idempotent start: the same id is the same workflow.
        again = await client.start_workflow(ping_pong, "pong", id=wf_id)
        assert again.already_started
        assert await again.result() == "pong"
    finally:
        await worker.kill()


async def test_app_killed_mid_workflow_replays_committed_steps(
    sidecar: Node, effects: Effects, wf_id: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = await WorkerProcess.start(sidecar.url, effects.path, "first")
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(
        steps, StepsInput(n=5, gate_at=3, gate=str(gate)), id=wf_id
    )
    # Step 3 runs only once steps 0..2 are committed.
    await eventually(lambda: effects.count(wf_id, "compute", 3) == 1, "step 3 to start")
    await first.kill()
    gate.touch()
    second = await WorkerProcess.start(sidecar.url, effects.path, "second")
    try:
        assert await handle.result(timeout=30) == sum(2 * i for i in range(5))
        for step in (0, 1, 2):
            assert effects.count(wf_id, "compute", step) == 1, f"step {step} recomputed"
        # Step 3 had not committed: the restarted app computes it again.
        assert effects.count(wf_id, "compute", 3) == 2
        assert effects.count(wf_id, "compute", 4) == 1
        assert len(await handle.history()) == 5
    finally:
        await second.kill()


async def test_cancellation_reaches_the_workflow_as_cancelled(
    sidecar: Node, effects: Effects, wf_id: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker = await WorkerProcess.start(sidecar.url, effects.path, "a")
    try:
        client = await raftoral.Client.connect(sidecar.url)
        handle = await client.start_workflow(
            steps,
            StepsInput(n=3, gate_at=1, gate=str(gate)),
            id=wf_id,
        )
        await eventually(lambda: effects.count(wf_id, "compute", 1) == 1, "step 1 to start")
        # A cancel request (the sidecar's window): the step's attempt is
        # stopped (it would wait for the gate forever), the checkpoint
        # raises Cancelled, and the function lets it end the run.
        await handle.cancel("changed my mind")
        with pytest.raises(raftoral.Cancelled) as raised:
            await handle.result(timeout=30)
        assert raised.value.reason == "changed my mind"
        done = await handle.get()
        assert done.status is WorkflowStatus.CANCELLED and done.error == "changed my mind"
        assert (done.cancel_reason, done.cancel_deadline_ms) == ("", 0)
        assert isinstance(raised.value, raftoral.RaftoralError)
        await eventually(
            lambda: effects.find(wf_id, "cancelled") != [], "the function to see Cancelled"
        )
        assert effects.find(wf_id, "cancelled")[0][2] == "changed_my_mind"
        assert effects.count(wf_id, "compute", 2) == 0
    finally:
        await worker.kill()


async def test_failing_workflow_reports_its_error(
    sidecar: Node, effects: Effects, wf_id: str
) -> None:
    worker = await WorkerProcess.start(sidecar.url, effects.path, "a")
    try:
        client = await raftoral.Client.connect(sidecar.url)
        handle = await client.start_workflow(fails, "boom: no stock", id=wf_id)
        with pytest.raises(raftoral.WorkflowFailed) as raised:
            await handle.result(timeout=30)
        assert raised.value.workflow_id == wf_id
        assert raised.value.error == "ValueError: boom: no stock"
        info = await client.get_workflow(wf_id)
        assert info.status is WorkflowStatus.FAILED
        assert info.error == "ValueError: boom: no stock"
    finally:
        await worker.kill()


async def test_changed_step_name_on_replay_is_non_determinism(
    sidecar: Node, effects: Effects, wf_id: str, tmp_path: Path
) -> None:
    first = await WorkerProcess.start(sidecar.url, effects.path, "first")
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(
        steps, StepsInput(n=3, gate_at=1, gate=str(tmp_path / "never")), id=wf_id
    )
    await eventually(lambda: effects.count(wf_id, "compute", 1) == 1, "step 1 to start")
    await first.kill()
    second = await WorkerProcess.start(
        sidecar.url, effects.path, "second", env={"RENAME_STEPS": "1"}
    )
    try:
        with pytest.raises(raftoral.WorkflowFailed) as raised:
            await handle.result(timeout=30)
        message = raised.value.error
        assert "non-determinism" in message
        assert wf_id in message and "'step-0'" in message and "'renamed-0'" in message
        [[_, _, details, worker]] = effects.find(wf_id, "nondeterminism")
        assert (details, worker) == ("0:step-0:renamed-0", "second")
        assert effects.count(wf_id, "compute", 0) == 1
    finally:
        await second.kill()


@pytest.mark.parametrize(
    "value",
    [object, lambda: float("nan")],
    ids=["an object", "NaN (the codec's encoder refuses it, as strict JSON does)"],
)
async def test_unencodable_value_names_the_checkpoint_and_commits_nothing(
    sidecar: Node, wf_id: str, value: Callable[[], object]
) -> None:
    @raftoral.workflow(name="unencodable", version=1)
    async def unencodable(ctx: raftoral.WorkflowContext, _: None) -> object:
        return await ctx.checkpoint("make-socket", value)

    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[unencodable]):
        handle = await client.start_workflow(unencodable, None, id=wf_id)
        with pytest.raises(raftoral.WorkflowFailed) as raised:
            await handle.result(timeout=30)
    assert "checkpoint 'make-socket'" in raised.value.error
    assert "cannot encode" in raised.value.error
    assert await handle.history() == []
    assert (await handle.get()).checkpoint_count == 0


async def test_unencodable_start_input_is_refused_before_sending(sidecar: Node) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    with pytest.raises(raftoral.InvalidArgument, match="input of workflow 'ping_pong'"):
        await client.start_workflow(ping_pong, cast(Any, object()))
    assert await client.list_workflows() == []


async def test_unknown_workflow_id_is_not_found(sidecar: Node) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    with pytest.raises(raftoral.NotFound):
        await client.get_workflow("no-such-workflow")
    with pytest.raises(raftoral.NotFound):
        await client.get_handle("no-such-workflow").result(timeout=5)


async def test_wait_with_timeout_raises_timeout_while_running(
    sidecar: Node, wf_id: str, tmp_path: Path
) -> None:
    client = await raftoral.Client.connect(sidecar.url)
    handle = await client.start_workflow(
        steps, StepsInput(n=2, gate_at=0, gate=str(tmp_path / "never")), id=wf_id
    )
    with pytest.raises(raftoral.Timeout):
        await handle.wait(timeout=0.2)
    with pytest.raises(raftoral.Timeout):
        await handle.result(timeout=0.2)
    info = await handle.get()
    # Nobody registered `steps` on this sidecar: the workflow is pending.
    assert info.status is WorkflowStatus.PENDING and info.pending_reason


async def test_blocking_the_event_loop_ten_seconds_keeps_the_stream(
    tmp_path: Path, effects: Effects, wf_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU-bound step holds the asyncio loop for 11 s, longer than the
    core's 10 s dead-stream limit, while a second node's worker stands by and
    the app timeout is 2 s. The stream and its heartbeats run on Rust threads,
    so the app keeps its one stream (node 1 logs a single app connection): no
    reconnect, no failover, the step runs once."""
    from harness import Cluster

    cluster = Cluster(tmp_path / "cluster", 2, ["--app-timeout-ms", "2000"]).start()
    monkeypatch.setenv("EFFECTS", str(effects.path))
    gate = tmp_path / "gate"
    standby = None
    try:
        client = await raftoral.Client.connect(cluster.nodes[1].url)
        async with raftoral.Worker(client, workflows=[steps]):
            # Started while only node 1's app runs `steps`: node 1 owns it.
            handle = await client.start_workflow(
                steps,
                StepsInput(n=3, gate_at=0, gate=str(gate), busy_at=1, busy_seconds=11.0),
                id=wf_id,
            )
            await eventually(lambda: effects.count(wf_id, "compute", 0) == 1, "step 0")
            assert (await handle.get()).owner_node_id == 1
            # Node 2's worker joins as a replica, ready to take over.
            standby = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "standby")
            gate.touch()
            assert await handle.result(timeout=60) == 6
        info = await client.get_workflow(wf_id)
        assert info.owner_node_id == 1
        assert effects.count(wf_id, "compute", 1) == 1
        assert all(parts[3] == "inproc" for parts in effects.find(wf_id, "compute"))
        assert cluster.nodes[1].log().count("app connected") == 1
    finally:
        if standby is not None:
            await standby.kill()
        cluster.stop()


async def test_thousand_concurrent_workflows_complete(sidecar: Node) -> None:
    import asyncio

    client = await raftoral.Client.connect(sidecar.url)
    async with raftoral.Worker(client, workflows=[ping_pong]):
        handles = await asyncio.gather(
            *(client.start_workflow(ping_pong, "ping" if i % 2 else "pong") for i in range(1000))
        )
        results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
    assert results.count("pong") == 500 and results.count("ping") == 500
    assert len({h.workflow_id for h in handles}) == 1000
    completed = await client.list_workflows(status=WorkflowStatus.COMPLETED, page_size=1000)
    assert len(completed) == 1000


async def test_a_sidecar_with_an_app_token_refuses_calls_without_it(tmp_path: Path) -> None:
    node = single_node(tmp_path / "guarded", ["--app-token", "py-s3cret"])
    try:
        anonymous = await raftoral.Client.connect(node.url)
        with pytest.raises(raftoral.Unauthenticated):
            await anonymous.start_workflow(ping_pong, "ping", id="refused")
        client = await raftoral.Client.connect(node.url, token="py-s3cret")
        assert await client.list_workflows() == [], "the refused call started nothing"
        handle = await client.start_workflow(ping_pong, "ping", id="accepted")
        assert (await handle.get()).workflow_id == "accepted"
    finally:
        node.kill()
