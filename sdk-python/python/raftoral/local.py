"""``LocalNode``: a Raftoral node inside this process."""

from __future__ import annotations

from types import TracebackType
from typing import Optional

from . import _core
from .client import Client
from .codec import Codec


class LocalNode:
    """An in-process, in-memory single-node cluster (the engine is linked into
    the extension), to run and test workflows without a sidecar.

    >>> async with raftoral.LocalNode() as node:  # doctest: +SKIP
    ...     async with raftoral.Worker(node.client, workflows=[ping_pong]):
    ...         handle = await node.client.start_workflow(ping_pong, "ping")
    ...         assert await handle.result() == "pong"
    """

    def __init__(self, *, codec: Optional[Codec] = None) -> None:
        self._codec = codec
        self._native: Optional[_core.LocalNode] = None
        self._client: Optional[Client] = None

    @property
    def client(self) -> Client:
        """A client connected to this node in-process."""
        if self._client is None:
            raise RuntimeError("the LocalNode is not started: use `async with LocalNode()`")
        return self._client

    async def start(self) -> None:
        """Starts the node."""
        self._native = await _core.LocalNode.start()
        self._client = Client(self._native.client(), self._codec)

    async def shutdown(self) -> None:
        """Stops the node (and a worker on its client)."""
        native, self._native = self._native, None
        if native is not None:
            await native.shutdown()

    async def __aenter__(self) -> LocalNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.shutdown()
