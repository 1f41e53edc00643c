"""Temporal side of make bench: steps-N with one activity per step, the
worker and the load driver in this process; prints one JSON line."""

import asyncio
import json
import os
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def step(i: int) -> int:
    return i + 1


@workflow.defn
class Steps:
    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.execute_activity(
                step, i, start_to_close_timeout=timedelta(seconds=30)
            )
        return total


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def measure(client, n, runs, total):
    async def one():
        await client.execute_workflow(
            Steps.run, n, id=str(uuid.uuid4()), task_queue="bench"
        )

    for _ in range(5):
        await one()
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        await one()
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    throughput = []
    for c in (1, 64):
        count = max(1, total // 10) if c == 1 else total
        per = max(1, count // c)
        t = time.perf_counter()

        async def task():
            for _ in range(per):
                await one()

        await asyncio.gather(*(task() for _ in range(c)))
        secs = time.perf_counter() - t
        throughput.append([c, per * c / secs, per * c * n / secs])
    return {
        "workload": "ping_pong" if n == 1 else f"steps-{n}",
        "p50_ms": pct(lat, 0.5),
        "p90_ms": pct(lat, 0.9),
        "p99_ms": pct(lat, 0.99),
        "throughput": throughput,
    }


async def main():
    client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    runs = int(os.environ.get("RUNS", "50"))
    total = int(os.environ.get("WORKFLOWS", "128"))
    async with Worker(client, task_queue="bench", workflows=[Steps], activities=[step]):
        results = [await measure(client, n, runs, total) for n in (1, 10)]
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
