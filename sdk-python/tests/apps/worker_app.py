"""A worker process for the tests: connects to RAFTORAL_SIDECAR_URL, runs the
workflows of ``workflows.py``, prints ``worker ready``, and runs until killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import raftoral
from apps.workflows import ALL


async def main() -> None:
    client = await raftoral.Client.connect(os.environ["RAFTORAL_SIDECAR_URL"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with raftoral.Worker(client, workflows=ALL):
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
