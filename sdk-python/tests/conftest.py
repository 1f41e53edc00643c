"""Fixtures: sidecar processes, an effects file, a unique workflow id."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Effects, Node, single_node


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[Node]:
    """One `raftoral serve` node (in memory), killed after the test."""
    node = single_node(tmp_path / "sidecar")
    yield node
    node.kill()


@pytest.fixture
def effects(tmp_path: Path) -> Effects:
    return Effects(tmp_path / "effects.txt")


@pytest.fixture
def wf_id() -> str:
    return f"wf-{uuid.uuid4().hex[:12]}"
