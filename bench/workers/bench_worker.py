"""The Python SDK's bench worker: the contract of the Rust one
(``handler`` in bench/src/workflows.rs), so ``raftoral-bench sdks`` compares
the bindings on the same workloads.

``ping_pong`` answers "pong" to "ping" after one checkpoint; ``steps`` makes
N sequential checkpoints and returns each one's latency as the workflow
function saw it, in nanoseconds; ``hold`` makes one checkpoint and never
finishes. Environment: ``RAFTORAL_SIDECAR_URL``. Prints ``worker ready``
once registered; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import raftoral


@raftoral.workflow(name="ping_pong", version=1)
async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")


@raftoral.workflow(name="steps", version=1)
async def steps(ctx: raftoral.WorkflowContext, n: int) -> list[int]:
    nanos: list[int] = []
    for i in range(n):

        def step(i: int = i) -> int:
            return i + 1

        started = time.perf_counter_ns()
        await ctx.checkpoint(f"step-{i}", step)
        nanos.append(time.perf_counter_ns() - started)
    return nanos


async def forever() -> int:
    await asyncio.Event().wait()
    return 0


@raftoral.workflow(name="hold", version=1)
async def hold(ctx: raftoral.WorkflowContext, _: None) -> None:
    await ctx.checkpoint("started", lambda: 1)
    await ctx.checkpoint("never", forever)


async def main() -> None:
    client = await raftoral.Client.connect(os.environ["RAFTORAL_SIDECAR_URL"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with raftoral.Worker(client, workflows=[ping_pong, steps, hold]):
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
