"""The dynamic batcher on its own: merging, row counting, the bounded queue, deadlines, isolation.

The model is a real function of its rows (row sums), run in the batcher's real worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from classify_server.errors import DeadlineExceededError, OverloadedError, UnavailableError
from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher, pad_rows


class GatedModel:
    """Sums each row; blocks until released, so a test controls what queues behind a running batch."""

    def __init__(self, poison: float | None = None) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.poison = poison

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.gate.wait(timeout=10)
        self.batches.append(len(rows))
        if self.poison is not None and (rows == self.poison).any():
            raise ValueError("poisoned row")
        return rows.reshape(len(rows), -1).sum(axis=1, keepdims=True)


def rows(count: int, value: float = 1.0) -> np.ndarray:
    return np.full((count, 3), value, dtype=np.float32)


async def wait_for_batches(model: GatedModel, count: int) -> None:
    while len(model.batches) < count:
        await asyncio.sleep(0.001)


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


def test_padding_repeats_a_real_row_up_to_the_preferred_size() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    padded = pad_rows(rows, [1, 4, 8])
    assert padded.shape == (4, 2)
    np.testing.assert_array_equal(padded[3], rows[0])
    assert pad_rows(rows, [1, 3]) is rows  # already a preferred size
    assert pad_rows(rows, [1, 2]) is rows  # larger than every preferred size: run as is
    texts = pad_rows(np.array(["a", "b"], dtype=object), [8])
    assert texts.tolist() == ["a", "b"] + ["a"] * 6


def test_padded_executions_return_only_the_real_rows_and_count_padding() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(16, 100, preferred_batch_sizes=(4, 16)))
        batcher.start()
        result = await batcher.submit(rows(3, 2.0))
        assert result.shape == (3, 1)
        assert model.batches == [4]
        assert batcher.stats.rows == 3
        assert batcher.stats.executed_rows == 4
        await batcher.close()

    asyncio.run(scenario())


def test_queue_delay_waits_for_more_rows_timed_from_the_first_arrival() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = DynamicBatcher("m", model, BatchingPolicy(8, 100, max_queue_delay=0.2))
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(rows(2)))
        await asyncio.gather(first, second)
        waited = loop.time() - started
        assert model.batches == [3]  # merged: the batcher waited for the second request
        assert 0.15 <= waited < 1.0  # about the delay from the FIRST arrival, not from the second
        full = await asyncio.wait_for(batcher.submit(rows(8)), timeout=0.15)  # a full batch does not wait
        assert len(full) == 8
        await batcher.close()

    asyncio.run(scenario())


def test_batches_in_flight_run_concurrently_on_separate_threads() -> None:
    async def scenario() -> None:
        running = threading.Semaphore(0)
        release = threading.Event()

        def model(batch: np.ndarray) -> np.ndarray:
            running.release()
            release.wait(timeout=10)
            return batch[:, :1]

        batcher = DynamicBatcher("m", model, BatchingPolicy(2, 100, max_batches_in_flight=2))
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(rows(2))) for _ in range(2)]
        both_running = await asyncio.to_thread(
            lambda: running.acquire(timeout=5) and running.acquire(timeout=5)
        )
        release.set()
        await asyncio.gather(*tasks)
        assert both_running  # the second execution started before the first finished
        assert batcher.stats.executions == 2
        await batcher.close()

    asyncio.run(scenario())


def test_statistics_record_queue_and_compute_time_and_failures() -> None:
    async def scenario() -> None:
        def slow(batch: np.ndarray) -> np.ndarray:
            time.sleep(0.05)
            if (batch < 0).any():
                raise ValueError("negative")
            return batch[:, :1]

        batcher = DynamicBatcher("m", slow, BatchingPolicy(1, 100))
        batcher.start()
        results = await asyncio.gather(
            batcher.submit(rows(1)),
            batcher.submit(rows(1)),
            batcher.submit(rows(1, -1.0)),
            return_exceptions=True,
        )
        assert isinstance(results[2], ValueError)
        stats = batcher.stats
        assert stats.executions == 3
        assert stats.failed == 1
        assert stats.compute_seconds >= 0.14
        assert stats.queue_seconds >= 0.05 + 0.10 - 0.01  # the 2nd waited one execution, the 3rd two
        await batcher.close()

    asyncio.run(scenario())


def test_a_lone_small_batch_runs_on_the_loop_thread_and_busy_or_larger_ones_on_workers() -> None:
    threads: list[tuple[int, str]] = []
    gate = threading.Event()

    def model(batch: np.ndarray) -> np.ndarray:
        threads.append((len(batch), threading.current_thread().name))
        if len(batch) == 2:  # hold the worker so the next lone row finds an execution in flight
            gate.wait(timeout=10)
        return batch.sum(axis=1, keepdims=True)

    async def scenario() -> None:
        policy = BatchingPolicy(8, 100, max_batches_in_flight=2, inline_max_rows=1)
        batcher = DynamicBatcher("m", model, policy)
        batcher.start()
        assert (await batcher.submit(rows(1, 2.0))).tolist() == [[6.0]]
        held = asyncio.create_task(batcher.submit(rows(2)))
        while len(threads) < 2:
            await asyncio.sleep(0.001)
        beside = await asyncio.wait_for(batcher.submit(rows(1, 3.0)), timeout=5)
        gate.set()
        assert beside.tolist() == [[9.0]] and len(await held) == 2
        await batcher.close()

    asyncio.run(scenario())
    loop_thread = threading.main_thread().name
    assert threads[0] == (1, loop_thread)  # alone and small: no hand-off
    assert threads[1][0] == 2 and threads[1][1] != loop_thread  # two rows: a worker
    assert threads[2][0] == 1 and threads[2][1] != loop_thread  # small, but another execution runs


def test_a_small_batch_that_is_slow_to_run_moves_off_the_loop_thread() -> None:
    threads: list[str] = []

    def slow_model(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(0.02)  # a 20 ms call would stall every other model's requests if run inline
        return batch.sum(axis=1, keepdims=True)

    async def scenario() -> None:
        batcher = DynamicBatcher("m", slow_model, BatchingPolicy(8, 100, inline_max_rows=1))
        batcher.start()
        for _ in range(3):
            await batcher.submit(rows(1))
        await batcher.close()

    asyncio.run(scenario())
    loop_thread = threading.main_thread().name
    assert threads[0] == loop_thread  # nothing measured yet: tried inline once
    assert all(name != loop_thread for name in threads[1:])  # then measured too slow: workers


class PacedModel:
    """Sums each row, taking a fixed time per row: the batcher's pace estimate has a known answer."""

    def __init__(self, seconds_per_row: float) -> None:
        self.seconds_per_row = seconds_per_row
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(timeout=10)
        time.sleep(self.seconds_per_row * len(batch))
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def test_queue_bounded_in_time_refuses_what_would_wait_too_long_and_accepts_when_idle() -> None:
    async def scenario() -> None:
        model = PacedModel(0.002)  # 2 ms a row (a little more with sleep's overshoot)
        # Two full batches of 16 rows at ~2 ms a row: about 64 ms of waiting allowed.
        batcher = DynamicBatcher("m", model, BatchingPolicy(16, 10_000, max_queued_batches=2))
        batcher.start()
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
        await batcher.submit(rows(8))  # measures the pace: ~5 ms a row
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
