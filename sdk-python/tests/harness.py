"""Real `raftoral serve` processes and worker processes for the tests.

Ports are picked at run time; every wait polls its condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union

DEADLINE = 30.0
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def bin_dir() -> Path:
    """Where the workspace binaries are (RAFTORAL_BIN_DIR overrides)."""
    return Path(os.environ.get("RAFTORAL_BIN_DIR", REPO / "target" / "debug"))


def raftoral_bin() -> Path:
    path = bin_dir() / "raftoral"
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing: build it first (`cargo build -p raftoral-sidecar`, "
            "which `make test-python` runs)"
        )
    return path


async def eventually(
    check: Callable[[], Union[bool, Awaitable[bool]]],
    what: str,
    timeout: float = DEADLINE,
) -> None:
    """Polls ``check`` every 20 ms until it is true; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A free loopback port below the ephemeral range, for nodes that must be
    named in their peers' lists before they start (see conformance/src/cluster.rs)."""
    for _ in range(200):
        port = random.randint(20_000, 31_999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found between 20000 and 32000")


class Node:
    """One `raftoral serve` process."""

    def __init__(self, directory: Path, args: list[str]) -> None:
        self.dir = directory
        self.args = args
        self.url = ""
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.sidecar_addr = "127.0.0.1:0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        addr_file = self.dir / "addr.json"
        addr_file.unlink(missing_ok=True)
        log = open(self.dir / "sidecar.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(raftoral_bin()),
                "serve",
                "--sidecar-listen",
                self.sidecar_addr,
                "--addr-file",
                str(addr_file),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info,raftoral=debug"},
        )
        log.close()
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                addrs = json.loads(addr_file.read_text())
                break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"raftoral serve exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"raftoral serve did not serve within {DEADLINE} s")
            time.sleep(0.01)
        self.url = f"http://{addrs['sidecar']}"
        # A restart keeps the app address, so apps reconnect by themselves.
        self.sidecar_addr = addrs["sidecar"]

    def log(self) -> str:
        try:
            return (self.dir / "sidecar.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Cluster:
    """``n`` nodes forming one cluster over loopback."""

    def __init__(self, directory: Path, n: int, extra: Optional[list[str]] = None) -> None:
        raft = {i: f"127.0.0.1:{free_port()}" for i in range(1, n + 1)}
        peers = ",".join(f"{i}={a}" for i, a in raft.items())
        self.nodes = {
            i: Node(
                directory / f"node{i}",
                [
                    "--node-id",
                    str(i),
                    "--listen",
                    raft[i],
                    "--peers",
                    peers,
                    "--tick-ms",
                    "20",
                    "--proposal-timeout-ms",
                    "3000",
                    *(extra or []),
                ],
            )
            for i in raft
        }

    def start(self) -> Cluster:
        for node in self.nodes.values():
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()


def single_node(directory: Path, extra: Optional[list[str]] = None) -> Node:
    node = Node(directory, ["--listen", "127.0.0.1:0", *(extra or [])])
    node.start()
    return node


class Effects:
    """The side-effect file the test workers append to, one line per effect:
    ``<workflow id> <what> <step> <worker>``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [line.split(" ") for line in text.splitlines() if line]

    def count(self, workflow_id: str, what: str, step: Any = None) -> int:
        return sum(
            1
            for parts in self.lines()
            if parts[0] == workflow_id
            and parts[1] == what
            and (step is None or parts[2] == str(step))
        )

    def find(self, workflow_id: str, what: str) -> list[list[str]]:
        return [p for p in self.lines() if p[0] == workflow_id and p[1] == what]


class WorkerProcess:
    """``apps/worker_app.py`` in its own process (this interpreter)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(
        cls, url: str, effects: Path, name: str, env: Optional[dict[str, str]] = None
    ) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "apps" / "worker_app.py"),
            stdout=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "RAFTORAL_SIDECAR_URL": url,
                "EFFECTS": str(effects),
                "WORKER_NAME": name,
                **(env or {}),
            },
        )
        assert proc.stdout is not None

        async def ready() -> None:
            assert proc.stdout is not None
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError("the worker exited before it was ready")
                if line.strip() == b"worker ready":
                    return

        await asyncio.wait_for(ready(), DEADLINE)
        return cls(proc)

    async def kill(self) -> None:
        """SIGKILL: the app dies without any goodbye."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def terminate(self) -> int:
        """SIGTERM and wait for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), DEADLINE)
