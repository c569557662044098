"""The batcher's queue bounded in time: requests that would wait too long or miss their deadline are refused."""

from __future__ import annotations

import asyncio
import time

import pytest
from batching_models import PacedModel, measure_cost, rows

from classify_server.errors import OverloadedError
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher


def test_queue_bounded_in_time_refuses_what_would_wait_too_long_and_accepts_when_idle() -> None:
    async def scenario() -> None:
        model = PacedModel(0.002)  # 2 ms a row (a little more with sleep's overshoot)
        # Two full batches of 16 rows at ~2 ms a row: about 64 ms of waiting allowed.
        batcher = DynamicBatcher("m", model, BatchingPolicy(16, 10_000, max_queued_batches=2))
        batcher.start()
        await measure_cost(batcher)
        # Idle: even a request that alone takes longer than the bound is served.
        await batcher.submit(rows(40))
        assert batcher.expected_wait() == 0.0
        model.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(16)))
        await asyncio.sleep(0.02)
        # 16 rows running for 20 ms (about 12 ms left): 8 rows expect about 12 ms of waiting, then 32
        # rows about 28 ms; both accepted.
        queued = [asyncio.create_task(batcher.submit(rows(n))) for n in (8, 32)]
        await asyncio.sleep(0)
        assert 0.07 < batcher.expected_wait() < 0.16  # now about 12 + 80 ms
        refusal = r"would wait about [0-9]+ ms.*of 2 full batches allowed \(--max-queued-batches\)"
        with pytest.raises(OverloadedError, match=refusal):
            await batcher.submit(rows(1))
        assert batcher.stats.rejected == 1
        model.gate.set()
        await asyncio.gather(running, *queued)
        await batcher.submit(rows(8))  # drained: accepted again
        await batcher.close()

    asyncio.run(scenario())


def test_a_request_that_would_miss_its_deadline_is_refused_on_arrival() -> None:
    async def scenario() -> None:
        model = PacedModel(0.005)
        batcher = DynamicBatcher("m", model, BatchingPolicy(64, 10_000))
        batcher.start()
        await measure_cost(batcher)  # ~5 ms a row
        model.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(40)))  # ~200 ms of work ahead
        await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        with pytest.raises(OverloadedError, match=r"queued ahead needs about [0-9]+ ms, the deadline leaves"):
            await batcher.submit(rows(2), deadline=loop.time() + 0.1)
        assert time.perf_counter() - started < 0.05  # at once, not when the deadline passes
        assert batcher.stats.rejected == 1 and batcher.stats.expired == 0
        # A deadline with room for the work ahead is accepted.
        late_enough = asyncio.create_task(batcher.submit(rows(2), deadline=loop.time() + 5))
        model.gate.set()
        await asyncio.gather(running, late_enough)
        await batcher.close()

    asyncio.run(scenario())
