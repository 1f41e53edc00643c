"""Steps side by side (``asyncio.gather``) on LocalNode: they run at once
and take positions in call order."""

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
            # Positions follow the call order whichever committed first (the
            # commit order itself depends on timing here; the conformance
            # fanout scenario checks it with wide gaps).
            history = await handle.history()
            assert sorted((e.seq, e.checkpoint_name) for e in history) == [(0, "a"), (1, "b")]
