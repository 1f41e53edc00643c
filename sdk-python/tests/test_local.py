"""LocalNode (engine in-process), codecs, typed results, bad input."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pydantic
import pytest

import raftoral
from apps.workflows import ping_pong
from harness import eventually
from raftoral import WorkflowStatus


@dataclass
class Item:
    sku: str
    qty: int


@dataclass
class Order:
    order_id: str
    items: list[Item]
    note: Optional[str] = None


@raftoral.workflow(name="price", version=2)
async def price(ctx: raftoral.WorkflowContext, order: Order) -> Order:
    assert isinstance(order, Order) and isinstance(order.items[0], Item)

    async def double() -> list[Item]:
        return [Item(i.sku, i.qty * 2) for i in order.items]

    items = await ctx.checkpoint("double", double)
    assert isinstance(items[0], Item)
    note = await ctx.checkpoint("note", lambda: "ok", result_type=str)
    return Order(order.order_id, items, note)


async def test_local_node_runs_ping_pong() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[ping_pong]):
            handle = await node.client.start_workflow(ping_pong, "ping", id="order-42")
            assert await handle.result() == "pong"
            info = await node.client.wait_workflow("order-42", timeout=5)
            assert info.status is WorkflowStatus.COMPLETED and info.status.is_terminal
            assert [e.checkpoint_name for e in await handle.history()] == ["result"]


async def test_dataclasses_round_trip() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[price]):
            order = Order("o-1", [Item("apple", 2), Item("pear", 1)])
            handle = await node.client.start_workflow(price, order)
            result = await handle.result()
    assert result == Order("o-1", [Item("apple", 4), Item("pear", 2)], "ok")


class UpperJsonCodec:
    """A custom codec: JSON with every string upper-cased on the way in."""

    def encode(self, value: Any) -> bytes:
        if isinstance(value, str):
            value = value.upper()
        return json.dumps(value).encode()

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        return json.loads(data) if data else None


async def test_custom_codec_is_used_for_every_value() -> None:
    async with raftoral.LocalNode(codec=UpperJsonCodec()) as node:
        async with raftoral.Worker(node.client, workflows=[ping_pong]):
            handle = await node.client.start_workflow(ping_pong, "ping")
            # The input arrives as "PING", so ping_pong answers "ping",
            # which the codec stores as "PING".
            assert await handle.result() == "PING"
            [entry] = await handle.history()
            assert entry.value == b'"PING"'


async def test_checkpoint_outside_a_workflow_is_invalid() -> None:
    with pytest.raises(raftoral.InvalidArgument, match="no workflow is running"):
        await raftoral.checkpoint("x", lambda: 1)

    kept: list[raftoral.WorkflowContext] = []

    @raftoral.workflow(name="leak", version=1)
    async def leak(ctx: raftoral.WorkflowContext, _: None) -> int:
        kept.append(ctx)
        return await raftoral.checkpoint("inside", lambda: 1)

    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[leak]):
            handle = await node.client.start_workflow(leak, None)
            assert await handle.result() == 1
            with pytest.raises(raftoral.InvalidArgument, match="after workflow"):
                await kept[0].checkpoint("late", lambda: 2)
            assert len(await handle.history()) == 1


async def test_connect_to_an_address_nobody_serves_fails_naming_it() -> None:
    # A bound socket that does not listen: connections are refused, and the
    # port stays ours for the test.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(raftoral.Unavailable) as raised:
            await raftoral.Client.connect(url, attempts=3, retry_delay=0.01)
    assert raised.value.address == url
    assert url in str(raised.value)
    assert "after 3 attempts" in str(raised.value)


def test_workflow_must_be_async() -> None:
    with pytest.raises(raftoral.InvalidArgument, match="async def"):

        @raftoral.workflow(name="sync", version=1)  # type: ignore[arg-type]
        def sync(ctx: raftoral.WorkflowContext, x: int) -> int:
            return x


class Payment(pydantic.BaseModel):
    amount: int
    currency: str


@raftoral.workflow(name="pay", version=1)
async def pay(ctx: raftoral.WorkflowContext, p: Payment) -> Payment:
    assert isinstance(p, Payment)
    charged = await ctx.checkpoint(
        "charge", lambda: Payment(amount=p.amount + 1, currency=p.currency), result_type=Payment
    )
    assert isinstance(charged, Payment)
    return charged


async def test_pydantic_models_round_trip() -> None:
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[pay]):
            handle = await node.client.start_workflow(pay, Payment(amount=41, currency="EUR"))
            assert await handle.result() == Payment(amount=42, currency="EUR")
            [entry] = await handle.history()
            assert json.loads(entry.value) == {"amount": 42, "currency": "EUR"}


async def test_local_node_on_disk_resumes_after_a_restart(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    effects = tmp_path / "effects"

    @raftoral.workflow(name="durable", version=1)
    async def durable(ctx: raftoral.WorkflowContext, _: None) -> int:
        def first() -> int:
            with open(effects, "a") as f:
                f.write("first\n")
            return 1

        async def second() -> int:
            while not gate.exists():
                await asyncio.sleep(0.02)
            return 2

        return await ctx.checkpoint("first", first) + await ctx.checkpoint("second", second)

    async with raftoral.LocalNode(storage_path=tmp_path / "data") as node:
        # The second step waits for the gate: the worker cancels it on exit.
        async with raftoral.Worker(node.client, workflows=[durable], shutdown_grace=0.1):
            await node.client.start_workflow(durable, None, id="kept")
            await eventually(lambda: effects.exists(), "the first step to run")
            await eventually(lambda: _count(node.client, "kept", 1), "the first step to commit")
    gate.touch()
    async with raftoral.LocalNode(storage_path=tmp_path / "data") as node:
        async with raftoral.Worker(node.client, workflows=[durable]):
            assert await node.client.get_handle("kept").result(timeout=30) == 3
    assert effects.read_text() == "first\n"  # replayed, not run again


async def _count(client: raftoral.Client, workflow_id: str, n: int) -> bool:
    return (await client.get_workflow(workflow_id)).checkpoint_count == n


@raftoral.workflow
async def greet(ctx: raftoral.WorkflowContext, who: str) -> str:
    return await ctx.checkpoint("greeting", lambda: f"hello {who}")


async def test_the_workflow_decorator_works_without_parentheses() -> None:
    assert (greet.name, greet.version, greet.retry) == ("greet", 1, None)
    async with raftoral.LocalNode() as node:
        async with raftoral.Worker(node.client, workflows=[greet]):
            handle = await node.client.start_workflow(greet, "you")
            assert await handle.result() == "hello you"
