"""A conformance worker written without any Raftoral SDK.

It speaks the app stream (proto/raftoral/sidecar/v1/app.proto) through the
code grpcio-tools generates from proto/, and nothing else, so it shows what a
new language's SDK has to do, and it tests the sidecar's protocol handling
independently of the Rust core the other SDKs share. It follows the worker
contract in conformance/WORKERS.md.

The protocol, as this file implements it:
- open WorkflowStream, send one RegisterWorkflowRequest per workflow type,
  wait for each RegistrationAck; heartbeat at least every
  heartbeat_interval_ms;
- ExecuteWorkflowRequest starts a run (or, for a run this process already
  has, after a reconnect, brings its history up to date);
- a checkpoint first replays the history (names must match, else
  non-determinism); past it, the owner computes and sends a
  CheckpointProposal, a replica waits; both continue with the value of the
  CheckpointEvent that commits the seq;
- OwnershipChange and StreamError(NOT_OWNER) switch a run between owner and
  replica; a proposal the sidecar does not hold is (re)sent when the run owns
  the workflow again; UNEXPECTED_SEQ means the seq committed (its event
  follows), UNAVAILABLE means retry, WORKFLOW_NOT_RUNNING ends the run;
- WorkflowCancellation makes the next checkpoint fail; a run ended by a
  cancellation, by WORKFLOW_NOT_RUNNING or by shutdown reports nothing;
  every other run sends a WorkflowResult;
- a closed stream is reopened with backoff; registrations are sent again and
  the sidecar re-sends every running workflow with its history.

Run it with the interpreter of conformance/raw-python/.venv after `make
raw-worker` generated the stubs into conformance/raw-python/gen.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc
from raftoral.sidecar.v1 import app_pb2 as pb
from raftoral.sidecar.v1 import app_pb2_grpc

# Histories travel in ExecuteWorkflowRequest: up to 4 MiB plus a value or two
# (see its comment), far above gRPC's default 4 MiB receive limit.
MAX_MESSAGE = 64 * 1024 * 1024
HEARTBEAT_S = 2.0  # our own interval, shortened to what the sidecar asks
DEAD_AFTER_S = 10.0  # silence after which the stream is presumed dead
RETRY_S = 0.2  # pause before re-sending a proposal refused as UNAVAILABLE


def encode(value: Any) -> bytes:
    """JSON as the Rust and Python SDKs write it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def effect(workflow_id: str, what: str, step: int) -> None:
    """Appends one line to the effects file, in one O_APPEND write."""
    path = os.environ.get("CONFORMANCE_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(f"{workflow_id} {what} {step}\n")


class Stop(Exception):
    """The run ends and reports nothing (cancelled, not running, shutdown)."""


class Cancelled(Stop):
    """The workflow was cancelled."""


class Run:
    """One workflow run on this worker."""

    def __init__(self, req: pb.ExecuteWorkflowRequest) -> None:
        self.id = req.workflow_id
        self.name = req.workflow_name
        self.raw_input = req.input
        self.input: Any = None
        self.is_owner = req.is_owner
        self.history: list[tuple[str, bytes]] = [(r.checkpoint_name, r.value) for r in req.history]
        self.cursor = 0  # next seq the workflow code asks for
        self.sent = False  # the sidecar holds our pending proposal
        self.stop: Optional[Stop] = None
        self.refused: Optional[str] = None
        self._changed = asyncio.Event()

    def poke(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        # Callers check the state, then wait: no await in between, so no
        # poke is lost.
        self._changed.clear()
        await self._changed.wait()

    def committed(self, seq: int, name: str) -> Optional[bytes]:
        """The committed value of seq, checking the name; None if not yet."""
        if seq >= len(self.history):
            return None
        committed_name, value = self.history[seq]
        if committed_name != name:
            raise RuntimeError(
                f"non-determinism in workflow '{self.id}' at checkpoint seq {seq}: "
                f"history has '{committed_name}', the code asked for '{name}'; keep "
                "checkpoint names and order stable, or register a new workflow version"
            )
        return value


class Worker:
    def __init__(self, url: str, registrations: list[str]) -> None:
        self.url = url
        self.registrations = registrations
        self.runs: dict[str, Run] = {}
        self.outbox: Optional[asyncio.Queue[Optional[pb.WorkflowStreamRequest]]] = None
        self.ready = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, **message: Any) -> bool:
        if self.outbox is None:
            return False  # disconnected: whatever matters is re-sent later
        self.outbox.put_nowait(pb.WorkflowStreamRequest(**message))
        return True

    # -- the stream ---------------------------------------------------------

    async def serve(self) -> None:
        """Keeps a stream open, reconnecting with backoff, until cancelled."""
        delay = 0.05
        async with grpc.aio.insecure_channel(
            self.url.removeprefix("http://"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
        ) as channel:
            stub = app_pb2_grpc.AppServiceStub(channel)
            while True:
                try:
                    await self.session(stub)
                    delay = 0.05
                except grpc.aio.AioRpcError as e:
                    print(f"stream ended: {e.code()}: {e.details()}", file=sys.stderr)
                finally:
                    self.outbox = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def session(self, stub: app_pb2_grpc.AppServiceStub) -> None:
        outbox: asyncio.Queue[Optional[pb.WorkflowStreamRequest]] = asyncio.Queue()
        self.outbox = outbox
        # Registrations first: the sidecar then re-sends running workflows.
        for name in self.registrations:
            self.send(register_workflow=pb.RegisterWorkflowRequest(workflow_name=name, version=1))

        async def requests() -> AsyncIterator[pb.WorkflowStreamRequest]:
            while (message := await outbox.get()) is not None:
                yield message

        call = stub.WorkflowStream(requests())
        acked: set[str] = set()
        every, heard, dead = HEARTBEAT_S, time.monotonic(), False

        async def heartbeat() -> None:
            nonlocal dead
            while True:
                await asyncio.sleep(every)
                if time.monotonic() - heard > DEAD_AFTER_S:
                    dead = True
                    call.cancel()
                    return
                self.send(heartbeat=pb.HeartbeatRequest(timestamp=int(time.time() * 1000)))

        beating = asyncio.create_task(heartbeat())
        try:
            async for response in call:
                heard = time.monotonic()
                kind = response.WhichOneof("message")
                if kind == "registration_ack":
                    ack = response.registration_ack
                    if 0 < ack.heartbeat_interval_ms < every * 1000:
                        # Restart the timer: its current sleep may be longer
                        # than the sidecar's app timeout.
                        every = ack.heartbeat_interval_ms / 1000
                        beating.cancel()
                        beating = asyncio.create_task(heartbeat())
                    acked.add(ack.workflow_name)
                    if acked >= set(self.registrations):
                        self.ready.set()
                elif kind == "execute_workflow":
                    self.on_execute(response.execute_workflow)
                elif kind == "checkpoint_event":
                    self.on_event(response.checkpoint_event)
                elif kind == "ownership_change":
                    self.on_ownership(response.ownership_change)
                elif kind == "workflow_cancellation":
                    c = response.workflow_cancellation
                    if run := self.runs.get(c.workflow_id):
                        run.stop = run.stop or Cancelled(c.reason)
                        run.poke()
                elif kind == "error":
                    self.on_error(response.error)
        except asyncio.CancelledError:
            if not dead:
                raise  # shutdown
            print(f"no message from the sidecar for {DEAD_AFTER_S} s", file=sys.stderr)
        finally:
            beating.cancel()
            outbox.put_nowait(None)

    def on_execute(self, req: pb.ExecuteWorkflowRequest) -> None:
        run = self.runs.get(req.workflow_id)
        if run is not None:
            # A reconnect: the run goes on; catch up and re-send the proposal.
            run.is_owner = req.is_owner
            run.history += [(r.checkpoint_name, r.value) for r in req.history[len(run.history) :]]
            run.sent = False
            run.poke()
            return
        run = Run(req)
        self.runs[run.id] = run
        task = asyncio.create_task(self.execute(run))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_event(self, ev: pb.CheckpointEvent) -> None:
        run = self.runs.get(ev.workflow_id)
        if run is not None and ev.seq == len(run.history):
            run.history.append((ev.checkpoint_name, ev.value))
            run.poke()

    def on_ownership(self, change: pb.OwnershipChange) -> None:
        run = self.runs.get(change.workflow_id)
        if run is not None:
            if run.is_owner != change.is_owner:
                run.sent = False
            run.is_owner = change.is_owner
            run.poke()

    def on_error(self, e: pb.StreamError) -> None:
        run = self.runs.get(e.workflow_id)
        if run is None:
            print(f"sidecar error: {pb.ErrorCode.Name(e.code)}: {e.message}", file=sys.stderr)
            return
        if e.code == pb.ERROR_CODE_NOT_OWNER:
            run.is_owner, run.sent = False, False
        elif e.code == pb.ERROR_CODE_UNEXPECTED_SEQ:
            pass  # the seq is committed; its event came before this error
        elif e.code == pb.ERROR_CODE_UNAVAILABLE:

            def resend(run: Run = run) -> None:
                run.sent = False
                run.poke()

            asyncio.get_running_loop().call_later(RETRY_S, resend)
        elif e.code == pb.ERROR_CODE_WORKFLOW_NOT_RUNNING:
            run.stop = run.stop or Stop(e.message)
        else:
            run.refused = f"{pb.ErrorCode.Name(e.code)}: {e.message}"
        run.poke()

    # -- workflow runs ------------------------------------------------------

    async def checkpoint(self, run: Run, name: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The value of the run's next checkpoint: replayed, computed or awaited."""
        seq = run.cursor
        while True:
            value = run.committed(seq, name)
            if value is not None:  # replayed, or committed by the owner
                run.cursor += 1
                return json.loads(value)
            if run.stop:
                raise run.stop
            if run.is_owner:
                break
            await run.changed()  # a replica waits for the owner's value
        proposal = pb.CheckpointProposal(
            workflow_id=run.id, seq=seq, checkpoint_name=name, value=encode(await compute())
        )
        run.sent, run.refused = False, None
        while (value := run.committed(seq, name)) is None:
            if run.stop:
                raise run.stop
            if run.refused:
                raise RuntimeError(f"checkpoint '{name}' refused: {run.refused}")
            if run.is_owner and not run.sent:
                run.sent = self.send(checkpoint_proposal=proposal)
            await run.changed()
        run.cursor += 1
        return json.loads(value)

    async def execute(self, run: Run) -> None:
        result: Optional[pb.WorkflowResult] = None
        try:
            run.input = json.loads(run.raw_input) if run.raw_input else None
            function = WORKFLOWS.get(run.name)
            if function is None:
                raise RuntimeError(f"this worker has no workflow '{run.name}'")
            value = await function(self, run)
            result = pb.WorkflowResult(workflow_id=run.id, success=True, result=encode(value))
        except Stop:
            pass  # cancelled or finished elsewhere: not an outcome
        except Exception as e:
            result = pb.WorkflowResult(workflow_id=run.id, success=False, error=str(e))
        finally:
            if self.runs.get(run.id) is run:
                del self.runs[run.id]
        if result is not None:
            self.send(workflow_result=result)


# -- the contract's workflow types ------------------------------------------


async def ping_pong(w: Worker, run: Run) -> Any:
    async def answer() -> str:
        return "pong" if run.input == "ping" else "ping"

    return await w.checkpoint(run, "result", answer)


async def steps(w: Worker, run: Run) -> Any:
    inp = run.input
    hang = os.environ.get("CONFORMANCE_HANG") == "1"
    prefix = os.environ.get("CONFORMANCE_STEP_PREFIX", "step")
    total = 0
    for i in range(inp["n"]):

        async def compute(i: int = i) -> int:
            effect(run.id, "start", i)
            if hang and inp.get("hang_at") == i:
                await asyncio.Event().wait()  # the app "dies" here
            if inp.get("step_delay_ms", 0) > 0:
                await asyncio.sleep(inp["step_delay_ms"] / 1000)
            effect(run.id, "done", i)
            return i * 2

        try:
            total += await w.checkpoint(run, f"{prefix}-{i}", compute)
        except Cancelled:
            effect(run.id, "cancelled", i)
            raise
        if inp.get("fail_at") == i:
            raise RuntimeError(f"failed on purpose at step {i}")
    return total


async def blob(w: Worker, run: Run) -> Any:
    total = 0
    for i in range(run.input["n"]):

        async def value() -> str:
            return "x" * int(run.input["size"])

        total += len(await w.checkpoint(run, f"blob-{i}", value))
    if os.environ.get("CONFORMANCE_HANG") == "1":
        await asyncio.Event().wait()
    return total


WORKFLOWS: dict[str, Callable[[Worker, Run], Awaitable[Any]]] = {
    "ping_pong": ping_pong,
    "steps": steps,
    "blob": blob,
}


async def main() -> None:
    only = os.environ.get("CONFORMANCE_WORKFLOWS", "ping_pong,steps,blob")
    worker = Worker(os.environ["RAFTORAL_SIDECAR_URL"], [n for n in only.split(",") if n])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(worker.serve())
    await worker.ready.wait()
    print("worker ready", flush=True)
    await stop.wait()
    # Runs in progress report nothing: their workflows resume elsewhere.
    serving.cancel()
    for task in list(worker.tasks):
        task.cancel()
    await asyncio.gather(serving, *worker.tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
