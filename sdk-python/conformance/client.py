"""The Python SDK's conformance client: one client API call, given as a JSON
command line, through :class:`raftoral.Client`; prints one JSON line and
exits. Every SDK has one like it (conformance/WORKERS.md, "Client mode"), so
a scenario can make any language signal or resolve the workflows any other
language runs.

Usage: ``python client.py '<json>'`` with ``RAFTORAL_SIDECAR_URL`` set.
``{"op":"signal","workflow_id":W,"name":N,"payload":P,"key":K?}`` prints
``{"ok":true,"duplicate":D}``; ``{"op":"resolve","id":A,"payload":P}`` and
``{"op":"reject","id":A,"message":M,"type":T}`` print ``{"ok":true}``. A
refusal prints ``{"ok":false,"error":MESSAGE,"code":CODE}`` (exit 0), CODE
the gRPC code's name of the SDK's error class (``NotFound`` is
``NOT_FOUND``), else the class name; a bad command line exits with status 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import raftoral

# The SDK's error classes and the gRPC codes they stand for.
CODES: dict[type[raftoral.RaftoralError], str] = {
    raftoral.NotFound: "NOT_FOUND",
    raftoral.InvalidArgument: "INVALID_ARGUMENT",
    raftoral.NotRunning: "FAILED_PRECONDITION",
    raftoral.AlreadyCompleted: "ALREADY_EXISTS",
    raftoral.ResourceExhausted: "RESOURCE_EXHAUSTED",
    raftoral.Unavailable: "UNAVAILABLE",
    raftoral.Unauthenticated: "UNAUTHENTICATED",
}


class Usage(Exception):
    """The command line is wrong (exit status 2)."""


def parse(argv: list[str]) -> dict[str, Any]:
    if len(argv) != 2:
        raise Usage("usage: client.py '<json command>'")
    try:
        command = json.loads(argv[1])
    except ValueError as e:
        raise Usage(f"bad command {argv[1]!r}: {e}") from e
    if not isinstance(command, dict):
        raise Usage(f"bad command {argv[1]!r}: not an object")
    op = command.get("op")
    needed = {"signal": ("workflow_id", "name"), "resolve": ("id",), "reject": ("id", "message")}
    if op not in needed:
        raise Usage(f"unknown op {op!r}; known: signal, resolve, reject")
    for field in needed[op]:
        if not isinstance(command.get(field), str):
            raise Usage(f"op {op!r} needs the string field {field!r}")
    return command


async def run(url: str, command: dict[str, Any]) -> dict[str, Any]:
    client = await raftoral.Client.connect(url)
    op = command["op"]
    if op == "signal":
        sent = await client.signal_workflow(
            command["workflow_id"],
            command["name"],
            command.get("payload"),
            idempotency_key=command.get("key"),
        )
        return {"ok": True, "duplicate": sent.duplicate}
    if op == "resolve":
        await client.resolve_awakeable(command["id"], command.get("payload"))
    else:
        await client.reject_awakeable(
            command["id"], command["message"], type=command.get("type", "Rejected")
        )
    return {"ok": True}


def main() -> int:
    try:
        command = parse(sys.argv)
        url = os.environ.get("RAFTORAL_SIDECAR_URL")
        if not url:
            raise Usage("RAFTORAL_SIDECAR_URL is not set")
    except Usage as e:
        print(f"client.py: {e}", file=sys.stderr)
        return 2
    try:
        out = asyncio.run(run(url, command))
    except raftoral.RaftoralError as e:
        code = next((c for k, c in CODES.items() if isinstance(e, k)), type(e).__name__)
        out = {"ok": False, "error": str(e), "code": code}
    print(json.dumps(out, separators=(",", ":"), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
