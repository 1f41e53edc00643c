"""Steps side by side (``asyncio.gather``) on LocalNode: they run at once,
take positions in call order and commit as they finish."""

from __future__ import annotations

import asyncio

import raftoral

gate: dict[str, asyncio.Event] = {}


@raftoral.workflow(name="pair", version=1)
async def pair(ctx: raftoral.WorkflowContext, key: str) -> list[str]:
    async def first() -> str:
        # Finishes only once the second step has run: the two steps must be
        # in flight together.
        await gate[key].wait()
        return "a"

    async def second() -> str:
        gate[key].set()
        return "b"

    a, b = await asyncio.gather(ctx.checkpoint("a", first), ctx.checkpoint("b", second))
    return [a, b]


async def test_gathered_steps_run_together_and_commit_as_they_finish() -> None:
    gate["k"] = asyncio.Event()
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[pair]):
            handle = await node.client.start_workflow(pair, "k")
            assert await asyncio.wait_for(handle.result(), 30) == ["a", "b"]
            history = await handle.history()
            # "b" finished first, so it was committed first; its position is
            # still the second one.
            assert [(e.seq, e.checkpoint_name) for e in history] == [(1, "b"), (0, "a")]
