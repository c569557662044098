"""Models for the batcher tests: real functions of their rows (row sums), run in the batcher's real threads."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from classify_server.serving.batcher import DynamicBatcher


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


async def measure_cost(
    batcher: DynamicBatcher, sizes: tuple[int, ...] = (1, 4, 8, 16), rounds: int = 5
) -> None:
    """Run executions of several sizes, one at a time, until the batcher's cost fit is settled: admission
    refuses on expected waits only once it is (execution_cost.SETTLED_EXECUTIONS)."""
    for _ in range(rounds):
        for size in sizes:
            await batcher.submit(rows(size))
    assert batcher.cost.settled, batcher.cost.executions
