"""The client: start workflows, query them, send them events, complete
their awakeables, read their status."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, AsyncIterator, Generic, Optional, Sequence, TypeVar, Union, overload

from . import _core
from .codec import Codec, JsonCodec
from .errors import InvalidArgument, Timeout
from .types import (
    HistoryEntry,
    SignalResult,
    SignalWithStartResult,
    WorkflowInfo,
    WorkflowStatus,
)
from .workflow import Workflow

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class Client:
    """A connection to a Raftoral sidecar (or to a :class:`~raftoral.LocalNode`).

    >>> async def main() -> None:  # doctest: +SKIP
    ...     client = await raftoral.Client.connect("http://127.0.0.1:9001")
    ...     handle = await client.start_workflow(ping_pong, "ping", id="order-42")
    ...     print(await handle.result())
    """

    def __init__(self, native: _core.Client, codec: Optional[Codec] = None) -> None:
        self._native = native
        self.codec: Codec = codec if codec is not None else JsonCodec()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        codec: Optional[Codec] = None,
        attempts: int = 5,
        retry_delay: float = 0.1,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
    ) -> Client:
        """Connects to the sidecar at ``url`` (e.g. ``http://127.0.0.1:9001``).

        Tries ``attempts`` times, doubling the pause from ``retry_delay``
        seconds, then raises :class:`~raftoral.Unavailable` naming the address.
        ``token`` is sent with every call, for a sidecar started with
        ``RAFTORAL_APP_TOKEN`` (without it such a sidecar answers
        :class:`~raftoral.Unauthenticated`-coded errors); ``tls_ca`` is the PEM
        file of the CA that signed the sidecar's certificate, for an
        ``https://`` URL.
        """
        native = await _core.Client.connect(url, attempts, retry_delay, token, tls_ca)
        return cls(native, codec)

    @property
    def endpoint(self) -> str:
        """The sidecar address."""
        return self._native.endpoint

    @overload
    async def start_workflow(
        self,
        workflow: Workflow[I, O],
        input: I,
        *,
        id: Optional[str] = None,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> WorkflowHandle[O]: ...

    @overload
    async def start_workflow(
        self,
        workflow: str,
        input: Any,
        *,
        id: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> WorkflowHandle[Any]: ...

    async def start_workflow(
        self,
        workflow: Union[Workflow[Any, Any], str],
        input: Any,
        *,
        id: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> WorkflowHandle[Any]:
        """Starts ``workflow`` (a definition, or a name with ``version``).

        Idempotent on ``id``: starting an existing id returns a handle to the
        existing workflow (``handle.already_started``; the options below are
        then those it was started with). Without an id, one is generated and
        the start is retried while the cluster has no leader.

        ``start_delay`` (seconds, or a :class:`~datetime.timedelta`) starts
        it that long after the start is committed: it stays PENDING until
        then (``WorkflowInfo.start_at_ms`` says when), and the cluster
        places it on a worker, whoever took the request. ``execution_timeout``
        fails it if it has not finished that long after it started (after
        the delay): FAILED, with the failure type ``raftoral.WorkflowTimeout``
        (``WorkflowInfo.timeout_at_ms`` says when); its function is stopped
        as for a cancellation. Both to the millisecond, at most 366 days;
        a negative delay, a timeout of 0 or less, or a longer one raises
        :class:`~raftoral.InvalidArgument` and starts nothing::

            handle = await client.start_workflow(
                send_reminder, user, start_delay=timedelta(hours=24)
            )
        """
        if isinstance(workflow, Workflow):
            name, version, result_type = workflow.name, workflow.version, workflow.result_type
        else:
            name, result_type = workflow, None
        delay = _seconds(name, "start_delay", start_delay)
        timeout = _seconds(name, "execution_timeout", execution_timeout)
        try:
            data = self.codec.encode(input)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"the input of workflow '{name}' cannot be encoded: {e}; nothing was started"
            ) from e
        workflow_id, already = await self._native.start_workflow(
            id or "", name, version, data, delay or 0.0, timeout
        )
        return WorkflowHandle(self, workflow_id, already, result_type)

    @overload
    async def execute_workflow(
        self,
        workflow: Workflow[I, O],
        input: I,
        *,
        id: Optional[str] = None,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
        timeout: Optional[float] = None,
    ) -> O: ...

    @overload
    async def execute_workflow(
        self,
        workflow: str,
        input: Any,
        *,
        id: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
        result_type: Any = None,
        timeout: Optional[float] = None,
    ) -> Any: ...

    async def execute_workflow(
        self,
        workflow: Union[Workflow[Any, Any], str],
        input: Any,
        *,
        id: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
        result_type: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Starts ``workflow`` and waits for its result: a
        :meth:`start_workflow` (same arguments: ``id`` for idempotency,
        ``version``, ``start_delay``, ``execution_timeout``) then
        :meth:`WorkflowHandle.result`, whose value it returns, decoded
        into ``result_type`` (for a definition, its return annotation
        unless ``result_type`` is given)::

            receipt = await client.execute_workflow(checkout, order, id="order-42", timeout=60)
            total = await client.execute_workflow("billing", order, result_type=int)

        Idempotent on ``id`` as :meth:`start_workflow` is: a second call
        with the same id waits for the same workflow (a retry after a lost
        answer does not start it twice). ``timeout`` (seconds; None: as long
        as it takes) bounds the wait for the result, not the workflow: it
        raises :class:`~raftoral.Timeout` and the workflow runs on
        (``execution_timeout`` bounds the workflow itself).

        Raises what :meth:`start_workflow` raises, then what
        :meth:`WorkflowHandle.result` raises: :class:`~raftoral.WorkflowFailed`,
        :class:`~raftoral.Cancelled`, :class:`~raftoral.Timeout`.
        """
        if isinstance(workflow, Workflow):
            handle = await self.start_workflow(
                workflow,
                input,
                id=id,
                start_delay=start_delay,
                execution_timeout=execution_timeout,
            )
        else:
            handle = await self.start_workflow(
                workflow,
                input,
                id=id,
                version=version,
                start_delay=start_delay,
                execution_timeout=execution_timeout,
            )
        if result_type is not None:
            handle._result_type = result_type
        return await handle.result(timeout=timeout)

    def get_handle(self, workflow_id: str, result_type: Any = None) -> WorkflowHandle[Any]:
        """A handle to an existing workflow, to wait for its result."""
        return WorkflowHandle(self, workflow_id, True, result_type)

    async def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow's current state; raises :class:`~raftoral.NotFound`."""
        return WorkflowInfo._from_native(await self._native.get_workflow(workflow_id))

    async def wait_workflow(
        self, workflow_id: str, timeout: Optional[float] = None
    ) -> WorkflowInfo:
        """Waits up to ``timeout`` seconds (None: as long as it takes) for the
        workflow to finish and returns its state; raises
        :class:`~raftoral.Timeout` when it is still running."""
        return WorkflowInfo._from_native(await self._native.wait_workflow(workflow_id, timeout))

    async def cancel_workflow(
        self,
        workflow_id: str,
        reason: str = "",
        cleanup: Union[float, timedelta, None] = None,
    ) -> WorkflowInfo:
        """Cancels the workflow and returns its state after the cancel. A
        finished workflow is left as it is; a pending one is CANCELLED at
        once.

        A running one gets a cancel *request*: it stays RUNNING (the
        returned ``cancel_reason`` and ``cancel_deadline_ms`` say so) while
        its function gets :class:`~raftoral.Cancelled` at the step or sleep
        it awaits (a running step's attempt is stopped), or at the next one
        it takes. The function may catch it and run compensation steps for
        up to ``cleanup`` (seconds, or a :class:`~datetime.timedelta`; None:
        the sidecar's default, 30 s unless configured; 0: no cleanup, the
        workflow is CANCELLED at once). It ends CANCELLED when the function
        raises the :class:`~raftoral.Cancelled` again (COMPLETED or FAILED
        when it returns a value or raises another error), or when the window
        runs out, whatever the function is doing then (its error says "the
        cleanup window ran out"). Wait for the end with
        :meth:`WorkflowHandle.result`, which raises
        :class:`~raftoral.Cancelled`::

            @raftoral.workflow(name="order", version=1)
            async def order(ctx: raftoral.WorkflowContext, order_id: str) -> str:
                await ctx.checkpoint("reserve", lambda: reserve(order_id))
                try:
                    return await ctx.checkpoint("charge", lambda: charge(order_id))
                except raftoral.Cancelled:
                    await ctx.checkpoint("refund", lambda: refund(order_id))
                    await ctx.checkpoint("release", lambda: release(order_id))
                    raise  # the workflow ends CANCELLED


            await client.cancel_workflow("order-42", "customer asked", cleanup=60)
            try:
                await client.get_handle("order-42").result()
            except raftoral.Cancelled as e:
                print("cancelled:", e.reason)  # "customer asked"

        A negative ``cleanup`` raises :class:`~raftoral.InvalidArgument`
        (nothing is cancelled), and so does one beyond 366 days (from the
        sidecar). A second cancel keeps the first's earlier deadline; a
        second one with ``cleanup=0`` cancels at once.
        """
        window = _cleanup_seconds(workflow_id, cleanup)
        return WorkflowInfo._from_native(
            await self._native.cancel_workflow(workflow_id, reason, window)
        )

    async def signal_workflow(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> SignalResult:
        """Sends the event ``name`` with ``payload`` (encoded with
        :attr:`codec`) to a running or pending workflow, whose code waits for
        it with :meth:`WorkflowContext.wait_event
        <raftoral.WorkflowContext.wait_event>`. Returns once the event is
        committed: consumed by the earliest open wait of that name, or kept
        in the workflow's durable inbox (events of a name are consumed first
        in, first out) for a wait to come, whatever node took the call and
        whether or not a worker is connected::

            await client.signal_workflow("order-42", "approval", {"by": "ana"},
                                         idempotency_key="approval-order-42")

        With ``idempotency_key`` (at most 256 bytes), an event whose key was
        delivered to this workflow before is not delivered again: the call
        succeeds and the returned :class:`~raftoral.SignalResult` says
        ``duplicate`` (``delivered`` is False). Its ``workflow`` is the
        workflow's state once the event was committed.

        Raises :class:`~raftoral.NotFound` for an unknown workflow,
        :class:`~raftoral.NotRunning` for one that has ended,
        :class:`~raftoral.InvalidArgument` for an empty or too long name (1
        to 256 bytes) or key, a payload that cannot be encoded or is over
        the sidecar's value limit (``--max-value-bytes``), and
        :class:`~raftoral.ResourceExhausted` when the workflow's inbox is
        full. Nothing is delivered then.
        """
        try:
            data = self.codec.encode(payload)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"the payload of event '{name}' for workflow '{workflow_id}' cannot be "
                f"encoded: {e}; nothing was sent"
            ) from e
        duplicate, info = await self._native.signal_workflow(
            workflow_id, name, data, idempotency_key
        )
        return SignalResult(duplicate, WorkflowInfo._from_native(info))

    @overload
    async def signal_with_start(
        self,
        workflow: Workflow[I, Any],
        input: I,
        *,
        id: str,
        event: str,
        payload: Any = None,
        key: Optional[str] = None,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> SignalWithStartResult: ...

    @overload
    async def signal_with_start(
        self,
        workflow: str,
        input: Any,
        *,
        id: str,
        event: str,
        payload: Any = None,
        key: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> SignalWithStartResult: ...

    async def signal_with_start(
        self,
        workflow: Union[Workflow[Any, Any], str],
        input: Any,
        *,
        id: str,
        event: str,
        payload: Any = None,
        key: Optional[str] = None,
        version: int = 1,
        start_delay: Union[float, timedelta, None] = None,
        execution_timeout: Union[float, timedelta, None] = None,
    ) -> SignalWithStartResult:
        """Starts ``workflow`` (a definition, or a name with ``version``)
        with ``input`` as the workflow ``id`` unless a workflow of that id
        exists, and sends it the event ``event`` with ``payload``, in one
        committed entry: there is no moment where the workflow was started
        and the event lost, or the event refused and the workflow started.
        Concurrent calls for one id start one workflow and deliver every
        event. A cart that exists from its first item::

            result = await client.signal_with_start(
                cart, CartInput(user="ana"), id="cart-ana", event="add_item",
                payload={"sku": "book-1"}, key="add-book-1",
            )
            if result.started:
                print("new cart")

        and its code waits for the items with :meth:`WorkflowContext.wait_event
        <raftoral.WorkflowContext.wait_event>`. A workflow that exists keeps
        its input and options (those given here are used only to start it);
        the returned :class:`~raftoral.SignalWithStartResult` says whether
        this call ``started`` it, whether the event was a ``duplicate`` (with
        ``key``, an idempotency key as :meth:`signal_workflow`'s), and the
        ``workflow``'s state once committed. ``input`` and ``payload`` are
        encoded with :attr:`codec`; ``start_delay`` and ``execution_timeout``
        are :meth:`start_workflow`'s (a delayed workflow keeps the event in
        its inbox until it starts).

        ``id`` is required: the event needs a known target, and a retry of
        the call must find the workflow it started. Raises
        :class:`~raftoral.InvalidArgument` for a missing or empty id, an
        input or payload that cannot be encoded (or a payload over the
        value limit), a bad event name or key, or a bad start option;
        :class:`~raftoral.NotRunning` when the workflow has ended (an id is
        not reused while the workflow is retained);
        :class:`~raftoral.ResourceExhausted` when its inbox is full. Nothing
        is started or sent then.
        """
        if isinstance(workflow, Workflow):
            name, version = workflow.name, workflow.version
        else:
            name = workflow
        delay = _seconds(name, "start_delay", start_delay)
        timeout = _seconds(name, "execution_timeout", execution_timeout)
        try:
            data = self.codec.encode(input)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"the input of workflow '{name}' cannot be encoded: {e}; nothing was started "
                "or sent"
            ) from e
        try:
            event_data = self.codec.encode(payload)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"the payload of event '{event}' for workflow '{id}' cannot be encoded: {e}; "
                "nothing was started or sent"
            ) from e
        started, duplicate, info = await self._native.signal_with_start(
            id or "", name, version, data, event, event_data, key, delay or 0.0, timeout
        )
        return SignalWithStartResult(started, duplicate, WorkflowInfo._from_native(info))

    async def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> WorkflowInfo:
        """Resolves the awakeable ``awakeable_id`` (the
        :attr:`Awakeable.id <raftoral.Awakeable.id>` a workflow's code got
        from :meth:`WorkflowContext.awakeable
        <raftoral.WorkflowContext.awakeable>`, or any SDK's, passed
        unchanged) with ``value``, encoded with :attr:`codec`: the code's
        ``await`` on it returns the value. A payment provider's webhook,
        say::

            async def on_payment_callback(callback_id: str, amount: int) -> None:
                try:
                    await client.resolve_awakeable(callback_id, Receipt(amount=amount))
                except raftoral.AlreadyCompleted:
                    pass  # a retried callback: completed the first time

        Returns the workflow's state once the completion is committed,
        through any node, also while the workflow's owner is down; one that
        comes before the code waits is kept until it does. Once: a second
        completion (resolve or reject) raises
        :class:`~raftoral.AlreadyCompleted` and changes nothing.

        Raises :class:`~raftoral.InvalidArgument` for an id that is not an
        awakeable id or a value that cannot be encoded (or is over the
        sidecar's value limit), :class:`~raftoral.NotFound` for an unknown
        workflow, :class:`~raftoral.NotRunning` for one that has ended (the
        awakeable was not completed before). Nothing is completed then.
        """
        try:
            data = self.codec.encode(value)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"the value for awakeable '{awakeable_id}' cannot be encoded: {e}; nothing "
                "was completed"
            ) from e
        info = await self._native.complete_awakeable(awakeable_id, data)
        return WorkflowInfo._from_native(info)

    async def reject_awakeable(
        self, awakeable_id: str, message: str, type: str = "Rejected"
    ) -> WorkflowInfo:
        """Rejects the awakeable ``awakeable_id`` (see
        :meth:`resolve_awakeable`): the code's ``await`` on it raises
        :class:`~raftoral.StepFailed` with ``type`` (1 to 256 bytes) and
        ``message`` as its ``type`` and ``error_message``, which the code
        can catch as a step's failure::

            await client.reject_awakeable(callback_id, "card declined", type="Declined")

            # in the workflow:
            try:
                receipt = await paid
            except raftoral.StepFailed as e:
                assert (e.type, e.error_message) == ("Declined", "card declined")

        Returns the workflow's state once committed. Once, as
        :meth:`resolve_awakeable`: a second completion raises
        :class:`~raftoral.AlreadyCompleted`. Raises what
        :meth:`resolve_awakeable` raises, and
        :class:`~raftoral.InvalidArgument` for an empty or too long type.
        """
        info = await self._native.complete_awakeable(awakeable_id, b"", (type, message))
        return WorkflowInfo._from_native(info)

    async def get_status(
        self, workflow_id: str, keys: Optional[Sequence[str]] = None
    ) -> dict[str, Any]:
        """The status values the workflow's code set
        (:meth:`WorkflowContext.set_status <raftoral.WorkflowContext.set_status>`,
        or any SDK's): the latest value of each key, decoded with
        :attr:`codec`, by key. With ``keys``, only those (an empty sequence:
        none); a key the code has not set is absent::

            status = await client.get_status("order-42")
            print(status.get("stage"))  # "shipping"
            received = (await client.get_status("order-42", ["received"])).get("received", 0)

        Read from the replicated history, so any node answers, also while
        the workflow's owner is down and after it ended (until retention
        removes it). Raises :class:`~raftoral.NotFound` for an unknown
        workflow, :class:`~raftoral.InvalidArgument` for a bad key.
        """
        if isinstance(keys, str):
            raise InvalidArgument(
                f"get_status of workflow '{workflow_id}': keys is a sequence of key names, "
                f"got the str {keys!r}; pass [{keys!r}]"
            )
        wanted = None if keys is None else list(keys)
        # An empty list would be "every key" on the wire: ask for every key
        # (the workflow must exist) and return none.
        values, _ = await self._native.get_status(workflow_id, wanted or None)
        if wanted is not None and not wanted:
            return {}
        return {key: self.codec.decode(value) for key, value, _, _ in values}

    async def workflows(
        self,
        *,
        status: Optional[WorkflowStatus] = None,
        workflow_name: Optional[str] = None,
        sleeping: bool = False,
        parent_id: Optional[str] = None,
        page_size: int = 100,
    ) -> AsyncIterator[WorkflowInfo]:
        """Every workflow matching the filters, ordered by id, as an async
        iterator that fetches a page of ``page_size`` when it needs the
        next one (so it holds one page at a time, and a ``break`` fetches
        no more)::

            async for info in client.workflows(status=raftoral.WorkflowStatus.FAILED):
                print(info.workflow_id, info.error)

        The filters: ``status``; ``workflow_name`` (the workflow type);
        ``sleeping``, only those waiting on a durable timer (running or
        pending, with a sleep started and not fired: see
        ``WorkflowInfo.pending_timers``); ``parent_id``, only the child
        workflows that workflow started (see
        :meth:`WorkflowContext.start_child
        <raftoral.WorkflowContext.start_child>`), ended ones included.
        Each page is read when it is asked for: a workflow started or
        ended meanwhile may or may not be listed. Raises
        :class:`~raftoral.InvalidArgument` for a ``page_size`` below 1 (when
        the first item is asked for) and for a bad filter.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise InvalidArgument(
                f"page_size is a number of workflows of at least 1, got {page_size!r}"
            )
        token = ""
        while True:
            page, token = await self._native.list_workflows(
                int(status or 0), workflow_name or "", page_size, token, sleeping, parent_id or ""
            )
            for d in page:
                yield WorkflowInfo._from_native(d)
            if not token:
                return

    async def list_workflows(
        self,
        *,
        status: Optional[WorkflowStatus] = None,
        workflow_name: Optional[str] = None,
        page_size: int = 100,
        sleeping: bool = False,
        parent_id: Optional[str] = None,
    ) -> list[WorkflowInfo]:
        """Every workflow matching the filters, ordered by id (all pages
        read, in a list): :meth:`workflows` collected, with the same
        filters::

            children = await client.list_workflows(parent_id="order-42")
        """
        return [
            info
            async for info in self.workflows(
                status=status,
                workflow_name=workflow_name,
                sleeping=sleeping,
                parent_id=parent_id,
                page_size=page_size,
            )
        ]

    async def get_workflow_history(self, workflow_id: str) -> list[HistoryEntry]:
        """The committed history entries of the workflow, in commit order
        (steps run side by side may commit out of seq order)."""
        entries = await self._native.get_workflow_history(workflow_id)
        return [HistoryEntry._from_native(d) for d in entries]


def _seconds(name: str, what: str, value: Union[float, timedelta, None]) -> Optional[float]:
    """A start option in seconds (None: not given); the native side checks
    the range."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InvalidArgument(
        f"{what} of workflow '{name}' is a number of seconds or a datetime.timedelta, "
        f"got {type(value).__name__}; nothing was started"
    )


def _cleanup_seconds(workflow_id: str, value: Union[float, timedelta, None]) -> Optional[float]:
    """A cancel's cleanup window in seconds (None: the sidecar's default);
    the native side refuses a negative one."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InvalidArgument(
        f"the cleanup window of the cancel of workflow '{workflow_id}' is a number of "
        f"seconds or a datetime.timedelta, got {type(value).__name__}; nothing was cancelled"
    )


class WorkflowHandle(Generic[O]):
    """A started workflow."""

    def __init__(
        self, client: Client, workflow_id: str, already_started: bool, result_type: Any
    ) -> None:
        self._client = client
        self.workflow_id = workflow_id
        """The workflow id."""
        self.already_started = already_started
        """True when the start found an existing workflow with this id."""
        self._result_type = result_type

    async def result(self, timeout: Optional[float] = None) -> O:
        """Waits for the outcome and decodes the result.

        Raises :class:`~raftoral.WorkflowFailed`, :class:`~raftoral.Cancelled`,
        or :class:`~raftoral.Timeout` when ``timeout`` seconds pass first.
        """
        wait = self._client._native.result(self.workflow_id)
        if timeout is None:
            data = await wait
        else:
            try:
                data = await asyncio.wait_for(wait, timeout)
            except asyncio.TimeoutError:
                raise Timeout(
                    f"workflow '{self.workflow_id}' did not finish within {timeout} s"
                ) from None
        result: O = self._client.codec.decode(data, self._result_type)
        return result

    async def get(self) -> WorkflowInfo:
        """The workflow's current state."""
        return await self._client.get_workflow(self.workflow_id)

    async def wait(self, timeout: Optional[float] = None) -> WorkflowInfo:
        """See :meth:`Client.wait_workflow`."""
        return await self._client.wait_workflow(self.workflow_id, timeout)

    async def cancel(
        self, reason: str = "", cleanup: Union[float, timedelta, None] = None
    ) -> WorkflowInfo:
        """See :meth:`Client.cancel_workflow`."""
        return await self._client.cancel_workflow(self.workflow_id, reason, cleanup)

    async def signal(
        self, name: str, payload: Any = None, idempotency_key: Optional[str] = None
    ) -> SignalResult:
        """Sends the event ``name`` to this workflow: see
        :meth:`Client.signal_workflow`."""
        return await self._client.signal_workflow(
            self.workflow_id, name, payload, idempotency_key=idempotency_key
        )

    async def get_status(self, keys: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """This workflow's status values: see :meth:`Client.get_status`."""
        return await self._client.get_status(self.workflow_id, keys)

    async def history(self) -> list[HistoryEntry]:
        """See :meth:`Client.get_workflow_history`."""
        return await self._client.get_workflow_history(self.workflow_id)
