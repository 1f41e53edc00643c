"""The interpreter exits cleanly right after workflows ran.

The native core hands each result to asyncio from a tokio thread; when the
interpreter finalizes while such a thread is inside that hand-over, CPython
ends the thread from under Rust and the process aborts. The package's atexit
hook lets those hand-overs finish first. The race is short, so the script
runs several times; before the hook about one run in five aborted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

SCRIPT = """
import asyncio
import raftoral

@raftoral.workflow(name="ping_pong", version=1)
async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")

async def main() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[ping_pong]):
            handle = await node.client.start_workflow(ping_pong, "ping")
            assert await handle.result() == "pong"
            await handle.history()
            await node.client.list_workflows()

asyncio.run(main())
"""

RUNS = 12


async def test_interpreter_exit_after_workflows_does_not_abort(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    for _ in range(RUNS):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode(errors="replace")
