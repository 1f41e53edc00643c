"""``LocalNode``: a Raftoral node inside this process."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Optional, Union

from . import _core
from .client import Client
from .codec import Codec


class LocalNode:
    """An in-process single-node cluster (the engine is linked into the
    extension), to run and test workflows without a sidecar.

    In memory by default. With ``storage_path``, the Raft log and snapshots
    are kept (fsynced) in that directory, and a node started again on it
    resumes every running workflow by replay.

    >>> async with raftoral.LocalNode() as node:  # doctest: +SKIP
    ...     async with raftoral.Worker(node.client, workflows=[ping_pong]):
    ...         handle = await node.client.start_workflow(ping_pong, "ping")
    ...         assert await handle.result() == "pong"
    """

    def __init__(
        self,
        *,
        storage_path: Optional[Union[str, os.PathLike[str]]] = None,
        codec: Optional[Codec] = None,
    ) -> None:
        self._storage_path = None if storage_path is None else os.fspath(storage_path)
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
        self._native = await _core.LocalNode.start(self._storage_path)
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
