"""Per-model dynamic batching: merge queued requests into one model execution.

Greedy by design (measured on this machine kind, see DESIGN.md): while one batch runs, new requests
queue; when it finishes, everything queued (up to ``max_batch_size`` rows) becomes the next batch. No
timer waits for stragglers. Rows count, not requests, both for the batch size and for the bounded queue,
which rejects instead of blocking when full. Requests whose deadline has passed, or whose caller went
away, are dropped before compute. If a merged batch fails, its requests are re-run one by one so a bad
request cannot fail its batch mates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import DeadlineExceededError, OverloadedError, UnavailableError

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], np.ndarray]


@dataclass
class BatcherStats:
    """What batching achieved: compare ``requests`` with ``executions`` to see whether it batches."""

    requests: int = 0
    rows: int = 0
    executions: int = 0
    expired: int = 0
    cancelled: int = 0
    rejected: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)


@dataclass(eq=False)
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # on the event loop's clock


class DynamicBatcher:
    """Queue rows for one model and run them in merged batches on a dedicated worker thread."""

    def __init__(self, name: str, run: RunBatch, *, max_batch_size: int, queue_capacity_rows: int) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.queue_capacity_rows = queue_capacity_rows
        self.stats = BatcherStats()
        self._run = run
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{self.name}")

    async def submit(self, rows: np.ndarray, deadline: float | None = None) -> np.ndarray:
        """Queue ``rows`` and wait for their outputs, row for row."""
        if self._closing:
            raise UnavailableError(f"model {self.name!r} is shutting down; retry on another replica")
        if self._queued_rows + len(rows) > self.queue_capacity_rows:
            self.stats.rejected += 1
            raise OverloadedError(
                f"model {self.name!r} is overloaded: {self._queued_rows} rows queued, capacity "
                f"{self.queue_capacity_rows}, this request adds {len(rows)}; retry with backoff"
            )
        pending = _Pending(rows, asyncio.get_running_loop().create_future(), deadline)
        self._queue.append(pending)
        self._queued_rows += len(rows)
        self.stats.requests += 1
        self.stats.rows += len(rows)
        self._wakeup.set()
        # A caller that goes away cancels this await, which cancels the future: _take then skips it.
        return await pending.future

    async def close(self) -> None:
        """Finish everything queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take()
            if batch:
                await self._execute(batch)

    def _take(self) -> list[_Pending]:
        """Pop queued requests up to max_batch_size rows; a larger single request goes alone."""
        now = asyncio.get_running_loop().time()
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if batch and rows + len(head.rows) > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= len(head.rows)
            if head.future.done():
                self.stats.cancelled += 1
            elif head.deadline is not None and head.deadline <= now:
                self.stats.expired += 1
                head.future.set_exception(
                    DeadlineExceededError(f"deadline passed while queued for model {self.name!r}")
                )
            else:
                batch.append(head)
                rows += len(head.rows)
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_in_chunks, inputs)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning(
                "batch of %d requests failed for %s (%s); re-running one by one", len(batch), self.name, exc
            )
            for pending in batch:
                await self._execute([pending])
            return
        self._scatter(batch, outputs)

    def _run_in_chunks(self, inputs: np.ndarray) -> np.ndarray:
        if len(inputs) <= self.max_batch_size:
            self._count_execution(len(inputs))
            return self._run(inputs)
        parts = []
        for start in range(0, len(inputs), self.max_batch_size):
            chunk = inputs[start : start + self.max_batch_size]
            self._count_execution(len(chunk))
            parts.append(self._run(chunk))
        return np.concatenate(parts)

    def _count_execution(self, size: int) -> None:
        self.stats.executions += 1
        self.stats.batch_sizes[size] += 1

    @staticmethod
    def _scatter(batch: list[_Pending], outputs: np.ndarray) -> None:
        start = 0
        for pending in batch:
            stop = start + len(pending.rows)
            _settle(pending, outputs[start:stop])
            start = stop


def _settle(pending: _Pending, outcome: np.ndarray | BaseException) -> None:
    """Deliver a result unless the caller has already gone away."""
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
