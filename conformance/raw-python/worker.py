"""A conformance worker written without any Raftoral SDK.

It speaks the app stream (proto/raftoral/sidecar/v1/app.proto and
failure.proto) through the code grpcio-tools generates from proto/, and
nothing else, so it shows what a new language's SDK has to do, and it tests
the sidecar's protocol handling independently of the Rust core the other SDKs
share. It follows the worker contract in conformance/WORKERS.md.

The protocol, as this file implements it (protocol_version 2):
- open WorkflowStream, send one RegisterWorkflowRequest per workflow type
  (with protocol_version=2), wait for each RegistrationAck; heartbeat at
  least every heartbeat_interval_ms;
- ExecuteWorkflowRequest starts a run (or, for a run this process already
  has, after a reconnect, brings its history up to date);
- a history is a list of entries in commit order; a CheckpointEvent is
  appended when its history_index is the length of the history held. Each
  entry is about one step position (seq): a value or a STEP_FAILED failure
  resolves the seq; STEP_ATTEMPT_FAILED entries (attempts 1, 2, ...) come
  before the resolution;
- a step takes its position (seq = the run's cursor, then the cursor moves
  on) synchronously when the code calls it, before any await, so steps
  started side by side (asyncio.gather) get positions in call order;
- several steps of one run may be in flight at once (parallel steps): their
  entries commit in the order the steps finish, so seqs come out of order;
- a step first looks for its seq's resolution (names must match, else
  non-determinism): a value is returned, a failure raised as StepFailed, on
  the owner, on replicas and on replay alike. Unresolved, the owner runs the
  step's code (a replica waits) once the backoff of the last failed attempt
  has passed: clamp(next_attempt_at_ms - now, 0, next_attempt_at_ms -
  committed_at_ms), counted from when the entry was learned, so a new owner
  after a failover waits what is left of the committed delay;
- resolutions reach the code in commit order (the release rule of
  app.proto): a resolved step waits until every resolution committed before
  it was handed out (so those steps were asked for) and is then woken; a
  counter of released resolutions walks the history's commit order, one
  release per turn of the event loop, so each woken step's code runs up to
  its next step before the next wakes. A resolution at hand when the step
  is called (a replay) is handed out on a later turn too, as a live commit
  is: branches started side by side all take their first positions before
  any of them continues, live and in a replay alike;
- the owner proposes a value, a failed attempt (the step's code raised, the
  error is retryable and the workflow's policy has attempts left; with the
  delay before the next one) or the step's failure; it continues with the
  CheckpointEvents, never with its own proposal: another owner may have
  resolved the seq, or failed the same attempt, first (then a value or
  failure is re-based on the next attempt number);
- several proposals may be pending, one per open seq, each with its own
  sent flag and refusal; none is sent for a seq 256 or more positions past
  the first unresolved one (the sidecar's limit; ERROR_CODE_TOO_MANY_OPEN_STEPS
  beyond): it waits for open steps to resolve;
- OwnershipChange and StreamError(NOT_OWNER) switch a run between owner and
  replica; every proposal the sidecar does not hold is (re)sent when the run
  owns the workflow again; UNEXPECTED_SEQ means the seq (or the attempt)
  committed (its event came first), UNAVAILABLE means retry,
  WORKFLOW_NOT_RUNNING ends the run;
- WorkflowCancellation makes the next checkpoint fail; a run ended by a
  cancellation, by WORKFLOW_NOT_RUNNING or by shutdown reports nothing;
  every other run sends a WorkflowResult (a step failure the code did not
  catch fails the workflow with the step's Failure, structured); steps still
  in flight when the workflow function ends (a branch that failed ended a
  gather) stop without proposing anything more;
- a closed stream is reopened with backoff; meanwhile no run owns anything.
  Registrations are sent again and the sidecar re-sends every running
  workflow with its whole history and who owns it now; every pending
  proposal is sent again;
- later protocols add durable timers (3), cancel requests (4), event waits
  (5), status values and awakeables (6), and races over event waits (7):
  the owner cancels a wait that lost a race with EVENT_WAIT_CANCELLED, and
  one such entry at a wait that received an event already resolves
  nothing (the event goes back to the workflow);
- child workflows (8): a child start takes a position like a step; the
  owner proposes CHILD_STARTED (checkpoint_name the child's type, child the
  ChildStart) until the history holds it, and the cluster resolves the
  position with CHILD_COMPLETED (the child's result) or CHILD_FAILED (its
  failure, raised like a step's).

Calls to other workflows (the `caller` type) are no protocol of their own:
they are ordinary steps whose code calls the client API (WorkflowService,
workflow_service.proto) on the same sidecar, through one channel per worker.

Run it with the interpreter of conformance/raw-python/.venv after `make
raw-worker` generated the stubs into conformance/raw-python/gen.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc
from raftoral.sidecar.v1 import app_pb2 as pb
from raftoral.sidecar.v1 import app_pb2_grpc
from raftoral.sidecar.v1 import failure_pb2 as fpb
from raftoral.sidecar.v1 import workflow_service_pb2 as ws
from raftoral.sidecar.v1 import workflow_service_pb2_grpc as ws_grpc

# Entry kinds, attempts, failures, timers, cancel requests, events, status
# and awakeables, races over event waits, child workflows.
PROTOCOL_VERSION = 8
CANCELLED_TYPE = "raftoral.Cancelled"  # a delivered cancel request's failure
# Histories travel in ExecuteWorkflowRequest: up to 4 MiB plus a value or two
# (see its comment), far above gRPC's default 4 MiB receive limit.
MAX_MESSAGE = 64 * 1024 * 1024
HEARTBEAT_S = 2.0  # our own interval, shortened to what the sidecar asks
DEAD_AFTER_S = 10.0  # silence after which the stream is presumed dead
RETRY_S = 0.2  # pause before re-sending a proposal refused as UNAVAILABLE
# The sidecar's limits on a Failure (failure.proto): message and details of
# a failed attempt, of a step's final failure, and the stack.
ATTEMPT_FAILURE_BYTES = 4 * 1024
FINAL_FAILURE_BYTES = 64 * 1024
STACK_BYTES = 16 * 1024
TYPE_BYTES = 256
MAX_DELAY_MS = 7 * 24 * 60 * 60 * 1000  # longest retry delay accepted
# A proposal's seq must be below the first unresolved seq plus this (the
# sidecar's limit on steps open at once).
MAX_OPEN_STEPS = 256

STEP_FAILED = fpb.HISTORY_ENTRY_KIND_STEP_FAILED
STEP_ATTEMPT_FAILED = fpb.HISTORY_ENTRY_KIND_STEP_ATTEMPT_FAILED
TIMER_STARTED = fpb.HISTORY_ENTRY_KIND_TIMER_STARTED
TIMER_FIRED = fpb.HISTORY_ENTRY_KIND_TIMER_FIRED
TIMER_CANCELLED = fpb.HISTORY_ENTRY_KIND_TIMER_CANCELLED
EVENT_WAITING = fpb.HISTORY_ENTRY_KIND_EVENT_WAITING
EVENT_RECEIVED = fpb.HISTORY_ENTRY_KIND_EVENT_RECEIVED
EVENT_TIMED_OUT = fpb.HISTORY_ENTRY_KIND_EVENT_TIMED_OUT
STATUS_SET = fpb.HISTORY_ENTRY_KIND_STATUS_SET
EVENT_WAIT_CANCELLED = fpb.HISTORY_ENTRY_KIND_EVENT_WAIT_CANCELLED
# The entries that resolve an event wait's position.
EVENT_RESOLUTIONS = (EVENT_RECEIVED, EVENT_TIMED_OUT, EVENT_WAIT_CANCELLED)
CHILD_STARTED = fpb.HISTORY_ENTRY_KIND_CHILD_STARTED
CHILD_COMPLETED = fpb.HISTORY_ENTRY_KIND_CHILD_COMPLETED
CHILD_FAILED = fpb.HISTORY_ENTRY_KIND_CHILD_FAILED
# The entries that resolve a child's position.
CHILD_RESOLUTIONS = (CHILD_COMPLETED, CHILD_FAILED)


def encode(value: Any) -> bytes:
    """JSON as the SDKs write it: compact, UTF-8. Object keys are sorted, as
    serde_json (the Rust SDK) writes them, so a result that is an object has
    the same bytes as the Rust worker's."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def effect(workflow_id: str, what: str, step: int) -> None:
    """Appends one line to the effects file, in one O_APPEND write."""
    path = os.environ.get("CONFORMANCE_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(f"{workflow_id} {what} {step} {int(time.time() * 1000)}\n")


class Stop(Exception):
    """The run ends and reports nothing (cancelled, not running, shutdown)."""


class Cancelled(Stop):
    """The workflow was cancelled."""


class CancelledHere(Exception):
    """The workflow's cancel request, delivered at a position (app.proto
    WorkflowCancellation): the code may catch it and clean up; raised out
    of the function, it ends the workflow CANCELLED."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_cancellation(entry: Entry) -> bool:
    """True for an entry that delivered the cancel request."""
    return (
        entry.kind in (STEP_FAILED, TIMER_CANCELLED)
        and entry.failure is not None
        and entry.failure.type == CANCELLED_TYPE
    )


class StepError(Exception):
    """What a step's code raises to choose the committed failure: its type,
    message, details (any JSON value) and whether it may be retried. Any
    other exception is committed with its class name and str()."""

    def __init__(
        self, type_name: str, message: str, details: Any = None, non_retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.details = details
        self.non_retryable = non_retryable


class StepFailed(Exception):
    """A step failed for good: raised at its position from the committed
    STEP_FAILED entry, here and on every replica and replay. Its text is
    the Rust SDK's, so a workflow that does not catch it fails with the same
    error in every language."""

    def __init__(self, workflow_id: str, seq: int, step: str, attempts: int, failure: Any) -> None:
        s = "" if attempts == 1 else "s"
        super().__init__(
            f"step '{step}' (seq {seq}) of workflow '{workflow_id}' failed after "
            f"{attempts} attempt{s}: {failure.type}: {failure.message}"
        )
        self.workflow_id = workflow_id
        self.seq = seq
        self.step = step
        self.attempts = attempts
        self.failure = failure  # the committed fpb.Failure
        self.type: str = failure.type
        self.message: str = failure.message
        self.details: Any = json.loads(failure.details_json) if failure.details_json else None


def non_determinism(workflow_id: str, seq: int, committed: str, asked: str) -> RuntimeError:
    return RuntimeError(
        f"non-determinism in workflow '{workflow_id}' at checkpoint seq {seq}: "
        f"history has '{committed}', the code asked for '{asked}'; keep "
        "checkpoint names and order stable, or register a new workflow version"
    )


def committed_label(entry: Entry) -> str:
    """How non-determinism names the operation a resolution belongs to: a
    step's name, or `timer:`, `event:`, `status:` or `child:` and its name."""
    if entry.kind in (TIMER_FIRED, TIMER_CANCELLED):
        return f"timer:{entry.name}"
    if entry.kind in EVENT_RESOLUTIONS:
        return f"event:{entry.name}"
    if entry.kind == STATUS_SET:
        return f"status:{entry.name}"
    if entry.kind in CHILD_RESOLUTIONS:
        return f"child:{entry.name}"
    return entry.name


# -- retries ----------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried (the Rust core's RetryPolicy)."""

    initial_ms: float = 1000.0
    coefficient: float = 2.0
    maximum_ms: float = 60_000.0
    maximum_attempts: Optional[int] = 10  # None: no limit
    jitter: float = 0.2  # share of each delay removed at random
    non_retryable_types: tuple[str, ...] = ()
    attempt_timeout_ms: Optional[float] = None  # None: no limit

    def __post_init__(self) -> None:
        """Refuses a policy that cannot work, saying which setting is wrong."""
        bad = ""
        if not self.initial_ms >= 0 or not self.maximum_ms >= self.initial_ms:
            bad = (
                "intervals must be at least 0 and the maximum at least the initial, "
                f"got {self.initial_ms} and {self.maximum_ms} ms"
            )
        elif not self.coefficient >= 1:
            bad = f"backoff coefficient must be at least 1, got {self.coefficient}"
        elif self.maximum_attempts is not None and self.maximum_attempts < 1:
            bad = f"maximum attempts must be at least 1, got {self.maximum_attempts}"
        elif not 0 <= self.jitter <= 1:
            bad = f"jitter must be between 0 and 1, got {self.jitter}"
        elif self.attempt_timeout_ms is not None and not self.attempt_timeout_ms > 0:
            bad = f"attempt timeout must be more than 0, got {self.attempt_timeout_ms} ms"
        if bad:
            raise ValueError(f"retry policy: {bad}")

    def is_final(self, attempt: int, failure: Any) -> bool:
        """True when `failure` at `attempt` (1-based) fails the step."""
        return (
            failure.non_retryable
            or (self.maximum_attempts is not None and attempt >= self.maximum_attempts)
            or failure.type in self.non_retryable_types
        )

    def delay_ms(self, attempt: int) -> int:
        """The delay after failed attempt `attempt`: min(maximum, initial *
        coefficient**(attempt-1)), shortened (never lengthened) by jitter."""
        try:
            grown = self.initial_ms * self.coefficient ** (attempt - 1)
        except OverflowError:
            grown = math.inf
        capped = min(self.maximum_ms, grown)
        return min(MAX_DELAY_MS, int(capped * (1 - self.jitter * random.random())))


DEFAULT_POLICY = RetryPolicy()


def cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, at a character boundary."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def failure_of(e: Exception) -> Any:
    """The Failure a step's code raised, as failure.proto carries it."""
    if isinstance(e, StepError):
        failure = fpb.Failure(type=e.type_name, message=e.message, non_retryable=e.non_retryable)
        if e.details is not None:
            failure.details_json = encode(e.details).decode()
    else:
        failure = fpb.Failure(type=type(e).__name__, message=str(e))
    failure.stack = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return failure


def bounded(failure: Any, limit: int) -> Any:
    """`failure` within the sidecar's limits: message cut to `limit` bytes,
    details over it dropped (cut, they would not be JSON), stack cut."""
    failure.type = cut(failure.type or "Error", TYPE_BYTES)
    failure.message = cut(failure.message, limit)
    failure.stack = cut(failure.stack, STACK_BYTES)
    if len(failure.details_json.encode()) > limit:
        print(f"failure details over {limit} bytes dropped", file=sys.stderr)
        failure.details_json = ""
    return failure


# -- a run's history --------------------------------------------------------


@dataclass
class Entry:
    """One committed history entry (from a CheckpointRecord or an event)."""

    seq: int
    name: str
    kind: int
    value: bytes
    failure: Any  # fpb.Failure, or None
    attempt: int
    next_attempt_at_ms: int
    committed_at_ms: int

    @classmethod
    def of(cls, m: Any) -> Entry:
        return cls(
            seq=m.seq,
            name=m.checkpoint_name,
            kind=m.kind,
            value=m.value,
            failure=m.failure if m.HasField("failure") else None,
            attempt=max(m.attempt, 1),  # 0 from older sidecars: 1
            next_attempt_at_ms=m.next_attempt_at_ms,
            committed_at_ms=m.committed_at_ms,
        )


@dataclass
class Attempts:
    """The failed attempts of a step not resolved yet."""

    name: str
    last: int  # the last failed attempt
    due: float  # when the next one may start, on time.monotonic()


class History:
    """Entries in commit order, found by the seq they are about, and how
    many resolutions the code was handed (the release rule)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.resolved: dict[int, Entry] = {}  # seq -> its value or failure
        self.attempts: dict[int, Attempts] = {}  # unresolved seq -> attempts
        self.timers: dict[int, str] = {}  # started, unfired timer's seq -> name
        self.waits: dict[int, str] = {}  # committed, unresolved event wait's seq -> name
        self.children: dict[int, str] = {}  # started, unended child's seq -> its type
        self.order: list[int] = []  # resolved seqs in commit order
        self.order_of: dict[int, int] = {}  # seq -> its place in order
        # Positions the code gave up on (a race's losers): their resolutions
        # are skipped when their turn comes.
        self.abandoned: set[int] = set()
        self.released = 0  # resolutions handed to the code: order[:released]
        self.low = 0  # the first unresolved seq
        # Waits that received an event and gave it back once cancelled (a
        # race's losers): their EVENT_WAIT_CANCELLED resolves nothing.
        self.given_back: set[int] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, entry: Entry) -> None:
        """Appends the next entry in commit order."""
        self.entries.append(entry)
        if entry.kind == EVENT_WAIT_CANCELLED and entry.seq in self.resolved:
            # A give-back: recorded, not a resolution (not in the release
            # order).
            self.given_back.add(entry.seq)
        elif entry.kind == TIMER_STARTED:
            self.timers[entry.seq] = entry.name  # resolved by its TIMER_FIRED
        elif entry.kind == EVENT_WAITING:
            self.waits[entry.seq] = entry.name  # resolved by the cluster
        elif entry.kind == CHILD_STARTED:
            self.children[entry.seq] = entry.name  # resolved when the child ends
        elif entry.kind == STEP_ATTEMPT_FAILED:
            # The wait left, taken now (when the entry is learned): a clock
            # behind the log's waits the committed delay at most.
            delay = max(0, entry.next_attempt_at_ms - entry.committed_at_ms)
            left = min(max(0.0, entry.next_attempt_at_ms - time.time() * 1000), delay)
            self.attempts[entry.seq] = Attempts(
                entry.name, entry.attempt, time.monotonic() + left / 1000
            )
        else:
            self.attempts.pop(entry.seq, None)
            self.timers.pop(entry.seq, None)
            self.waits.pop(entry.seq, None)
            self.children.pop(entry.seq, None)
            self.resolved[entry.seq] = entry
            self.order_of[entry.seq] = len(self.order)
            self.order.append(entry.seq)
            while self.low in self.resolved:
                self.low += 1

    def wait_settled(self, seq: int) -> bool:
        """True when the wait at `seq` needs no (more) cancelling: resolved
        by anything but an event it took, or it gave that event back."""
        entry = self.resolved.get(seq)
        return (entry is not None and entry.kind != EVENT_RECEIVED) or seq in self.given_back

    def next_release(self) -> Optional[int]:
        """The seq whose resolution is the next to hand out, if committed."""
        return self.order[self.released] if self.released < len(self.order) else None

    def passed(self, seq: int) -> bool:
        """True when the resolution of `seq` is behind the release cursor."""
        return seq in self.order_of and self.order_of[seq] < self.released

    def first_of(self, seqs: list[int]) -> Optional[int]:
        """Among `seqs`, the index of the one resolved first in commit
        order, once it is handed out or the next to be (a race's winner)."""
        placed = [(self.order_of[s], i) for i, s in enumerate(seqs) if s in self.order_of]
        if not placed:
            return None
        place, i = min(placed)
        return i if place <= self.released else None


@dataclass
class Pending:
    """A proposal waiting for its commit."""

    proposal: pb.CheckpointProposal
    sent: bool = False  # the sidecar holds it (on this stream)
    # Refused as TOO_MANY_OPEN_STEPS: not sent again before the history
    # is longer than this.
    hold: int = -1


@dataclass
class Child:
    """A child workflow the code started (Worker.start_child): its id, its
    position and type, its result (a task, running from the start: it sends
    the start and waits for the child's end) and started() (waits for the
    start to commit)."""

    run: Run
    seq: int
    id: str
    name: str
    result: asyncio.Future[Any]

    async def started(self) -> None:
        """Returns once the child's CHILD_STARTED is committed (or its
        position resolved, say by a cancel request); raises what ended its
        start otherwise (non-determinism, a refusal, the run's stop)."""
        h = self.run.history
        while self.seq not in h.children and self.seq not in h.resolved:
            if self.result.done():
                self.result.result()  # raises what ended it
                return
            if self.run.stop is not None:
                raise self.run.stop
            await self.run.changed()


MASK64 = (1 << 64) - 1


class Random:
    """The run's deterministic generator, SplitMix64 as docs/ARCHITECTURE.md
    specifies it ("Deterministic helpers"): seeded by the sidecar's
    random_seed, or (0) by the FNV-1a 64 hash of the workflow id."""

    def __init__(self, seed: int, workflow_id: str) -> None:
        if seed == 0:
            seed = 0xCBF29CE484222325
            for b in workflow_id.encode():
                seed = ((seed ^ b) * 0x100000001B3) & MASK64
        self.state = seed

    def draw(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.draw() >> 11) / float(1 << 53)

    def uuid(self) -> str:
        b = bytearray(self.draw().to_bytes(8, "big") + self.draw().to_bytes(8, "big"))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Run:
    """One workflow run on this worker."""

    def __init__(self, req: pb.ExecuteWorkflowRequest) -> None:
        self.id = req.workflow_id
        self.name = req.workflow_name
        self.raw_input = req.input
        self.input: Any = None
        self.is_owner = req.is_owner
        self.history = History()
        for record in req.history:
            self.history.push(Entry.of(record))
        self.cursor = 0  # next seq the workflow code asks for
        self.random = Random(req.random_seed, req.workflow_id)
        self.pending: dict[int, Pending] = {}  # seq -> its proposal
        self.refused: dict[int, str] = {}  # seq -> why its proposal was refused
        self.timers: dict[int, str] = {}  # timer positions the code took -> name
        self.waits: dict[int, str] = {}  # event wait positions the code took -> name
        # The cancellations of waits that lost a race (EVENT_WAIT_CANCELLED),
        # sent by the owner until the history settles them: seq -> proposal.
        self.wait_cancels: dict[int, Pending] = {}
        # Resolved steps waiting for their turn: seq -> what wakes them.
        self.ready: dict[int, asyncio.Future[Entry]] = {}
        self.stop: Optional[Stop] = None
        # A cancel request (its reason), the positions the code took (name,
        # is a timer), the owner's delivery in flight, and the running step
        # attempts (stopped when the cancel is delivered at their position).
        self.cancel_request: Optional[str] = None
        self.names: dict[int, tuple[str, bool]] = {}
        self.cancel_targets: set[int] = set()
        self.attempt_tasks: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._release_soon = False

    def poke(self) -> None:
        """Something changed: steps look again, and resolutions that are
        due are handed out."""
        self._changed.set()
        self.release_soon()

    def unsend(self) -> None:
        """The sidecar holds none of the pending proposals (a new stream,
        another owner): they are sent again when the run owns its workflow."""
        for pending in self.pending.values():
            pending.sent = False
        for cancel in self.wait_cancels.values():
            cancel.sent = False

    def wait_turn(self, seq: int) -> asyncio.Future[Entry]:
        """What wakes the step of resolved `seq` when its resolution is
        handed out. Never at once: a later turn of the event loop, as a live
        commit would, so gathered branches all take their positions first."""
        turn: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self.ready[seq] = turn
        self.release_soon()
        return turn

    def release_soon(self) -> None:
        if not self._release_soon:
            self._release_soon = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """Hands out the next resolution in commit order if its step waits
        for it, then comes back on the next turn for the one after: the woken
        step's code runs up to its next step (taking its position) before
        the next is woken, as when commits come one by one. After a stop,
        every waiting step gets the stop instead."""
        self._release_soon = False
        if self.stop is not None:
            for turn in self.ready.values():
                if not turn.done():
                    turn.set_exception(self.stop)
            self.ready.clear()
            return
        seq = self.history.next_release()
        while seq is not None and seq in self.history.abandoned:
            self.history.released += 1  # a race's loser: skipped
            self._changed.set()  # a race waits for its losers to pass
            seq = self.history.next_release()
        if seq is None or seq not in self.ready:
            return  # not committed yet, or its step was not asked for yet
        turn = self.ready.pop(seq)
        self.history.released += 1
        self._changed.set()
        if not turn.done():  # not cancelled (shutdown)
            turn.set_result(self.history.resolved[seq])
        self.release_soon()

    async def changed(self, timeout: Optional[float] = None) -> None:
        # Callers check the state, then wait: no await in between, so no
        # poke is lost.
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def resolution(self, entry: Entry, name: str) -> Any:
        """The step's committed value, or its committed failure raised."""
        if entry.name != name:
            raise non_determinism(self.id, entry.seq, entry.name, name)
        if is_cancellation(entry):
            raise CancelledHere(entry.failure.message)
        if entry.kind == STEP_FAILED:
            failure = entry.failure if entry.failure is not None else fpb.Failure(type="Error")
            raise StepFailed(self.id, entry.seq, entry.name, entry.attempt, failure)
        return json.loads(entry.value)


class Worker:
    def __init__(self, url: str, registrations: list[str]) -> None:
        self.url = url
        self.registrations = registrations
        self.runs: dict[str, Run] = {}
        self.outbox: Optional[asyncio.Queue[Optional[pb.WorkflowStreamRequest]]] = None
        self.ready = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        # The client API, for steps that call other workflows: opened at
        # the first call, one channel for the worker.
        self._service_channel: Optional[grpc.aio.Channel] = None
        self._service: Optional[ws_grpc.WorkflowServiceStub] = None

    def service(self) -> ws_grpc.WorkflowServiceStub:
        """The client API (WorkflowService) on the sidecar this worker
        connects to, on the worker's one channel for it."""
        if self._service is None:
            self._service_channel = grpc.aio.insecure_channel(
                self.url.removeprefix("http://"),
                options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
            )
            self._service = ws_grpc.WorkflowServiceStub(self._service_channel)
        return self._service

    async def close(self) -> None:
        """Closes the client API's channel, if it was opened."""
        channel, self._service_channel, self._service = self._service_channel, None, None
        if channel is not None:
            await channel.close()

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
            self.send(
                register_workflow=pb.RegisterWorkflowRequest(
                    workflow_name=name, version=1, protocol_version=PROTOCOL_VERSION
                )
            )

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
                        if c.requested:
                            run.cancel_request = run.cancel_request or c.reason
                        else:
                            run.stop = run.stop or Cancelled(c.reason)
                        self.deliver(run)
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
            # Until the next stream's ExecuteWorkflowRequests say who owns
            # what, no run owns anything: the sidecar may hand its workflows
            # to another node meanwhile, and a backoff that ends now must not
            # run an attempt here.
            for run in self.runs.values():
                run.is_owner = False
                run.unsend()
                run.poke()

    def on_execute(self, req: pb.ExecuteWorkflowRequest) -> None:
        run = self.runs.get(req.workflow_id)
        if run is not None:
            # A reconnect: the run goes on; append the entries it lacks and
            # re-send its pending proposals (the new stream holds none).
            run.is_owner = req.is_owner
            for index, record in enumerate(req.history, start=req.history_start):
                if index == len(run.history):
                    run.history.push(Entry.of(record))
            run.unsend()
            self.deliver(run)
            run.poke()
            return
        if req.history_start > 0:
            return  # a run declared as held that ended since (never here)
        run = Run(req)
        self.runs[run.id] = run
        task = asyncio.create_task(self.execute(run))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_event(self, ev: pb.CheckpointEvent) -> None:
        run = self.runs.get(ev.workflow_id)
        if run is None:
            return
        if ev.history_index == len(run.history):
            run.history.push(Entry.of(ev))
            self.deliver(run)
            run.poke()
        elif ev.history_index > len(run.history):
            # Cannot happen on an ordered stream; never misalign the history.
            print(f"event {ev.history_index} of '{run.id}' out of order", file=sys.stderr)

    def on_ownership(self, change: pb.OwnershipChange) -> None:
        run = self.runs.get(change.workflow_id)
        if run is not None:
            if run.is_owner != change.is_owner:
                run.unsend()
            run.is_owner = change.is_owner
            self.deliver(run)
            run.poke()

    def on_error(self, e: pb.StreamError) -> None:
        run = self.runs.get(e.workflow_id)
        if run is None:
            print(f"sidecar error: {pb.ErrorCode.Name(e.code)}: {e.message}", file=sys.stderr)
            return
        pending = run.pending.get(e.seq)
        if e.code == pb.ERROR_CODE_NOT_OWNER:
            run.is_owner = False
            run.unsend()
        elif e.code == pb.ERROR_CODE_UNEXPECTED_SEQ:
            pass  # the seq or attempt is committed; its event came before this
        elif e.code == pb.ERROR_CODE_UNAVAILABLE:

            def resend(run: Run = run, pending: Optional[Pending] = pending) -> None:
                if pending is not None:
                    pending.sent = False
                cancel = run.wait_cancels.get(e.seq)
                if cancel is not None:  # a losing wait's cancellation
                    cancel.sent = False
                    self.send_wait_cancels(run)
                run.poke()

            asyncio.get_running_loop().call_later(RETRY_S, resend)
        elif e.code == pb.ERROR_CODE_TOO_MANY_OPEN_STEPS:
            # Too far past the first open step. flush() holds such
            # proposals back, so this is not expected; should it come, the
            # proposal waits until more entries are committed.
            if pending is not None:
                pending.sent = False
                pending.hold = len(run.history)
        elif e.code == pb.ERROR_CODE_WORKFLOW_NOT_RUNNING:
            run.stop = run.stop or Stop(e.message)
        else:
            run.refused[e.seq] = f"{pb.ErrorCode.Name(e.code)}: {e.message}"
        run.poke()

    # -- workflow runs ------------------------------------------------------

    def step(
        self,
        run: Run,
        name: str,
        compute: Callable[[int], Awaitable[Any]],
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> Coroutine[Any, Any, Any]:
        """The value of the run's next step: replayed, computed (by the
        owner, `compute(attempt)`, retried per `policy`) or awaited. Raises
        StepFailed when the step failed for good, now or in the history.

        The step takes its position here, when the code calls it, not when
        the result is awaited: steps started side by side (asyncio.gather)
        get their positions in call order."""
        seq = run.cursor
        run.cursor += 1
        run.names[seq] = (name, False)
        self.deliver(run)
        return self._step(run, seq, name, compute, policy)

    async def _step(
        self,
        run: Run,
        seq: int,
        name: str,
        compute: Callable[[int], Awaitable[Any]],
        policy: RetryPolicy,
    ) -> Any:
        while seq not in run.history.resolved:
            if run.stop:
                raise run.stop
            if seq in run.history.timers:
                raise non_determinism(run.id, seq, f"timer:{run.history.timers[seq]}", name)
            if seq in run.history.waits:
                raise non_determinism(run.id, seq, f"event:{run.history.waits[seq]}", name)
            if seq in run.history.children:
                raise non_determinism(run.id, seq, f"child:{run.history.children[seq]}", name)
            failed = run.history.attempts.get(seq)
            if failed is not None and failed.name != name:
                raise non_determinism(run.id, seq, failed.name, name)
            wait = failed.due - time.monotonic() if failed else 0.0
            if not run.is_owner or seq in run.cancel_targets:
                # A replica waits for the owner's entries; the owner for
                # the cancellation it delivers here.
                await run.changed()
            elif wait > 0:
                await run.changed(timeout=wait)  # the backoff of the last attempt
            else:
                attempt = failed.last + 1 if failed else 1
                proposal = await self.run_attempt(run, seq, name, attempt, compute, policy)
                if proposal is not None:  # None: stopped by the cancellation
                    await self.propose(run, proposal)
        # Resolved (replayed, or committed by an owner): a different name is
        # non-determinism at once; else the resolution waits for its turn.
        entry = run.history.resolved[seq]
        if entry.kind in (TIMER_FIRED, TIMER_CANCELLED):
            raise non_determinism(run.id, seq, f"timer:{entry.name}", name)
        if entry.kind in EVENT_RESOLUTIONS:
            raise non_determinism(run.id, seq, f"event:{entry.name}", name)
        if entry.kind == STATUS_SET:
            raise non_determinism(run.id, seq, f"status:{entry.name}", name)
        if entry.kind in CHILD_RESOLUTIONS:
            raise non_determinism(run.id, seq, f"child:{entry.name}", name)
        if entry.name != name:
            raise non_determinism(run.id, seq, entry.name, name)
        if seq in run.history.abandoned:
            return None  # lost a race: nobody reads it
        return run.resolution(await run.wait_turn(seq), name)

    def sleep(self, run: Run, name: str, ms: int) -> Coroutine[Any, Any, None]:
        """A durable sleep of `ms` at the run's next position (app.proto
        "Timers"): the owner proposes TIMER_STARTED with the duration; the
        position resolves when the cluster commits TIMER_FIRED. Taken when
        called, like a step's."""
        if ms < 0:
            raise ValueError(f"sleep '{name}' of {ms} ms: a duration cannot be negative")
        seq = run.cursor
        run.cursor += 1
        run.timers[seq] = name
        run.names[seq] = (name, True)
        self.deliver(run)
        return self._sleep(run, seq, name, ms)

    async def _sleep(self, run: Run, seq: int, name: str, ms: int) -> None:
        while seq not in run.history.resolved:
            if run.stop:
                raise run.stop
            failed = run.history.attempts.get(seq)
            if failed is not None:
                raise non_determinism(run.id, seq, failed.name, f"timer:{name}")
            started = run.history.timers.get(seq)
            if started is not None and started != name:
                raise non_determinism(run.id, seq, f"timer:{started}", f"timer:{name}")
            if seq in run.history.waits:
                waiting = run.history.waits[seq]
                raise non_determinism(run.id, seq, f"event:{waiting}", f"timer:{name}")
            if seq in run.history.children:
                child = run.history.children[seq]
                raise non_determinism(run.id, seq, f"child:{child}", f"timer:{name}")
            if seq in run.history.abandoned:
                return  # lost a race: the race cancels the timer
            if started is not None or not run.is_owner:
                await run.changed()  # the firing comes from the cluster
            else:
                proposal = pb.CheckpointProposal(
                    workflow_id=run.id,
                    seq=seq,
                    checkpoint_name=name,
                    attempt=1,
                    kind=TIMER_STARTED,
                    timer_duration_ms=ms,
                )
                await self.propose(run, proposal)
        entry = run.history.resolved[seq]
        timer = entry.kind in (TIMER_FIRED, TIMER_CANCELLED)
        if not timer or entry.name != name:
            raise non_determinism(run.id, seq, committed_label(entry), f"timer:{name}")
        if seq not in run.history.abandoned:
            await run.wait_turn(seq)
            if is_cancellation(entry):
                raise CancelledHere(entry.failure.message)

    def wait_event(
        self, run: Run, name: str, timeout_ms: Optional[int]
    ) -> Coroutine[Any, Any, Any]:
        """A durable wait for the event `name` at the run's next position
        (app.proto "Events"): the owner proposes EVENT_WAITING with the
        timeout (0: none); the cluster resolves it with EVENT_RECEIVED (the
        payload) or EVENT_TIMED_OUT (None). Taken when called."""
        seq = run.cursor
        run.cursor += 1
        run.names[seq] = (name, False)  # a cancellation here is a STEP_FAILED
        run.waits[seq] = name
        self.deliver(run)
        return self._wait_event(run, seq, name, timeout_ms or 0)

    async def _wait_event(self, run: Run, seq: int, name: str, timeout_ms: int) -> Any:
        label = f"event:{name}"
        while seq not in run.history.resolved:
            if run.stop:
                raise run.stop
            if seq in run.history.attempts:
                raise non_determinism(run.id, seq, run.history.attempts[seq].name, label)
            if seq in run.history.timers:
                raise non_determinism(run.id, seq, f"timer:{run.history.timers[seq]}", label)
            if seq in run.history.children:
                raise non_determinism(run.id, seq, f"child:{run.history.children[seq]}", label)
            waiting = run.history.waits.get(seq)
            if waiting is not None and waiting != name:
                raise non_determinism(run.id, seq, f"event:{waiting}", label)
            if seq in run.history.abandoned:
                return None  # lost a race: the race cancels the wait
            if waiting is not None or not run.is_owner or seq in run.cancel_targets:
                await run.changed()  # the cluster resolves it
            else:
                proposal = pb.CheckpointProposal(
                    workflow_id=run.id,
                    seq=seq,
                    checkpoint_name=name,
                    attempt=1,
                    kind=EVENT_WAITING,
                    timer_duration_ms=timeout_ms,
                )
                await self.propose(run, proposal)
        entry = run.history.resolved[seq]
        if is_cancellation(entry):
            await run.wait_turn(seq)
            raise CancelledHere(entry.failure.message)
        if entry.kind not in EVENT_RESOLUTIONS or entry.name != name:
            raise non_determinism(run.id, seq, committed_label(entry), label)
        if seq in run.history.abandoned:
            return None  # lost a race: nobody reads it
        await run.wait_turn(seq)
        if entry.kind == EVENT_RECEIVED and entry.failure is not None:
            # A rejected awakeable (the only events with a failure).
            raise StepFailed(run.id, seq, f"awk/{seq}/{run.id}", 1, entry.failure)
        return json.loads(entry.value) if entry.kind == EVENT_RECEIVED else None

    def awakeable(self, run: Run) -> tuple[str, Coroutine[Any, Any, Any]]:
        """An awakeable at the run's next position (app.proto "Awakeables"):
        its id `awk/SEQ/ID`, and the wait for the reserved event
        `raftoral.awakeable.SEQ` (no timeout) that gives its value or
        raises StepFailed with its rejection. Taken when called."""
        seq = run.cursor
        name = f"raftoral.awakeable.{seq}"
        return f"awk/{seq}/{run.id}", self.wait_event(run, name, None)

    async def set_status(self, run: Run, key: str, value: Any) -> None:
        """Sets the readable status `key` to `value` at the run's next
        position (app.proto "Status"): the owner proposes STATUS_SET with
        the value as JSON; it resolves the position like a step's value, and
        a replay finds it committed."""
        seq = run.cursor
        run.cursor += 1
        run.names[seq] = (key, False)  # a cancellation here is a STEP_FAILED
        self.deliver(run)
        label = f"status:{key}"
        while seq not in run.history.resolved:
            if run.stop:
                raise run.stop
            if seq in run.history.attempts:
                raise non_determinism(run.id, seq, run.history.attempts[seq].name, label)
            if seq in run.history.timers:
                raise non_determinism(run.id, seq, f"timer:{run.history.timers[seq]}", label)
            if seq in run.history.waits:
                raise non_determinism(run.id, seq, f"event:{run.history.waits[seq]}", label)
            if seq in run.history.children:
                raise non_determinism(run.id, seq, f"child:{run.history.children[seq]}", label)
            if not run.is_owner or seq in run.cancel_targets:
                await run.changed()  # the owner commits it
            else:
                proposal = pb.CheckpointProposal(
                    workflow_id=run.id,
                    seq=seq,
                    checkpoint_name=key,
                    attempt=1,
                    kind=STATUS_SET,
                    value=encode(value),
                )
                await self.propose(run, proposal)
        entry = run.history.resolved[seq]
        if is_cancellation(entry):
            await run.wait_turn(seq)
            raise CancelledHere(entry.failure.message)
        if entry.kind != STATUS_SET or entry.name != key:
            raise non_determinism(run.id, seq, committed_label(entry), label)
        await run.wait_turn(seq)

    def start_child(
        self,
        run: Run,
        workflow_name: str,
        input: Any,
        workflow_id: Optional[str] = None,
        parent_close: int = fpb.PARENT_CLOSE_POLICY_UNSPECIFIED,
        version: int = 1,
    ) -> Child:
        """Starts a child workflow of type `workflow_name` with `input` at
        the run's next position (app.proto "Children"), named `workflow_id`
        (none: `ID/SEQ`, the same in every replay). The owner proposes
        CHILD_STARTED until the history holds it; the cluster resolves the
        position when the child ends. Taken when called, like a step's; the
        returned Child's result is already running."""
        if workflow_id == run.id:
            raise RuntimeError(
                f"workflow '{run.id}' cannot be its own child: give the child another id, or none"
            )
        if workflow_id == "":
            raise RuntimeError(
                "a child's id must not be empty: give none and one is derived from "
                "the parent's id and the position"
            )
        seq = run.cursor
        run.cursor += 1
        run.names[seq] = (workflow_name, False)  # a cancellation here is a STEP_FAILED
        start = fpb.ChildStart(
            workflow_name=workflow_name,
            version=max(version, 1),
            input=encode(input),
            workflow_id=workflow_id if workflow_id is not None else f"{run.id}/{seq}",
            parent_close=parent_close,
        )
        self.deliver(run)
        task = asyncio.ensure_future(self._child(run, seq, start))

        def ended(t: asyncio.Future[Any]) -> None:
            # Nobody may read the outcome (a child left to its policy); its
            # end may be what started() waits for.
            if not t.cancelled():
                t.exception()
            run.poke()

        task.add_done_callback(ended)
        return Child(run, seq, start.workflow_id, workflow_name, task)

    async def _child(self, run: Run, seq: int, start: Any) -> Any:
        name: str = start.workflow_name
        label = f"child:{name}"
        while seq not in run.history.resolved:
            if run.stop:
                raise run.stop
            if seq in run.history.attempts:
                raise non_determinism(run.id, seq, run.history.attempts[seq].name, label)
            if seq in run.history.timers:
                raise non_determinism(run.id, seq, f"timer:{run.history.timers[seq]}", label)
            if seq in run.history.waits:
                raise non_determinism(run.id, seq, f"event:{run.history.waits[seq]}", label)
            started = run.history.children.get(seq)
            if started is not None and started != name:
                raise non_determinism(run.id, seq, f"child:{started}", label)
            if started is not None or not run.is_owner or seq in run.cancel_targets:
                await run.changed()  # the child's end resolves it
            else:
                proposal = pb.CheckpointProposal(
                    workflow_id=run.id,
                    seq=seq,
                    checkpoint_name=name,
                    attempt=1,
                    kind=CHILD_STARTED,
                )
                proposal.child.CopyFrom(start)
                await self.propose(run, proposal)
        entry = run.history.resolved[seq]
        if is_cancellation(entry):
            await run.wait_turn(seq)
            raise CancelledHere(entry.failure.message)
        if entry.kind not in CHILD_RESOLUTIONS or entry.name != name:
            raise non_determinism(run.id, seq, committed_label(entry), label)
        if seq in run.history.abandoned:
            return None  # nobody reads it
        await run.wait_turn(seq)
        if entry.kind == CHILD_FAILED:
            failure = entry.failure if entry.failure is not None else fpb.Failure(type="Error")
            raise StepFailed(run.id, seq, name, entry.attempt, failure)
        return json.loads(entry.value) if entry.value else None

    async def first(self, run: Run, seqs: list[int]) -> int:
        """Races the operations at positions `seqs` (started, not awaited):
        the index of the one resolved first in commit order, the same on
        every replica and in every replay. The others are abandoned: the
        owner cancels a losing timer (TIMER_CANCELLED) and a losing event
        wait or awakeable (EVENT_WAIT_CANCELLED, app.proto "Races over
        waits": an event it took goes back to the workflow); a losing step
        runs on to its commit. Returns once each losing timer's or wait's
        resolution is behind the release cursor, live as in a replay (the
        raced operations run as tasks meanwhile, so the winner takes its
        turn); it does not wait for a give-back to commit."""
        while True:
            if run.stop:
                raise run.stop
            winner = run.history.first_of(seqs)
            if winner is not None:
                break
            await run.changed()
        run.history.abandoned.update(s for i, s in enumerate(seqs) if i != winner)
        lost = [s for i, s in enumerate(seqs) if i != winner and s in run.timers]
        for i, seq in enumerate(seqs):
            if i != winner and self.lose_wait(run, seq):
                lost.append(seq)
        self.deliver(run)  # a delivery to a loser does not count
        run.poke()
        for i, seq in enumerate(seqs):
            if i == winner or seq not in run.timers or seq in run.history.resolved:
                continue
            if not run.is_owner:
                continue  # the owner cancels it (a new owner replays this race)
            pending = run.pending.get(seq)
            if pending is not None and not pending.sent:
                del run.pending[seq]  # its start is never sent
            cancel = pb.CheckpointProposal(
                workflow_id=run.id,
                seq=seq,
                checkpoint_name=run.timers[seq],
                attempt=1,
                kind=TIMER_CANCELLED,
            )
            await self.propose(run, cancel)
        for seq in lost:
            while not run.history.passed(seq):
                if run.stop:
                    raise run.stop
                await run.changed()
        return winner

    def lose_wait(self, run: Run, seq: int) -> bool:
        """`seq` lost a race: when it is an event wait (or an awakeable),
        notes its cancellation (sent by the owner until the history settles
        it) and returns True; False for other operations, and for a wait a
        delivered cancel request resolved."""
        name = run.waits.get(seq)
        if name is None:
            return False
        entry = run.history.resolved.get(seq)
        if entry is not None and entry.kind not in EVENT_RESOLUTIONS:
            return False  # a cancel request's STEP_FAILED (or non-determinism)
        if not run.history.wait_settled(seq) and seq not in run.wait_cancels:
            cancel = pb.CheckpointProposal(
                workflow_id=run.id,
                seq=seq,
                checkpoint_name=name,
                attempt=1,
                kind=EVENT_WAIT_CANCELLED,
            )
            run.wait_cancels[seq] = Pending(cancel)
        # A wait not sent yet is never sent; one in flight may still commit,
        # and the cancel then follows it.
        pending = run.pending.get(seq)
        if pending is not None and not pending.sent and pending.proposal.kind == EVENT_WAITING:
            del run.pending[seq]
        return True

    def send_wait_cancels(self, run: Run) -> None:
        """Forgets the cancellations of losing waits the history settled,
        and sends the others the sidecar does not hold while the run owns
        its workflow. A refusal as UNEXPECTED_SEQ needs nothing: the history
        tells what the position holds."""
        h = run.history
        for seq in [s for s in run.wait_cancels if h.wait_settled(s)]:
            del run.wait_cancels[seq]
        if not run.is_owner or run.stop is not None or self.outbox is None:
            return
        for seq in sorted(run.wait_cancels):
            cancel = run.wait_cancels[seq]
            if not cancel.sent and self.send(checkpoint_proposal=cancel.proposal):
                cancel.sent = True

    def checkpoint(
        self, run: Run, name: str, compute: Callable[[], Awaitable[Any]]
    ) -> Coroutine[Any, Any, Any]:
        """A step whose code does not care about the attempt number."""
        return self.step(run, name, lambda _attempt: compute())

    async def run_attempt(
        self,
        run: Run,
        seq: int,
        name: str,
        attempt: int,
        compute: Callable[[int], Awaitable[Any]],
        policy: RetryPolicy,
    ) -> Optional[pb.CheckpointProposal]:
        """Runs attempt `attempt` of a step: the proposal of its outcome;
        None when the cancel request's delivery at `seq` stopped it."""
        proposal = pb.CheckpointProposal(
            workflow_id=run.id, seq=seq, checkpoint_name=name, attempt=attempt
        )
        timeout = policy.attempt_timeout_ms
        if timeout is None:
            task = asyncio.ensure_future(compute(attempt))
        else:  # wait_for cancels the attempt when its time is up
            task = asyncio.ensure_future(asyncio.wait_for(compute(attempt), timeout / 1000))
        run.attempt_tasks[seq] = task
        try:
            await asyncio.wait([task])
        finally:
            run.attempt_tasks.pop(seq, None)
            task.cancel()  # only does something when this coroutine is cancelled
        if task.cancelled():
            return None
        try:
            value = task.result()
        except Exception as e:  # the step's code failed, or ran out of time
            if isinstance(e, asyncio.TimeoutError):
                message = f"attempt {attempt} timed out after {int(timeout or 0)} ms"
                failure = fpb.Failure(type="AttemptTimeout", message=message)
            else:
                failure = failure_of(e)
            if policy.is_final(attempt, failure):  # the step fails
                proposal.kind = STEP_FAILED
                proposal.failure.CopyFrom(bounded(failure, FINAL_FAILURE_BYTES))
            else:  # one attempt failed; the next after the delay
                proposal.kind = STEP_ATTEMPT_FAILED
                proposal.failure.CopyFrom(bounded(failure, ATTEMPT_FAILURE_BYTES))
                proposal.retry_delay_ms = policy.delay_ms(attempt)
            return proposal
        proposal.value = encode(value)
        return proposal

    async def propose(self, run: Run, proposal: pb.CheckpointProposal) -> None:
        """Sends `proposal` until it settles: its seq is resolved (by
        whichever owner), or, for a failed attempt, that attempt committed.
        The caller reads the outcome from the history."""
        seq = proposal.seq
        pending = Pending(proposal)
        run.pending[seq] = pending
        run.refused.pop(seq, None)
        try:
            while seq not in run.history.resolved:
                if proposal.kind == TIMER_STARTED and seq in run.history.timers:
                    return  # started (here or by another owner): it fires later
                if proposal.kind == EVENT_WAITING and seq in run.history.waits:
                    return  # committed: the cluster resolves it
                if proposal.kind == CHILD_STARTED and seq in run.history.children:
                    return  # started: the child's end resolves it
                failed = run.history.attempts.get(seq)
                if failed is not None and failed.last >= proposal.attempt:
                    if failed.name != proposal.checkpoint_name:
                        raise non_determinism(run.id, seq, failed.name, proposal.checkpoint_name)
                    if proposal.kind == STEP_ATTEMPT_FAILED:
                        return  # this attempt failed (here, or on another owner)
                    # Another owner failed this attempt meanwhile: our outcome
                    # is the next attempt's.
                    proposal.attempt = failed.last + 1
                    pending.sent = False
                if run.stop:
                    raise run.stop
                if seq in run.refused:
                    raise RuntimeError(
                        f"checkpoint '{proposal.checkpoint_name}' refused: {run.refused[seq]}"
                    )
                self.flush(run)
                await run.changed()
        finally:
            if run.pending.get(seq) is pending:
                del run.pending[seq]

    def deliver(self, run: Run) -> None:
        """The owner delivers the cancel request (app.proto
        WorkflowCancellation): once nothing delivered it yet nor is on its
        way, a raftoral.Cancelled entry at every position the code awaits
        and did not give up on (none: the next one it takes), and the
        attempts running there stop. Sends the cancellations of waits that
        lost a race, too (this is called after every change that matters:
        a commit, ownership, a new stream, a position taken)."""
        self.send_wait_cancels(run)
        if run.cancel_request is None or run.stop is not None or not run.is_owner:
            return
        h = run.history
        run.cancel_targets = {
            s for s in run.cancel_targets if s not in h.resolved and s not in h.abandoned
        }
        delivered = any(is_cancellation(e) and s not in h.abandoned for s, e in h.resolved.items())
        if delivered or run.cancel_targets:
            return
        for seq in range(run.cursor):
            if seq in h.resolved or seq in h.abandoned:
                continue
            run.cancel_targets.add(seq)
            if task := run.attempt_tasks.get(seq):
                task.cancel()
            name, timer = run.names[seq]
            proposal = pb.CheckpointProposal(
                workflow_id=run.id,
                seq=seq,
                checkpoint_name=name,
                kind=TIMER_CANCELLED if timer else STEP_FAILED,
                attempt=1 if timer or seq not in h.attempts else h.attempts[seq].last + 1,
            )
            proposal.failure.CopyFrom(fpb.Failure(type=CANCELLED_TYPE, message=run.cancel_request))
            task = asyncio.ensure_future(self.deliver_at(run, proposal))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def deliver_at(self, run: Run, proposal: pb.CheckpointProposal) -> None:
        try:
            await self.propose(run, proposal)
        except Exception:
            pass  # refused or ended: the next change delivers again if needed
        finally:
            run.poke()

    def flush(self, run: Run) -> None:
        """Sends every pending proposal of `run` the sidecar does not hold,
        in seq order, while the run owns its workflow: none for a seq too far
        past the first unresolved one (those wait for open steps to resolve),
        none that is settled or must be re-based on a later attempt (its
        step does that first)."""
        if not run.is_owner or run.stop or self.outbox is None:
            return
        limit = run.history.low + MAX_OPEN_STEPS
        for seq in sorted(run.pending):
            if seq >= limit:
                break
            pending = run.pending[seq]
            failed = run.history.attempts.get(seq)
            if (
                pending.sent
                or len(run.history) <= pending.hold
                or seq in run.history.resolved
                or (seq in run.history.timers and pending.proposal.kind == TIMER_STARTED)
                or (seq in run.history.waits and pending.proposal.kind == EVENT_WAITING)
                or (seq in run.history.children and pending.proposal.kind == CHILD_STARTED)
                or (failed is not None and failed.last >= pending.proposal.attempt)
            ):
                continue
            if self.send(checkpoint_proposal=pending.proposal):
                pending.sent = True

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
        except CancelledHere as e:  # the code ended with its cancellation
            failure = fpb.Failure(type=CANCELLED_TYPE, message=e.reason)
            result = pb.WorkflowResult(
                workflow_id=run.id,
                success=False,
                error=f"{CANCELLED_TYPE}: {e.reason}",
                failure=failure,
            )
        except StepFailed as e:  # not caught: the workflow fails with it
            result = pb.WorkflowResult(
                workflow_id=run.id, success=False, error=str(e), failure=e.failure
            )
        except StepError as e:  # the workflow's own structured error
            failure = bounded(failure_of(e), FINAL_FAILURE_BYTES)
            result = pb.WorkflowResult(
                workflow_id=run.id,
                success=False,
                error=f"{failure.type}: {failure.message}",
                failure=failure,
            )
        except Exception as e:
            result = pb.WorkflowResult(workflow_id=run.id, success=False, error=str(e))
        finally:
            if self.runs.get(run.id) is run:
                del self.runs[run.id]
            # Steps still in flight (branches of a gather one of which
            # failed) end without proposing anything more.
            run.stop = run.stop or Stop("the workflow function ended")
            run.poke()
        if result is not None:
            self.send(workflow_result=result)


# -- the contract's workflow types ------------------------------------------


async def hanging_step(w: Worker, run: Run, name: str, step: int) -> bool:
    """The last step of several types: appends `ID start STEP`, hangs
    forever under CONFORMANCE_HANG=1 (the app "dies" there), yields true."""

    async def compute() -> bool:
        effect(run.id, "start", step)
        if os.environ.get("CONFORMANCE_HANG") == "1":
            await asyncio.Event().wait()  # the app "dies" here
        return True

    result: bool = await w.checkpoint(run, name, compute)
    return result


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
        except (Cancelled, CancelledHere):
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


async def waiter(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    inp = run.input
    status = bool(inp.get("status"))
    if status:
        await w.set_status(run, "stage", "waiting")
    events = []
    for i in range(1, inp["waits"] + 1):
        events.append(await w.wait_event(run, inp["name"], inp.get("timeout_ms")))
        if status:
            await w.set_status(run, "received", i)
    if status:
        await w.set_status(run, "stage", "done")
    await hanging_step(w, run, "after", 1)
    return {"events": events}


async def awakener(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    awakeable_id, completed = w.awakeable(run)
    await w.set_status(run, "awakeable", awakeable_id)
    try:
        return {"value": await completed}
    except StepFailed as e:
        return {"rejected": {"type": e.type, "message": e.message}}


async def compensate(w: Worker, run: Run) -> Any:
    async def reserve() -> bool:
        effect(run.id, "done", 0)
        return True

    await w.checkpoint(run, "reserve", reserve)

    async def charge() -> bool:
        effect(run.id, "start", 1)
        await asyncio.Event().wait()  # only the cancellation stops it
        return True

    try:
        if (run.input or {}).get("at") == "sleep":
            await w.sleep(run, "hold", 3_600_000)
        else:
            await w.checkpoint(run, "charge", charge)
    except CancelledHere as e:
        cancel = e
    else:
        raise RuntimeError("only a cancellation ends the charge")
    await hanging_step(w, run, "refund", 2)
    if (run.input or {}).get("stubborn"):

        async def stuck() -> bool:
            effect(run.id, "start", 3)
            await asyncio.Event().wait()
            return True

        await w.checkpoint(run, "stuck", stuck)
    raise cancel


async def saga(w: Worker, run: Run) -> Any:
    async def charge(attempt: int) -> bool:
        effect(run.id, "start", 0)
        details = {"code": "insufficient_funds", "amount": 42}
        raise StepError("CardDeclined", "card declined", details, non_retryable=True)

    try:
        await w.step(run, "charge", charge)
    except StepFailed as e:
        caught = e  # compensate below
    else:
        raise RuntimeError("the charge cannot succeed")

    async def refund() -> bool:
        effect(run.id, "done", 1)
        return True

    refunded = await w.checkpoint(run, "refund", refund)
    if (run.input or {}).get("fail"):
        raise StepError("OrderFailed", "order failed after refund", {"refunded": refunded})
    await hanging_step(w, run, "finish", 2)
    return {
        "caught": {
            "type": caught.type,
            "message": caught.message,
            "details": caught.details,
            "attempts": caught.attempts,
        },
        "refunded": refunded,
    }


async def flaky(w: Worker, run: Run) -> Any:
    inp = run.input
    policy = RetryPolicy(
        initial_ms=inp["initial_ms"],
        coefficient=inp["coefficient"],
        maximum_ms=max(60_000, inp["initial_ms"]),
        maximum_attempts=inp["max_attempts"],
        jitter=0.0,
        attempt_timeout_ms=inp.get("timeout_ms"),
    )

    async def attempt(a: int) -> int:
        effect(run.id, "attempt", a)
        if a <= inp.get("hang_times", 0):
            await asyncio.Event().wait()  # until the attempt timeout stops it
        if a <= inp["fail_times"]:
            raise StepError(
                "Flaky", f"attempt {a} failed", non_retryable=bool(inp.get("non_retryable"))
            )
        return a

    try:
        attempts = await w.step(run, "flaky", attempt, policy)
    except StepFailed as e:
        if not inp.get("catch"):
            raise  # fails the workflow with the step's failure
        return {"caught": {"type": e.type, "message": e.message, "attempts": e.attempts}}
    return {"attempts": attempts}


async def fanout(w: Worker, run: Run) -> Any:
    inp = run.input
    n: int = inp["n"]
    delays: list[int] = inp.get("delays_ms") or []
    chain = bool(inp.get("chain"))

    async def branch(i: int) -> int:
        # Nothing else awaited between the steps: a branch's next position
        # follows from the release order alone.
        async def first() -> int:
            await asyncio.sleep((delays[i] if i < len(delays) else 0) / 1000)
            effect(run.id, "done", i)
            return i * i

        value: int = await w.checkpoint(run, f"branch-{i}", first)
        if not chain:
            return value

        async def second() -> int:
            effect(run.id, "done", 1000 + i)
            return value + 1

        last: int = await w.checkpoint(run, f"branch-{i}-b", second)
        return last

    # gather starts the branches in order 0..n-1, so their first steps take
    # positions 0..n-1.
    values = await asyncio.gather(*(branch(i) for i in range(n)))

    async def total() -> int:
        effect(run.id, "start", n)
        if os.environ.get("CONFORMANCE_HANG") == "1":
            await asyncio.Event().wait()  # the app "dies" here
        return sum(values)

    return {"sum": await w.checkpoint(run, "sum", total)}


NOW_STEP = "raftoral.now"  # the step the SDKs' now() commits


async def helpers(w: Worker, run: Run) -> Any:
    r = run.random.random()
    u = run.random.uuid()

    async def clock() -> int:
        return int(time.time() * 1000)

    t: int = await w.checkpoint(run, NOW_STEP, clock)
    drawn = {"random": r, "uuid": u, "now": t}

    async def record() -> Any:
        effect(run.id, "start", 0)
        return drawn

    recorded = await w.checkpoint(run, "record", record)
    after = run.random.random()

    await hanging_step(w, run, "gate", 1)
    return {"recorded": recorded, "replayed": drawn, "after": after}


async def sleeper(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    sleeps: list[int] = run.input["sleeps"]
    for i, ms in enumerate(sleeps):
        await w.sleep(run, f"nap-{i}", ms)

    await hanging_step(w, run, "after", 1)
    return {"slept": len(sleeps)}


async def racer(w: Worker, run: Run) -> Any:
    async def work() -> str:
        effect(run.id, "start", 0)
        # The step's own work, S ms (WORKERS.md): a delay the race is
        # about, inside the step (not durable), not a wait for a condition.
        await asyncio.sleep(run.input["step_ms"] / 1000)
        effect(run.id, "done", 0)
        return "worked"

    timer_seq = run.cursor
    deadline = asyncio.ensure_future(w.sleep(run, "deadline", run.input["timer_ms"]))
    step_seq = run.cursor
    working = asyncio.ensure_future(w.checkpoint(run, "work", work))
    tasks = [deadline, working]
    winner = await w.first(run, [timer_seq, step_seq])
    for i, task in enumerate(tasks):
        if i != winner:  # a loser: nobody reads its outcome
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
    out: dict[str, Any] = {"winner": "timer"}
    if winner == 1:
        out = {"winner": "step", "value": await working}
    else:
        await deadline

    await hanging_step(w, run, "after", 1)
    return out


def ignore_outcome(task: asyncio.Future[Any]) -> None:
    """A race's loser: nobody reads its outcome (nor its stop)."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def event_racer(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    inp = run.input
    name: str = inp["name"]
    timer_ms: int = inp["timer_ms"]
    if inp.get("awakeable"):
        wait_seq = run.cursor
        awakeable_id, completed = w.awakeable(run)
        await w.set_status(run, "awakeable", awakeable_id)
        waiting = asyncio.ensure_future(completed)
    else:
        wait_seq = run.cursor
        waiting = asyncio.ensure_future(w.wait_event(run, name, None))
    timer_seq = run.cursor
    deadline = asyncio.ensure_future(w.sleep(run, "race", timer_ms))
    winner = await w.first(run, [wait_seq, timer_seq])
    if winner == 0:
        ignore_outcome(deadline)
        return {"winner": "event", "value": await waiting}
    ignore_outcome(waiting)
    await deadline
    if inp.get("awakeable"):
        return {"winner": "timer"}
    return {"winner": "timer", "then": await w.wait_event(run, name, None)}


PARENT_CLOSE = {
    "cancel": fpb.PARENT_CLOSE_POLICY_CANCEL,
    "abandon": fpb.PARENT_CLOSE_POLICY_ABANDON,
    "terminate": fpb.PARENT_CLOSE_POLICY_TERMINATE,
}


async def parent(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    inp = run.input
    policy = PARENT_CLOSE.get(inp.get("policy") or "cancel", fpb.PARENT_CLOSE_POLICY_CANCEL)
    own = bool(inp.get("self"))
    children: list[Child] = []
    for _ in range(1 if own else inp["n"]):
        child = w.start_child(
            run, inp["child"], inp.get("input"), run.id if own else None, parent_close=policy
        )
        await child.started()  # one after another
        children.append(child)
    if inp.get("leave"):
        return {"children": [c.id for c in children]}
    # Every result, in start order; the first failure in start order wins.
    outcomes: list[tuple[bool, Any]] = []
    for c in children:
        try:
            outcomes.append((True, await c.result))
        except StepFailed as e:
            outcomes.append((False, e))
    results = []
    for ok, value in outcomes:
        if not ok:
            return {"failed": {"type": value.type, "message": value.message}}
        results.append(value)
    return {"results": results}


# What a refusal of the client API means for a call to another workflow:
# these fail the step for good (the Rust SDK's types); any other status is
# an attempt that failed, retried by the step's policy.
CALL_REFUSALS = {
    grpc.StatusCode.NOT_FOUND: "raftoral.WorkflowNotFound",
    grpc.StatusCode.FAILED_PRECONDITION: "raftoral.WorkflowEnded",
    grpc.StatusCode.INVALID_ARGUMENT: "raftoral.SignalRefused",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "raftoral.SignalRefused",
}


def call_failure(e: grpc.aio.AioRpcError) -> StepError:
    """A client API error of a call to another workflow as its step's
    failure."""
    code = e.code()
    message = e.details() or code.name
    refusal = CALL_REFUSALS.get(code)
    if refusal is None:
        return StepError("raftoral.Unavailable", f"{code.name}: {message}")
    return StepError(refusal, message, non_retryable=True)


def signal_workflow(
    w: Worker, run: Run, target: str, name: str, payload: Any
) -> Coroutine[Any, Any, Any]:
    """Sends the event `name` with `payload` to workflow `target`: a step
    `signal:TARGET:NAME` whose code calls SignalWorkflow with the
    idempotency key `ID/SEQ` (the step's position, taken here), so a send
    repeated by a new owner reaches the target once. Its value is the
    answer's duplicate flag."""
    key = f"{run.id}/{run.cursor}"  # the position the step takes below
    data = encode(payload)

    async def send() -> bool:
        request = ws.SignalWorkflowRequest(
            workflow_id=target, name=name, payload=data, idempotency_key=key
        )
        try:
            answer = await w.service().SignalWorkflow(request)
        except grpc.aio.AioRpcError as e:
            raise call_failure(e) from None
        return bool(answer.duplicate)

    return w.step(run, f"signal:{target}:{name}", lambda _attempt: send(), DEFAULT_POLICY)


def workflow_result(w: Worker, run: Run, target: str) -> Coroutine[Any, Any, Any]:
    """Waits for workflow `target` to end: a step `result:TARGET` whose
    code calls WaitWorkflow until the target ended and whose value is its
    result. A failed target fails the step for good with its failure (type
    `raftoral.WorkflowFailed` when it has none), a cancelled one with
    `raftoral.WorkflowCancelled`."""
    if target == run.id:
        raise RuntimeError(f"result:{target}: workflow '{target}' cannot wait for its own result")

    async def wait() -> Any:
        while True:
            request = ws.WaitWorkflowRequest(workflow_id=target)
            try:
                answer = await w.service().WaitWorkflow(request)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # not ended within the server's timeout: again
                raise call_failure(e) from None
            info = answer.workflow
            if info.status == ws.WORKFLOW_STATUS_COMPLETED:
                return json.loads(info.result) if info.result else None
            if info.status == ws.WORKFLOW_STATUS_CANCELLED:
                raise StepError(
                    "raftoral.WorkflowCancelled",
                    f"workflow '{target}' was cancelled: {info.error}",
                    non_retryable=True,
                )
            if info.status == ws.WORKFLOW_STATUS_FAILED:
                if info.HasField("failure") and info.failure.type:
                    f = info.failure
                    details = json.loads(f.details_json) if f.details_json else None
                    raise StepError(f.type, f.message, details, non_retryable=True)
                raise StepError("raftoral.WorkflowFailed", info.error, non_retryable=True)
            # Not ended (should not be answered): ask again after a while.
            await asyncio.sleep(RETRY_S)

    return w.step(run, f"result:{target}", lambda _attempt: wait(), DEFAULT_POLICY)


async def caller(w: Worker, run: Run) -> Any:
    async def before() -> bool:
        effect(run.id, "start", 0)
        return True

    await w.checkpoint(run, "before", before)
    inp = run.input
    try:
        sent = await signal_workflow(w, run, inp["target"], inp["name"], inp.get("payload"))
    except StepFailed as e:
        return {"failed": {"type": e.type}}
    result_of: Optional[str] = inp.get("result_of")
    if result_of is None:
        return {"sent": sent}
    return {"sent": sent, "result": await workflow_result(w, run, result_of)}


async def scheduled(w: Worker, run: Run) -> Any:
    async def ran() -> int:
        effect(run.id, "start", 0)
        return int(time.time() * 1000)

    return {"input": run.input, "ran_at": await w.checkpoint(run, "ran", ran)}


WORKFLOWS: dict[str, Callable[[Worker, Run], Awaitable[Any]]] = {
    "ping_pong": ping_pong,
    "steps": steps,
    "blob": blob,
    "saga": saga,  # registered only when CONFORMANCE_WORKFLOWS names it
    "flaky": flaky,  # likewise
    "fanout": fanout,  # likewise
    "helpers": helpers,  # likewise
    "sleeper": sleeper,  # likewise
    "racer": racer,  # likewise
    "scheduled": scheduled,  # likewise
    "compensate": compensate,  # likewise
    "waiter": waiter,  # likewise
    "awakener": awakener,  # likewise
    "event_racer": event_racer,  # likewise
    "parent": parent,  # likewise
    "caller": caller,  # likewise
}


async def main() -> None:
    # A bad retry policy stops the worker before it registers anything.
    bad = os.environ.get("CONFORMANCE_BAD_POLICY")
    if bad == "negative_interval":
        RetryPolicy(initial_ms=-1)
    elif bad == "zero_attempts":
        RetryPolicy(maximum_attempts=0)
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
    await worker.close()


if __name__ == "__main__":
    asyncio.run(main())
