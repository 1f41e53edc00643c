"""Typed results of the client calls."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping


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


@dataclass(frozen=True)
class WorkflowInfo:
    """The replicated state of one workflow. ``input`` and ``result`` are
    encoded; decode them with the client's codec (``client.codec``)."""

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

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> WorkflowInfo:
        fields = dict(d)
        fields["status"] = WorkflowStatus(fields["status"])
        return cls(**fields)


@dataclass(frozen=True)
class HistoryEntry:
    """One committed checkpoint; ``value`` is encoded."""

    seq: int
    checkpoint_name: str
    value: bytes
    committed_at_ms: int

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> HistoryEntry:
        return cls(**d)
