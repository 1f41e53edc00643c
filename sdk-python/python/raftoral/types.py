"""Typed results of the client calls."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional


class WorkflowStatus(enum.IntEnum):
    """Lifecycle state of a workflow (the protocol's ``WorkflowStatus``)."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED."""
        return self in (
            WorkflowStatus.COMPLETED,
            WorkflowStatus.FAILED,
            WorkflowStatus.CANCELLED,
        )


class ParentClose(str, enum.Enum):
    """What happens to a child workflow still running when its parent ends
    (:meth:`WorkflowContext.start_child
    <raftoral.WorkflowContext.start_child>`; the protocol's
    ``ParentClosePolicy``). A plain string works where one is taken
    (``parent_close="abandon"``)."""

    CANCEL = "cancel"
    """Cancel it (the default): a child nobody waits for any more should
    stop; its code gets :class:`~raftoral.Cancelled` and may clean up for
    30 s."""
    ABANDON = "abandon"
    """Let it run to its end on its own."""
    TERMINATE = "terminate"
    """End it at once, CANCELLED, without a cleanup window."""

    @classmethod
    def _from_native(cls, policy: int) -> ParentClose:
        # 0 (unspecified) is the default, cancel.
        return {2: cls.ABANDON, 3: cls.TERMINATE}.get(policy, cls.CANCEL)


@dataclass(frozen=True)
class Failure:
    """An error raised by workflow code, structured, as every SDK reads it:
    ``type`` (the error's type name, e.g. ``"CardDeclined"``), ``message``,
    ``details`` (decoded from its JSON; ``None`` when it has none) and
    ``non_retryable``.

    :attr:`WorkflowInfo.failure` and :attr:`WorkflowFailed.failure
    <raftoral.WorkflowFailed>` of a failed workflow are one: the failure of
    a step it did not catch, or the :class:`~raftoral.ApplicationError` its
    function raised outside any step.
    """

    type: str
    message: str
    details: Any = None
    non_retryable: bool = False

    @classmethod
    def _from_json(cls, type: str, message: str, details_json: str, non_retryable: bool) -> Failure:
        details: Any = None
        if details_json:
            try:
                details = json.loads(details_json)
            except ValueError:  # not JSON (cut to its size limit): the text
                details = details_json
        return cls(type, message, details, non_retryable)

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> Failure:
        return cls._from_json(d["type"], d["message"], d["details_json"], d["non_retryable"])


@dataclass(frozen=True)
class PendingTimer:
    """A durable timer a workflow waits on: started, not fired yet
    (:attr:`WorkflowInfo.pending_timers`)."""

    seq: int
    """The timer's position in the workflow's history."""
    name: str
    """The sleep's name (``"sleep"`` unless the code named it)."""
    fire_at_ms: int
    """When it fires (log time, ms since the Unix epoch)."""


@dataclass(frozen=True)
class EventWait:
    """A position where a workflow's code waits for an event
    (:meth:`WorkflowContext.wait_event <raftoral.WorkflowContext.wait_event>`;
    :attr:`WorkflowInfo.event_waits`), or for an awakeable (the reserved
    name ``raftoral.awakeable.SEQ``, see :meth:`WorkflowContext.awakeable
    <raftoral.WorkflowContext.awakeable>`)."""

    seq: int
    """The wait's position in the workflow's history."""
    name: str
    """The event name it waits for."""
    timeout_at_ms: int
    """When the wait times out (log time, ms since the Unix epoch); 0: never."""


@dataclass(frozen=True)
class WorkflowInfo:
    """The replicated state of one workflow. ``input`` and ``result`` are
    encoded; decode them with the client's codec (``client.codec``).

    ``error`` is the error text of a FAILED workflow; ``failure`` its error
    structured (:class:`Failure`) when it has one: a step failure the
    workflow did not catch, or the :class:`~raftoral.ApplicationError` its
    function raised; ``None`` otherwise (another exception: only ``error``).

    ``pending_timers`` are its durable sleeps started and not fired yet,
    earliest first (:class:`PendingTimer`; running and pending workflows
    only). ``start_at_ms`` is when a delayed start not due yet starts it
    (``start_workflow(..., start_delay=...)``; 0 otherwise), and
    ``timeout_at_ms`` when it times out, with an ``execution_timeout`` (0
    otherwise); both in log time, ms since the Unix epoch, as
    ``created_at_ms``.

    ``cancel_reason`` and ``cancel_deadline_ms`` are set while a RUNNING
    workflow's cancel request runs (``cancel_workflow(..., cleanup=...)``):
    the reason given, and when its cleanup window ends (log time, ms since
    the Unix epoch); the workflow is CANCELLED then if its code has not
    ended. ``""`` and 0 otherwise.

    ``inbox_size`` counts the events sent to it and not consumed yet
    (:meth:`Client.signal_workflow <raftoral.Client.signal_workflow>`);
    ``event_waits`` are the waits of its code not resolved yet, earliest
    first (:class:`EventWait`).

    A child workflow (:meth:`WorkflowContext.start_child
    <raftoral.WorkflowContext.start_child>`) has its parent's id in
    ``parent_id``, its position in the parent in ``parent_seq`` and its
    :class:`ParentClose` policy in ``parent_close`` (``""``, 0 and ``None``
    for a workflow that is no child); ``open_children`` are the ids of the
    children a workflow started that have not ended.
    """

    workflow_id: str
    workflow_name: str
    version: int
    status: WorkflowStatus
    owner_node_id: int
    checkpoint_count: int
    input: bytes
    result: bytes
    error: str
    pending_reason: str
    created_at_ms: int
    updated_at_ms: int
    failure: Optional[Failure] = None
    pending_timers: tuple[PendingTimer, ...] = ()
    start_at_ms: int = 0
    timeout_at_ms: int = 0
    cancel_reason: str = ""
    cancel_deadline_ms: int = 0
    inbox_size: int = 0
    event_waits: tuple[EventWait, ...] = ()
    parent_id: str = ""
    parent_seq: int = 0
    parent_close: Optional[ParentClose] = None
    open_children: tuple[str, ...] = ()

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> WorkflowInfo:
        fields = dict(d)
        fields["parent_close"] = (
            ParentClose._from_native(fields["parent_close"]) if fields["parent_id"] else None
        )
        fields["open_children"] = tuple(fields["open_children"])
        fields["status"] = WorkflowStatus(fields["status"])
        failure = fields.get("failure")
        fields["failure"] = None if failure is None else Failure._from_native(failure)
        fields["pending_timers"] = tuple(PendingTimer(*t) for t in fields["pending_timers"])
        fields["event_waits"] = tuple(EventWait(*w) for w in fields["event_waits"])
        return cls(**fields)


@dataclass(frozen=True)
class SignalResult:
    """What :meth:`Client.signal_workflow <raftoral.Client.signal_workflow>`
    did: ``duplicate`` is True when an event with the same idempotency key
    was delivered to the workflow before (this one was not delivered
    again); ``workflow`` is the workflow's state once the event was
    committed (its ``inbox_size`` and ``event_waits`` included)."""

    duplicate: bool
    workflow: WorkflowInfo

    @property
    def delivered(self) -> bool:
        """True when this call delivered the event (not a duplicate)."""
        return not self.duplicate


@dataclass(frozen=True)
class SignalWithStartResult:
    """What :meth:`Client.signal_with_start
    <raftoral.Client.signal_with_start>` did: ``started`` is True when this
    call started the workflow (False: it existed, and kept its input and
    options); ``duplicate`` is True when an event with the same idempotency
    key was delivered to it before (this one was not delivered again);
    ``workflow`` is the workflow's state once the entry was committed."""

    started: bool
    duplicate: bool
    workflow: WorkflowInfo

    @property
    def delivered(self) -> bool:
        """True when this call delivered the event (not a duplicate)."""
        return not self.duplicate


HistoryEntryKind = Literal[
    "VALUE",
    "STEP_FAILED",
    "STEP_ATTEMPT_FAILED",
    "TIMER_STARTED",
    "TIMER_FIRED",
    "TIMER_CANCELLED",
    "EVENT_WAITING",
    "EVENT_RECEIVED",
    "EVENT_TIMED_OUT",
    "STATUS_SET",
    "EVENT_WAIT_CANCELLED",
    "CHILD_STARTED",
    "CHILD_COMPLETED",
    "CHILD_FAILED",
]
"""What a :class:`HistoryEntry` records."""


@dataclass(frozen=True)
class HistoryEntry:
    """One committed entry of a workflow's history; ``value`` is encoded.

    ``kind`` (:data:`HistoryEntryKind`) says what it records: ``"VALUE"``
    (a step's value), ``"STEP_FAILED"``, ``"STEP_ATTEMPT_FAILED"``,
    ``"TIMER_STARTED"`` (a durable sleep began; ``fire_at_ms`` is its
    deadline, log time in ms since the Unix epoch), ``"TIMER_FIRED"`` (the
    sleep ended) or ``"TIMER_CANCELLED"`` (the sleep lost a race,
    :meth:`WorkflowContext.first <raftoral.WorkflowContext.first>`, and
    never fires), ``"EVENT_WAITING"`` (the code waits for the event
    ``checkpoint_name``; ``fire_at_ms`` is its timeout, 0: none),
    ``"EVENT_RECEIVED"`` (an event was consumed there: ``value`` is its
    payload) or ``"EVENT_TIMED_OUT"`` (the timeout passed first; see
    :meth:`WorkflowContext.wait_event
    <raftoral.WorkflowContext.wait_event>`) or ``"STATUS_SET"`` (the code
    set its status ``checkpoint_name`` to ``value``, see
    :meth:`WorkflowContext.set_status
    <raftoral.WorkflowContext.set_status>`) or ``"EVENT_WAIT_CANCELLED"``
    (the wait for the event ``checkpoint_name`` lost a race,
    :meth:`WorkflowContext.first <raftoral.WorkflowContext.first>`: it
    ends an open wait; after an ``"EVENT_RECEIVED"`` its ``value`` is the
    payload given back, which goes to the next wait of that name) or
    ``"CHILD_STARTED"`` (the code started a child workflow of the type
    ``checkpoint_name``: ``value`` is the child's id, UTF-8, see
    :meth:`WorkflowContext.start_child
    <raftoral.WorkflowContext.start_child>`), then ``"CHILD_COMPLETED"``
    (``value`` is the child's result) or ``"CHILD_FAILED"`` (the child
    failed, was cancelled or timed out).
    ``fire_at_ms`` is the timer's
    (or the wait's timeout) deadline on those entries, 0 on the others.

    An awakeable (:meth:`WorkflowContext.awakeable
    <raftoral.WorkflowContext.awakeable>`) at position SEQ is a wait for the
    reserved event ``raftoral.awakeable.SEQ``: ``"EVENT_WAITING"``, then
    ``"EVENT_RECEIVED"`` with the value it was resolved with (empty when it
    was rejected).
    """

    seq: int
    checkpoint_name: str
    value: bytes
    committed_at_ms: int
    kind: HistoryEntryKind = "VALUE"
    fire_at_ms: int = 0

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> HistoryEntry:
        return cls(**d)
