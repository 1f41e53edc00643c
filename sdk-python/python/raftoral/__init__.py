"""Raftoral: durable workflows replicated by Raft, for asyncio.

A thin binding of the Rust SDK core: the stream, reconnects, heartbeats,
replay, ownership changes, retries, cancellation and non-determinism checks
run in native code; this package is the Python API surface.

>>> import raftoral
>>> @raftoral.workflow(name="ping_pong", version=1)
... async def ping_pong(ctx: raftoral.WorkflowContext, text: str) -> str:
...     return await ctx.checkpoint("result", lambda: "pong" if text == "ping" else "ping")
"""

import atexit as _atexit

from ._core import __version__
from ._core import quiesce as _quiesce
from .client import Client, WorkflowHandle
from .codec import Codec, JsonCodec
from .errors import (
    AlreadyCompleted,
    ApplicationError,
    Cancelled,
    InvalidArgument,
    NonDeterminism,
    NonRetryableError,
    NotFound,
    NotRunning,
    RaftoralError,
    Rejected,
    ResourceExhausted,
    ShuttingDown,
    StepFailed,
    Timeout,
    Unauthenticated,
    Unavailable,
    WorkflowFailed,
)
from .local import LocalNode
from .retry import RetryPolicy
from .types import (
    EventWait,
    Failure,
    HistoryEntry,
    HistoryEntryKind,
    ParentClose,
    PendingTimer,
    SignalResult,
    SignalWithStartResult,
    WorkflowInfo,
    WorkflowStatus,
)
from .worker import Worker
from .workflow import (
    Awakeable,
    ChildHandle,
    Durable,
    EventStream,
    Workflow,
    WorkflowContext,
    checkpoint,
    current_context,
    step_attempt,
    workflow,
)

__all__ = [
    "AlreadyCompleted",
    "ApplicationError",
    "Awakeable",
    "Cancelled",
    "ChildHandle",
    "Client",
    "Codec",
    "Durable",
    "EventStream",
    "EventWait",
    "Failure",
    "HistoryEntry",
    "HistoryEntryKind",
    "InvalidArgument",
    "JsonCodec",
    "LocalNode",
    "NonDeterminism",
    "NonRetryableError",
    "NotFound",
    "NotRunning",
    "ParentClose",
    "PendingTimer",
    "RaftoralError",
    "Rejected",
    "ResourceExhausted",
    "RetryPolicy",
    "ShuttingDown",
    "SignalResult",
    "SignalWithStartResult",
    "StepFailed",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "Workflow",
    "WorkflowContext",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowStatus",
    "__version__",
    "checkpoint",
    "current_context",
    "step_attempt",
    "workflow",
]

# Let the native core hand its last results to asyncio before the interpreter
# finalizes (a native thread caught mid-call would abort the process).
_atexit.register(_quiesce, 1.0)
