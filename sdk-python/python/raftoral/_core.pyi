"""Type stubs of the native module (Rust, pyo3). Internal: use ``raftoral``."""

from typing import Any, Optional, Union, final

__version__: str
__all__ = [
    "Client",
    "CommitBridge",
    "ComputeToken",
    "LocalNode",
    "RetryPolicy",
    "Run",
    "RunBridge",
    "SlotRequest",
    "Worker",
    "__version__",
    "quiesce",
]

@final
class Client:
    @staticmethod
    async def connect(
        url: str,
        attempts: int = 5,
        retry_delay: float = 0.1,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
    ) -> Client: ...
    @property
    def endpoint(self) -> str: ...
    async def start_workflow(
        self, workflow_id: str, workflow_name: str, version: int, input: bytes
    ) -> tuple[str, bool]: ...
    async def get_workflow(self, workflow_id: str) -> dict[str, Any]: ...
    async def wait_workflow(
        self, workflow_id: str, timeout: Optional[float] = None
    ) -> dict[str, Any]: ...
    async def result(self, workflow_id: str) -> bytes: ...
    async def cancel_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]: ...
    async def list_workflows(
        self,
        status: int = 0,
        workflow_name: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[dict[str, Any]], str]: ...
    async def get_workflow_history(self, workflow_id: str) -> list[dict[str, Any]]: ...

@final
class ComputeToken:
    @property
    def seq(self) -> int: ...
    @property
    def attempt(self) -> int: ...

@final
class SlotRequest:
    @property
    def seq(self) -> int: ...

@final
class RetryPolicy:
    def __new__(
        cls,
        initial_interval: float,
        backoff_coefficient: float,
        maximum_interval: float,
        maximum_attempts: Optional[int],
        jitter: float,
        non_retryable_error_types: list[str],
    ) -> RetryPolicy: ...

@final
class Run:
    @property
    def workflow_id(self) -> str: ...
    @property
    def workflow_name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def input(self) -> bytes: ...
    def request(self, name: str) -> SlotRequest: ...
    async def slot(self, req: SlotRequest) -> Union[bytes, ComputeToken]: ...
    def slot_to(self, req: SlotRequest, bridge: CommitBridge, id: int) -> None: ...
    def slot_now(self, req: SlotRequest) -> Union[bytes, ComputeToken, None]: ...
    async def commit(self, token: ComputeToken, value: bytes) -> bytes: ...
    def commit_to(
        self, token: ComputeToken, value: bytes, bridge: CommitBridge, id: int
    ) -> None: ...
    def fail_step_to(
        self,
        token: ComputeToken,
        error_type: str,
        message: str,
        details_json: str,
        non_retryable: bool,
        stack: str,
        policy: RetryPolicy,
        bridge: CommitBridge,
        id: int,
    ) -> None: ...
    def complete(self, value: bytes) -> None: ...
    def fail(self, message: str) -> None: ...
    def fail_with_step(
        self,
        seq: int,
        step: str,
        attempts: int,
        error_type: str,
        message: str,
        details_json: str,
        non_retryable: bool,
    ) -> None: ...
    def abandon(self, cancelled_reason: Optional[str] = None) -> None: ...

@final
class CommitBridge:
    def __new__(cls) -> CommitBridge: ...
    def fileno(self) -> int: ...
    def drain(self) -> list[tuple[int, bool, Union[bytes, ComputeToken, BaseException]]]: ...

@final
class RunBridge:
    def __new__(cls) -> RunBridge: ...
    def fileno(self) -> int: ...
    def drain(self) -> tuple[list[Run], bool]: ...

@final
class Worker:
    def __new__(cls, client: Client) -> Worker: ...
    async def register(self, workflow_name: str, version: int) -> None: ...
    def start(self) -> None: ...
    def forward_runs(self, bridge: RunBridge) -> None: ...
    @property
    def running(self) -> int: ...
    async def shutdown(self) -> None: ...

@final
class LocalNode:
    @staticmethod
    async def start(storage_path: Optional[str] = None) -> LocalNode: ...
    def client(self) -> Client: ...
    async def shutdown(self) -> None: ...

def quiesce(timeout: float) -> None: ...
