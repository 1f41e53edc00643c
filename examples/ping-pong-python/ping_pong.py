"""ping_pong in Python: the smallest Raftoral app, same contract as
examples/ping-pong (Rust).

It connects to its sidecar (``RAFTORAL_SIDECAR_URL``), or runs an in-process
node with ``--local``, registers the ``ping_pong`` workflow (version 1) and
serves ``POST /workflow`` over HTTP (``PING_PONG_HTTP_LISTEN``): the body
("ping" or "pong", plain or JSON) is the input, the answer is the workflow's
result.

    curl -d ping http://127.0.0.1:8080/workflow   # -> pong

Only the standard library besides ``raftoral``: the HTTP part is a minimal
HTTP/1.1 server on asyncio streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from typing import AsyncIterator

import raftoral


@raftoral.workflow(name="ping_pong", version=1)
async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
    """One durable step that answers ping with pong (and anything else with ping)."""
    return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")


async def run_workflow(client: raftoral.Client, body: str) -> tuple[int, str]:
    """The HTTP status and body for one ``POST /workflow``."""
    try:
        text = json.loads(body)
        if not isinstance(text, str):
            text = body.strip()
    except json.JSONDecodeError:
        text = body.strip()
    try:
        handle = await client.start_workflow(ping_pong, text)
    except raftoral.RaftoralError as e:
        return 503, f"{e}\n"
    try:
        return 200, f"{await handle.result(timeout=30)}\n"
    except raftoral.Timeout:
        return 504, f"workflow {handle.workflow_id} did not finish within 30s\n"
    except raftoral.RaftoralError as e:
        return 500, f"{e}\n"


async def serve_http(
    client: raftoral.Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        length = 0
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = (await reader.readexactly(length)).decode() if length else ""
        if request_line[:2] == ["POST", "/workflow"]:
            status, text = await run_workflow(client, body)
        else:
            status, text = 404, "POST /workflow with ping or pong\n"
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        payload = text.encode()
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    except (ValueError, IndexError, asyncio.IncompleteReadError, ConnectionError):
        pass  # a malformed request: drop the connection
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def connect(local: bool) -> AsyncIterator[raftoral.Client]:
    """A client of the sidecar, or of an in-process node with ``--local``."""
    if local:
        async with raftoral.LocalNode() as node:
            yield node.client
    else:
        url = os.environ.get("RAFTORAL_SIDECAR_URL", "http://127.0.0.1:9001")
        yield await raftoral.Client.connect(url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", action="store_true", help="run an in-process node")
    args = parser.parse_args()
    host, _, port = os.environ.get("PING_PONG_HTTP_LISTEN", "127.0.0.1:8080").rpartition(":")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with connect(args.local) as client, raftoral.Worker(client, workflows=[ping_pong]):
        server = await asyncio.start_server(lambda r, w: serve_http(client, r, w), host, int(port))
        bound = server.sockets[0].getsockname()
        if path := os.environ.get("PING_PONG_ADDR_FILE"):
            with open(f"{path}.tmp", "w") as f:
                f.write(f"{bound[0]}:{bound[1]}")
            os.replace(f"{path}.tmp", path)
        print(f"ping_pong listening on http://{bound[0]}:{bound[1]}/workflow", flush=True)
        async with server:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
