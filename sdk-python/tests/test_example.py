"""examples/ping-pong-python against a real sidecar and with --local."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from harness import REPO, Node, eventually

EXAMPLE = REPO / "examples" / "ping-pong-python" / "ping_pong.py"


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("local", [False, True], ids=["sidecar", "local"])
async def test_example_answers_ping_with_pong(sidecar: Node, tmp_path: Path, local: bool) -> None:
    addr_file = tmp_path / "addr"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *(["--local"] if local else []),
        env={
            **os.environ,
            "RAFTORAL_SIDECAR_URL": sidecar.url,
            "PING_PONG_HTTP_LISTEN": "127.0.0.1:0",
            "PING_PONG_ADDR_FILE": str(addr_file),
        },
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(addr_file.exists, "the example to listen")
        url = f"http://{addr_file.read_text()}/workflow"
        assert await asyncio.to_thread(post, url, b"ping") == (200, "pong\n")
        assert await asyncio.to_thread(post, url, b'"pong"') == (200, "ping\n")
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
