"""The batcher's execution-cost fit and flood detector, fed known executions and arrival patterns."""

from __future__ import annotations

import pytest

from classify_server.serving.execution_cost import SETTLED_EXECUTIONS, ExecutionCost
from classify_server.serving.flood import FloodDetector

FIXED, PER_ROW = 0.0015, 0.0002  # the shape measured on the quick CNN: 1.5 ms a call, 0.2 ms a row
BATCH = 128


def line(rows: int) -> float:
    return FIXED + PER_ROW * rows


def test_mixed_sizes_recover_the_fixed_and_per_row_cost() -> None:
    cost = ExecutionCost()
    for i in range(200):
        rows = (1, 3, 8, 20, 64, 128)[i % 6]
        cost.observe(rows, line(rows) * (1.05 if (i // 6) % 2 else 0.95))  # ±5%, alike for every size
    assert cost.fixed == pytest.approx(FIXED, rel=0.1)
    assert cost.per_row == pytest.approx(PER_ROW, rel=0.05)
    # The per-row average of small executions would overstate a full batch several times over.
    assert cost.seconds_for(BATCH) == pytest.approx(line(BATCH), rel=0.05)
    assert cost.rows_per_second(BATCH) == pytest.approx(BATCH / line(BATCH), rel=0.05)


def test_one_size_seen_is_exact_at_that_size_and_never_overstates_another() -> None:
    cost = ExecutionCost()
    for _ in range(30):
        cost.observe(1, line(1))
    assert cost.seconds_for(1) == pytest.approx(line(1))
    assert cost.seconds_for(BATCH) <= line(BATCH)  # unknown slope: on the side of admitting


def test_queue_time_counts_full_batches_then_the_rest() -> None:
    cost = ExecutionCost()
    for i in range(40):
        rows = (1, 128)[i % 2]
        cost.observe(rows, line(rows))
    assert cost.queue_seconds(0, BATCH) == 0.0
    assert cost.queue_seconds(300, BATCH) == pytest.approx(2 * line(128) + line(44), rel=0.01)


def test_the_fit_is_trusted_only_after_enough_executions() -> None:
    cost = ExecutionCost()
    for _ in range(SETTLED_EXECUTIONS - 1):
        cost.observe(8, line(8))
    assert not cost.settled
    cost.observe(8, line(8))
    assert cost.settled


def arrivals(
    detector: FloodDetector, start: float, seconds: float, rows_per_second: float, rows: int
) -> list[bool]:
    """Arrivals of ``rows`` rows, evenly spaced; whether each was judged a flood."""
    count = int(seconds * rows_per_second / rows)
    gap = rows / rows_per_second
    return [detector.offer(rows, start + i * gap, BATCH, line(BATCH)) for i in range(count)]


CAPACITY = BATCH / line(BATCH)  # rows per second at full batches


def test_a_closed_loop_burst_of_many_full_batches_is_not_a_flood() -> None:
    detector = FloodDetector()
    # 48 callers with 128 rows each, all at once, then as fast as the model answers.
    burst = [detector.offer(BATCH, 1.0 + i * 1e-5, BATCH, line(BATCH)) for i in range(48)]
    steady = arrivals(detector, 1.01, 3.0, CAPACITY, BATCH)
    assert not any(burst) and not any(steady)


def test_a_tenfold_flood_is_seen_within_ten_batch_times() -> None:
    detector = FloodDetector()
    judged = arrivals(detector, 1.0, 1.0, 10 * CAPACITY, BATCH)
    first = judged.index(True)
    seconds = first * BATCH / (10 * CAPACITY)
    assert seconds < 10 * line(BATCH), seconds


def test_a_slow_flood_is_seen_once_sustained_and_ends_when_the_rate_falls() -> None:
    detector = FloodDetector()
    judged = arrivals(detector, 1.0, 2.0, 2.5 * CAPACITY, BATCH)  # reaches the batcher at 2.5x
    assert not judged[0] and judged[-1]
    # Arrivals at half the capacity: the flood ends within a few long windows.
    after = arrivals(detector, 3.0, 5.0, 0.5 * CAPACITY, BATCH)
    assert after[-1] is False
