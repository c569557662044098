"""How the batcher runs executions: padding, queue delay, batches in flight, inline runs, statistics."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from batching_models import GatedModel, rows

from classify_server.serving.batcher import BatchingPolicy, DynamicBatcher, pad_rows


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
