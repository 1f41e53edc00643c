"""A conformance client written without any Raftoral SDK: one call of the
client API (WorkflowService, proto/raftoral/sidecar/v1/workflow_service.proto)
through the stubs grpcio-tools generates from proto/, given as a JSON command
line; prints one JSON line and exits. It follows "Client mode" in
conformance/WORKERS.md.

Usage: ``python client.py '<json>'`` with ``RAFTORAL_SIDECAR_URL`` set.
``{"op":"signal","workflow_id":W,"name":N,"payload":P,"key":K?}`` sends
SignalWorkflow and prints ``{"ok":true,"duplicate":D}``;
``{"op":"resolve","id":A,"payload":P}`` and ``{"op":"reject","id":A,
"message":M,"type":T}`` send CompleteAwakeable (with a Failure to reject)
and print ``{"ok":true}``. Payloads go as compact JSON bytes, as the SDKs
encode them. A refusal prints ``{"ok":false,"error":DETAILS,"code":CODE}``
(CODE the gRPC status code's name, exit 0); a bad command line exits with
status 2.

Run it with the interpreter of conformance/raw-python/.venv after `make
raw-worker` generated the stubs into conformance/raw-python/gen.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc
from raftoral.sidecar.v1 import failure_pb2 as fpb
from raftoral.sidecar.v1 import workflow_service_pb2 as ws
from raftoral.sidecar.v1 import workflow_service_pb2_grpc as ws_grpc

NEEDED = {"signal": ("workflow_id", "name"), "resolve": ("id",), "reject": ("id", "message")}


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
    if op not in NEEDED:
        raise Usage(f"unknown op {op!r}; known: signal, resolve, reject")
    for field in NEEDED[op]:
        if not isinstance(command.get(field), str):
            raise Usage(f"op {op!r} needs the string field {field!r}")
    return command


def encode(value: Any) -> bytes:
    """A payload as the SDKs encode it: compact JSON in UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def run(url: str, command: dict[str, Any]) -> dict[str, Any]:
    with grpc.insecure_channel(url.removeprefix("http://")) as channel:
        stub = ws_grpc.WorkflowServiceStub(channel)
        op = command["op"]
        if op == "signal":
            answer = stub.SignalWorkflow(
                ws.SignalWorkflowRequest(
                    workflow_id=command["workflow_id"],
                    name=command["name"],
                    payload=encode(command.get("payload")),
                    idempotency_key=command.get("key") or "",
                )
            )
            return {"ok": True, "duplicate": bool(answer.duplicate)}
        if op == "resolve":
            request = ws.CompleteAwakeableRequest(
                awakeable_id=command["id"], payload=encode(command.get("payload"))
            )
        else:
            failure = fpb.Failure(type=command.get("type", "Rejected"), message=command["message"])
            request = ws.CompleteAwakeableRequest(awakeable_id=command["id"], failure=failure)
        stub.CompleteAwakeable(request)
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
        out = run(url, command)
    except grpc.RpcError as e:
        # The error a stub call raises is also its grpc.Call.
        call: Any = e
        out = {"ok": False, "error": call.details() or "", "code": call.code().name}
    print(json.dumps(out, separators=(",", ":"), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
