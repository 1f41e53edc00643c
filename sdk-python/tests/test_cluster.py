"""The SDK against a 3-node cluster of real `raftoral serve` processes."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import raftoral
from apps.workflows import StepsInput, ping_pong, steps
from harness import Cluster, Effects, WorkerProcess, eventually


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", 3, ["--app-timeout-ms", "1000"]).start()
    yield c
    c.stop()


async def test_ping_pong_on_three_nodes(cluster: Cluster, effects: Effects, wf_id: str) -> None:
    # The worker sits on node 2; the client starts the workflow on node 1.
    worker = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "a")
    try:
        client = await raftoral.Client.connect(cluster.nodes[1].url)
        handle = await client.start_workflow(ping_pong, "ping", id=wf_id)
        assert await handle.result(timeout=30) == "pong"
        assert (await handle.get()).owner_node_id == 2
        # Every node serves the same state.
        for node in cluster.nodes.values():
            other = await raftoral.Client.connect(node.url)
            assert await other.get_handle(wf_id).result(timeout=30) == "pong"
    finally:
        await worker.kill()


@pytest.mark.parametrize("dies", ["app", "node"])
async def test_owner_failover_to_a_python_worker_on_another_node(
    cluster: Cluster, effects: Effects, wf_id: str, tmp_path: Path, dies: str
) -> None:
    gate = tmp_path / "gate"
    first = await WorkerProcess.start(cluster.nodes[1].url, effects.path, "first")
    second = None
    try:
        client = await raftoral.Client.connect(cluster.nodes[1].url)
        # Started while only node 1's app runs `steps`: node 1 owns it.
        handle = await client.start_workflow(
            steps, StepsInput(n=5, gate_at=2, gate=str(gate)), id=wf_id
        )
        await eventually(lambda: effects.count(wf_id, "compute", 2) == 1, "step 2 to start")
        assert (await handle.get()).owner_node_id == 1
        # Node 2's worker joins as a replica (replaying steps 0 and 1).
        second = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "second")
        if dies == "app":
            await first.kill()  # the owner's app dies; its node stays up
        else:
            cluster.nodes[1].kill()  # the owner's node dies; its app stays
        gate.touch()
        survivor = await raftoral.Client.connect(cluster.nodes[2].url)
        result = await survivor.get_handle(wf_id).result(timeout=30)
        assert result == sum(2 * i for i in range(5))
        assert (await survivor.get_workflow(wf_id)).owner_node_id == 2
        computed = {(p[2], p[3]) for p in effects.find(wf_id, "compute")}
        # Committed steps ran once, on the first owner; the rest on node 2's
        # worker, which had caught up as a replica.
        assert effects.count(wf_id, "compute", 0) == 1
        assert effects.count(wf_id, "compute", 1) == 1
        assert {("0", "first"), ("1", "first"), ("3", "second"), ("4", "second")} <= computed
        assert effects.count(wf_id, "compute", 3) == 1
    finally:
        await first.kill()
        if second is not None:
            await second.kill()
