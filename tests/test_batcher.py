"""The dynamic batcher on its own: merging, row counting, the bounded queue, deadlines, isolation.

The model is a real function of its rows (row sums), run in the batcher's real worker thread. How
executions run is in test_batcher_execution.py, admission bounded in time in test_batcher_admission.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from batching_models import GatedModel, rows

from classify_server.errors import DeadlineExceededError, OverloadedError, UnavailableError
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher


def test_queued_requests_merge_into_one_execution_counting_rows() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(64, 1000))
        batcher.start()
        model.gate.clear()
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)  # the first batch is now running (blocked on the gate)
        others = [asyncio.create_task(batcher.submit(rows(n, n))) for n in (2, 3, 4)]
        await asyncio.sleep(0.05)
        model.gate.set()
        results = await asyncio.gather(first, *others)
        assert model.batches == [1, 9]  # 2 + 3 + 4 rows merged while the first ran
        for n, result in zip((2, 3, 4), results[1:], strict=True):
            assert result.shape == (n, 1)
            np.testing.assert_allclose(result[:, 0], 3.0 * n)
        assert batcher.stats.requests == 4
        assert batcher.stats.rows == 10
        assert batcher.stats.executions == 2
        assert dict(batcher.stats.batch_sizes) == {1: 1, 9: 1}
        await batcher.close()

    asyncio.run(scenario())


def test_batch_never_exceeds_max_rows_and_oversized_request_runs_in_chunks() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(4, 1000))
        batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(batcher.submit(rows(n))) for n in (3, 3, 10)]
        await asyncio.sleep(0.05)
        model.gate.set()
        await blocker
        results = await asyncio.gather(*tasks)
        assert [len(r) for r in results] == [3, 3, 10]
        assert max(model.batches) <= 4
        assert model.batches == [1, 3, 3, 4, 4, 2]
        await batcher.close()

    asyncio.run(scenario())


def test_full_queue_rejects_instead_of_blocking() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(8, 10))
        batcher.start()
        model.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.submit(rows(8)))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="8 rows queued, capacity 10"):
            await asyncio.wait_for(batcher.submit(rows(3)), timeout=1)
        assert batcher.stats.rejected == 1
        model.gate.set()
        assert len(await queued) == 8 and len(await running) == 1
        await batcher.close()

    asyncio.run(scenario())


def test_expired_and_cancelled_requests_are_dropped_before_compute() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(64, 1000))
        batcher.start()
        model.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        now = asyncio.get_running_loop().time()
        expiring = asyncio.create_task(batcher.submit(rows(5), deadline=now + 0.01))
        abandoned = asyncio.create_task(batcher.submit(rows(7)))
        kept = asyncio.create_task(batcher.submit(rows(2), deadline=now + 60))
        await asyncio.sleep(0.05)
        abandoned.cancel()
        await asyncio.sleep(0)
        model.gate.set()
        await running
        with pytest.raises(DeadlineExceededError):
            await expiring
        assert len(await kept) == 2
        assert model.batches == [1, 2]  # neither the expired 5 nor the cancelled 7 rows were computed
        assert batcher.stats.expired == 1 and batcher.stats.cancelled == 1
        await batcher.close()

    asyncio.run(scenario())


def test_a_failing_request_does_not_fail_its_batch_mates() -> None:
    async def scenario() -> None:
        model = GatedModel(poison=-1.0)
        batcher = DynamicBatcher("m", model, BatchingPolicy(64, 1000))
        batcher.start()
        model.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        good_a = asyncio.create_task(batcher.submit(rows(2, 2.0)))
        bad = asyncio.create_task(batcher.submit(rows(1, -1.0)))
        good_b = asyncio.create_task(batcher.submit(rows(3, 5.0)))
        await asyncio.sleep(0.05)
        model.gate.set()
        await running
        np.testing.assert_allclose((await good_a)[:, 0], 6.0)
        np.testing.assert_allclose((await good_b)[:, 0], 15.0)
        with pytest.raises(ValueError, match="poisoned"):
            await bad
        await batcher.close()

    asyncio.run(scenario())


def test_close_finishes_queued_work_then_refuses_new_requests() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(64, 1000))
        batcher.start()
        model.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(2))) for _ in range(3)]
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(UnavailableError, match="shutting down"):
            await batcher.submit(rows(1))
        model.gate.set()
        await closing
        assert [len(await t) for t in tasks] == [2, 2, 2]

    asyncio.run(scenario())


def test_text_rows_batch_like_images() -> None:
    async def scenario() -> None:
        def text_model(texts: np.ndarray) -> np.ndarray:
            return np.array([[len(t)] for t in texts], dtype=np.float32)

        batcher = DynamicBatcher("t", text_model, BatchingPolicy(8, 100))
        batcher.start()
        results = await asyncio.gather(
            batcher.submit(np.array(["ab", "cde"], dtype=object)),
            batcher.submit(np.array(["x"], dtype=object)),
        )
        assert results[0][:, 0].tolist() == [2, 3] and results[1][:, 0].tolist() == [1]
        await batcher.close()

    asyncio.run(scenario())
