"""The batcher's priorities and flood shedding (serving/scheduling.py), with real models in real threads.

Deterministic where order is asserted: a gated model holds one execution while the test queues
requests behind it, then records which rows each later execution carried.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from batching_models import PacedModel, measure_cost, rows

from classify_server.errors import InvalidInputError, OverloadedError
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher
from classify_server.serving.scheduling import Priority, parse_priority


class RecordingModel:
    """Sums each row and records each execution's first-column values, so a test sees the order."""

    def __init__(self) -> None:
        self.executions: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(timeout=10)
        self.executions.append(batch[:, 0].tolist())
        return batch.sum(axis=1, keepdims=True)


def numbered(start: int, count: int) -> np.ndarray:
    """``count`` rows whose first column is start, start+1, ... (row i sums to 3 * (start + i))."""
    return np.repeat(np.arange(start, start + count, dtype=np.float32)[:, None], 3, axis=1)


async def hold(model: RecordingModel, batcher: DynamicBatcher) -> asyncio.Task[np.ndarray]:
    """Start one execution and keep it running until the gate opens."""
    model.gate.clear()
    task = asyncio.create_task(batcher.submit(numbered(0, 1)))
    while not batcher._running:  # the execution has started (blocked on the gate)
        await asyncio.sleep(0.001)
    return task


def test_queued_high_priority_rows_run_before_normal_and_low_ones() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(4, 1000, inline_max_rows=0))
        batcher.start()
        first = await hold(model, batcher)
        # Queued in the worst order: low first, high last.
        low = asyncio.create_task(batcher.submit(numbered(100, 4), priority=Priority.LOW))
        normal = asyncio.create_task(batcher.submit(numbered(200, 4), priority=Priority.NORMAL))
        high = asyncio.create_task(batcher.submit(numbered(300, 4), priority=Priority.HIGH))
        await asyncio.sleep(0.02)
        model.gate.set()
        await asyncio.gather(first, low, normal, high)
        assert [execution[0] for execution in model.executions] == [0, 300, 200, 100]
        np.testing.assert_allclose(low.result()[:, 0], 3 * np.arange(100, 104))
        await batcher.close()

    asyncio.run(scenario())


def test_lower_priority_rows_run_in_slices_beside_active_higher_priority_traffic() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        policy = BatchingPolicy(64, 1000, inline_max_rows=0, background_rows=2)
        batcher = DynamicBatcher("m", model, policy)
        batcher.start()
        first = await hold(model, batcher)  # a normal request: normal traffic is now active
        job = asyncio.create_task(batcher.submit(numbered(100, 5), priority=Priority.LOW))
        online = asyncio.create_task(batcher.submit(numbered(200, 3)))
        await asyncio.sleep(0.02)
        model.gate.set()
        await asyncio.gather(first, job, online)
        # Normal rows first and whole, then at most 2 low rows an execution, in order.
        assert model.executions[1:] == [[200, 201, 202, 100, 101], [102, 103], [104]]
        # The sliced request's answer is whole and in row order.
        np.testing.assert_allclose(job.result()[:, 0], 3 * np.arange(100, 105))
        assert batcher.stats.requests == 3 and batcher.queued_rows == 0
        await batcher.close()

    asyncio.run(scenario())


def test_alone_a_low_priority_request_gets_full_batches() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        policy = BatchingPolicy(64, 1000, inline_max_rows=0, background_rows=2)
        batcher = DynamicBatcher("m", model, policy)
        batcher.start()
        result = await batcher.submit(numbered(0, 10), priority=Priority.LOW)
        assert [len(execution) for execution in model.executions] == [10]  # no higher traffic: no cap
        np.testing.assert_allclose(result[:, 0], 3 * np.arange(10))
        await batcher.close()

    asyncio.run(scenario())


def test_a_full_queue_sheds_its_newest_low_priority_request_to_admit_a_high_one() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(4, 8, inline_max_rows=0))
        batcher.start()
        first = await hold(model, batcher)
        older = asyncio.create_task(batcher.submit(numbered(100, 4), priority=Priority.LOW))
        newer = asyncio.create_task(batcher.submit(numbered(200, 4), priority=Priority.LOW))
        await asyncio.sleep(0.01)
        assert batcher.queued_rows == 8  # full
        # A high request does not fit: the newest queued request of a lower priority makes room.
        high = asyncio.create_task(batcher.submit(numbered(300, 4), priority=Priority.HIGH))
        await asyncio.sleep(0.01)
        assert newer.done()
        with pytest.raises(OverloadedError, match="lower-priority request was shed from the queue"):
            newer.result()
        # Equal priority never evicts: a low request into the full queue is refused itself.
        with pytest.raises(OverloadedError, match=r"8 rows queued, capacity 8, this request adds 1"):
            await batcher.submit(numbered(400, 1), priority=Priority.LOW)
        model.gate.set()
        await asyncio.gather(first, older, high)
        assert [execution[0] for execution in model.executions] == [0, 300, 100]
        assert batcher.stats.rejected == 2
        await batcher.close()

    asyncio.run(scenario())


def test_a_flood_is_shed_on_arrival_while_a_closed_loop_of_callers_never_is() -> None:
    async def scenario() -> None:
        model = PacedModel(0.0005)  # 0.5 ms a row: 16-row batches take ~8 ms
        policy = BatchingPolicy(16, 100_000, inline_max_rows=0, shed_floods=True)
        batcher = DynamicBatcher("m", model, policy)
        batcher.start()
        await measure_cost(batcher)

        # 32 callers each waiting for its answer before asking again: never more offered than run.
        async def caller() -> None:
            for _ in range(15):
                await batcher.submit(rows(4))

        await asyncio.gather(*(caller() for _ in range(32)))
        assert batcher.stats.rejected == 0

        # Open loop far above what the model runs: 40 rows every millisecond (or slower, as sleep
        # overshoots) against 0.5 ms a row, whatever the answers do.
        outcomes: list[asyncio.Task[np.ndarray]] = []
        for _ in range(40):
            outcomes += [asyncio.create_task(batcher.submit(rows(4))) for _ in range(10)]
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*outcomes, return_exceptions=True)
        shed = [r for r in results if isinstance(r, OverloadedError)]
        assert len(shed) > len(results) / 2, f"only {len(shed)} of {len(results)} shed"
        assert "arrive faster than it can run them (a flood)" in str(shed[0])
        assert all(isinstance(r, np.ndarray | OverloadedError) for r in results)
        await asyncio.sleep(FLOOD_WINDOW_PAUSE)  # the flood is over: normal admission again
        await batcher.submit(rows(4))
        await batcher.close()

    asyncio.run(scenario())


FLOOD_WINDOW_PAUSE = 2.0  # four time constants of the offered-rate estimate (flood.SLOW_WINDOW_FLOOR)


def test_priority_names_parse_and_a_bad_one_says_what_is_allowed() -> None:
    assert parse_priority("") is Priority.NORMAL
    assert parse_priority("HIGH") is Priority.HIGH
    assert parse_priority(" low ") is Priority.LOW
    with pytest.raises(InvalidInputError, match=r"x-classify-priority is 'urgent'; expected one of high"):
        parse_priority("urgent")
