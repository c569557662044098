"""Per-model dynamic batching: merge queued requests into one model execution.

Greedy by default (measured on this machine kind: waiting for more rows only added latency): while a
batch runs, new requests queue; when it finishes, everything queued (up to ``max_batch_size`` rows)
becomes the next batch. An optional queue delay waits for more rows, timed from the first queued
request's arrival (not from when the batcher wakes). Rows count, not requests, both for the batch size
and for the bounded queue, which rejects instead of blocking when full.

The batcher measures seconds per row; scheduling.py orders the queue by priority and refuses arrivals
by expected wait. Requests whose deadline passed, or whose caller went away, are dropped before compute.
If a merged batch fails, its requests are re-run one by one so a bad request cannot fail its batch mates.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from classify_server import tracing
from classify_server.errors import DeadlineExceededError, OverloadedError, UnavailableError
from classify_server.serving import flood
from classify_server.serving.execution_cost import ExecutionCost
from classify_server.serving.scheduling import (
    Priority,
    PriorityQueue,
    capacity_refusal,
    eviction_notice,
    flood_notice,
    wait_refusal,
)
from classify_server.serving.scheduling import Queued as _Pending

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BatchingPolicy:
    max_batch_size: int
    queue_capacity_rows: int
    # Seconds to wait for more rows after the first arrival; 0 runs whatever is queued at once.
    max_queue_delay: float = 0.0
    # Executions are padded up to the smallest of these that fits (fixed shapes for XLA); empty: no padding.
    preferred_batch_sizes: tuple[int, ...] = ()
    # Executions of this model that may run at the same time (each on its own worker thread).
    max_batches_in_flight: int = 1
    # An execution of at most this many rows, when no other execution of the model is running, runs on
    # the event loop's thread: the hand-off to a worker thread and back costs ~0.1 ms of CPU and up to
    # 0.4 ms of latency, which dominates a lone small request. 0: always use the worker threads.
    inline_max_rows: int = 0
    # Full-batch executions (max_batch_size rows at the measured seconds per row) a request may expect
    # to wait for before its own starts; one expected to wait longer is refused. 0: no bound but the rows'.
    max_queued_batches: float = 0.0
    # Seconds a request may expect to wait before its execution starts (--max-queue-ms); 0: no bound.
    max_queue_time: float = 0.0
    # Refuse all but requests about to start while rows arrive faster than the model runs them
    # (flood.py): what keeps accepted calls fast under an open-loop flood.
    shed_floods: bool = False
    # Rows of lower priorities an execution may carry while a higher one is active; 0: no cap.
    background_rows: int = 0


# An inline execution blocks the event loop, so every model's requests (and health checks) wait for it:
# small batches run inline only while their last execution took at most this long.
INLINE_BUDGET_SECONDS = 0.002

# Upper bounds (seconds) of the queue-time and compute-time histograms exported as metrics.
TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _time_counts() -> list[int]:
    return [0] * (len(TIME_BUCKETS) + 1)  # the last slot counts values above every bound


@dataclass
class BatcherStats:
    """What batching achieved: compare ``requests`` with ``executions`` to see whether it batches."""

    requests: int = 0
    rows: int = 0
    executions: int = 0
    executed_rows: int = 0
    expired: int = 0  # dropped before compute: the deadline passed while queued
    cancelled: int = 0
    # Shed on arrival (the queue was full in rows, or its expected wait too long: scheduling.py), or
    # evicted from the queue to admit a higher priority.
    rejected: int = 0
    failed: int = 0
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    queue_time_counts: list[int] = field(default_factory=_time_counts)
    compute_time_counts: list[int] = field(default_factory=_time_counts)


class DynamicBatcher:
    """Queue rows for one model and run them in merged batches on worker threads."""

    def __init__(self, name: str, run: RunBatch, policy: BatchingPolicy) -> None:
        self.name = name
        self.policy = policy
        self.stats = BatcherStats()
        self._stats_lock = threading.Lock()  # worker threads update compute figures concurrently
        self._run = run
        self._preferred = sorted(set(policy.preferred_batch_sizes))
        self._executor = ThreadPoolExecutor(
            max_workers=policy.max_batches_in_flight, thread_name_prefix=f"model-{name}"
        )
        self._slots = asyncio.Semaphore(policy.max_batches_in_flight)
        self._queue = PriorityQueue()
        self._flood = flood.FloodDetector()
        # Seconds the last execution of at most inline_max_rows rows took, wherever it ran.
        self._small_batch_seconds = 0.0
        # What an execution costs (fixed + per row, learnt from the executions run), and the executions
        # running now: their rows and when they started (perf_counter).
        self.cost = ExecutionCost()
        self._running: dict[int, tuple[int, float]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executions: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return self._queue.rows

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{self.name}")

    def expected_wait(self, priority: Priority = Priority.LOW) -> float:
        """Seconds a request of ``priority`` arriving now would wait before its execution starts: the
        rows queued at its priority or above, run in full batches at the measured cost, plus what is left
        of the running executions (0 until the model has run once). The default counts every queued row."""
        cost = self.cost
        now = time.perf_counter()
        running = sum(
            max(0.0, cost.seconds_for(rows) - (now - started)) for rows, started in self._running.values()
        )
        queued = cost.queue_seconds(self._queue.rows_at_or_above(priority), self.policy.max_batch_size)
        return (queued + running) / self.policy.max_batches_in_flight

    async def submit(
        self, rows: np.ndarray, deadline: float | None = None, priority: Priority = Priority.NORMAL
    ) -> np.ndarray:
        """Queue ``rows`` and wait for their outputs, row for row."""
        if self._closing:
            raise UnavailableError(f"model {self.name!r} is shutting down; retry on another replica")
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._admit(len(rows), deadline, priority, now)
        pending = _Pending(rows, loop.create_future(), deadline, now, priority)
        self._queue.push(pending, now)
        self.stats.requests += 1
        self.stats.rows += len(rows)
        self._wakeup.set()
        # A caller that goes away cancels this await, which cancels the future: _take then skips it.
        try:
            last = await pending.future
        except BaseException:
            for part in pending.parts:  # slices already running: nobody wants their answers
                part.cancel()
            raise
        if not pending.parts:
            return last
        return np.concatenate([*[await part for part in pending.parts], last])

    def _admit(self, rows: int, deadline: float | None, priority: Priority, now: float) -> None:
        """Refuse a request the queue cannot take: too many rows, too long a wait, or a deadline it
        would miss. Refusing on arrival is cheap; queueing it would only delay everyone behind it."""
        policy = self.policy
        # Every arrival counts as offered, the ones refused below too: a flood held at the row bound
        # is still a flood.
        flooding = False
        if policy.shed_floods and self.cost.settled:
            flooding = self._flood.offer(
                rows,
                now,
                policy.max_batch_size * policy.max_batches_in_flight,
                self.cost.seconds_for(policy.max_batch_size),
            )
            if flooding:  # what the flood queued before it was recognised would only run late
                allowed = flood.QUEUED_BATCHES * policy.max_batch_size * policy.max_batches_in_flight
                self._shed(self._queue.trim_to(int(allowed)), flood_notice(self.name))
        if self._queue.rows + rows > policy.queue_capacity_rows:
            # Room for a higher priority is made by shedding the newest requests of lower ones.
            evicted = self._queue.evict_below(priority, self._queue.rows + rows - policy.queue_capacity_rows)
            if not evicted:
                self.stats.rejected += 1
                raise OverloadedError(capacity_refusal(self.name, self._queue.rows, policy, rows))
            self._shed(evicted, eviction_notice(self.name))
        if not (policy.max_queued_batches or policy.max_queue_time or flooding) and deadline is None:
            return  # no time bound applies: spare the request path the wait estimate
        if not self.cost.settled:
            return  # too few executions measured to refuse anyone on a wait estimate
        refusal = wait_refusal(
            self.name,
            self.expected_wait(priority),
            batch_seconds=self.cost.seconds_for(policy.max_batch_size),
            max_queued_batches=policy.max_queued_batches,
            max_queue_time=policy.max_queue_time,
            flooding=flooding,
            deadline_left=None if deadline is None else deadline - now,
        )
        if refusal is not None:
            self.stats.rejected += 1
            raise OverloadedError(refusal)

    def _shed(self, victims: list[_Pending], message: str) -> None:
        self.stats.rejected += len(victims)
        for victim in victims:
            _settle(victim, OverloadedError(message))

    async def close(self) -> None:
        """Finish everything queued and running, then stop the workers."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    break
                await self._wait_for_arrival()
                continue
            await self._slots.acquire()
            await self._wait_to_fill()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            if self._runs_inline(batch):
                try:
                    await self._execute(batch, inline=True)
                finally:
                    self._slots.release()
                continue
            execution = asyncio.get_running_loop().create_task(self._execute(batch))
            self._executions.add(execution)
            execution.add_done_callback(self._execution_done)
        if self._executions:
            await asyncio.gather(*self._executions)

    def _execution_done(self, task: asyncio.Task[None]) -> None:
        self._executions.discard(task)
        self._slots.release()

    async def _wait_for_arrival(self, timeout: float | None = None) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _wait_to_fill(self) -> None:
        """With a queue delay, wait until a full batch is queued or the oldest request waited long enough."""
        if self.policy.max_queue_delay <= 0:
            return
        loop = asyncio.get_running_loop()
        while self._queue and self._queue.rows < self.policy.max_batch_size and not self._closing:
            oldest = self._queue.oldest_arrival()
            if oldest is None:
                return
            remaining = oldest + self.policy.max_queue_delay - loop.time()
            if remaining <= 0:
                return
            await self._wait_for_arrival(remaining)

    def _take(self) -> list[_Pending]:
        """The next execution's requests, in the queue's order (scheduling.py)."""
        loop = asyncio.get_running_loop()
        batch, dropped, waits = self._queue.take(
            loop.time(), self.policy.max_batch_size, self.policy.background_rows, loop.create_future
        )
        for head in dropped:
            self._drop(head)
        for waited in waits:
            self.stats.queue_seconds += waited
            self.stats.queue_time_counts[bisect.bisect_left(TIME_BUCKETS, waited)] += 1
        return batch

    def _drop(self, head: _Pending) -> None:
        """A queued request that will not run: its caller went away, or its deadline passed."""
        if head.future.done():
            self.stats.cancelled += 1
            return
        self.stats.expired += 1
        _settle(head, DeadlineExceededError(f"deadline passed while queued for model {self.name!r}"))

    def _runs_inline(self, batch: list[_Pending]) -> bool:
        rows = sum(len(pending.rows) for pending in batch)
        return (
            rows <= self.policy.inline_max_rows
            and not self._executions
            and self._small_batch_seconds <= INLINE_BUDGET_SECONDS
        )

    async def _execute(self, batch: list[_Pending], inline: bool = False) -> None:
        # Tracing's hook (tracing.py): one span per execution, linked to each request of the batch.
        span = tracing.start_execution(self.name, batch, inline) if tracing.state.enabled else None
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        key = id(batch)
        self._running[key] = (len(inputs), time.perf_counter())
        try:
            if inline:
                outputs = self._run_in_chunks(inputs)
            else:
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, self._run_in_chunks, inputs)
        except Exception as exc:
            del self._running[key]
            if span is not None:
                tracing.end_execution(span, exc)
            await self._after_failure(batch, exc, inline)
            return
        del self._running[key]
        if span is not None:
            tracing.end_execution(span)
        self._scatter(batch, outputs)

    async def _after_failure(self, batch: list[_Pending], exc: Exception, inline: bool) -> None:
        """A lone request gets its error; a merged batch is re-run one by one so only the bad one fails."""
        if len(batch) == 1:
            self.stats.failed += 1
            _settle(batch[0], exc)
            return
        log.warning(
            "batch of %d requests failed for %s (%s); re-running one by one", len(batch), self.name, exc
        )
        for pending in batch:
            await self._execute([pending], inline)

    def _run_in_chunks(self, inputs: np.ndarray) -> np.ndarray:
        """Runs on a worker thread: one execution per max_batch_size rows, each padded if configured."""
        size = self.policy.max_batch_size
        if len(inputs) <= size:
            return self._run_padded(inputs)
        return np.concatenate([self._run_padded(inputs[i : i + size]) for i in range(0, len(inputs), size)])

    def _run_padded(self, rows: np.ndarray) -> np.ndarray:
        padded = pad_rows(rows, self._preferred)
        started = time.perf_counter()
        try:
            outputs = self._run(padded)
        finally:  # a failed execution still ran and took time
            elapsed = time.perf_counter() - started
            if len(rows) <= self.policy.inline_max_rows:
                self._small_batch_seconds = elapsed  # one float store: safe from a worker thread
            self.cost.observe(len(padded), elapsed)
            with self._stats_lock:
                self.stats.compute_seconds += elapsed
                self.stats.compute_time_counts[bisect.bisect_left(TIME_BUCKETS, elapsed)] += 1
                self.stats.executions += 1
                self.stats.executed_rows += len(padded)
                self.stats.batch_sizes[len(padded)] += 1
        return outputs[: len(rows)]

    @staticmethod
    def _scatter(batch: list[_Pending], outputs: np.ndarray) -> None:
        start = 0
        for pending in batch:
            stop = start + len(pending.rows)
            _settle(pending, outputs[start:stop])
            start = stop


def pad_rows(rows: np.ndarray, preferred: Sequence[int]) -> np.ndarray:
    """Repeat the first row up to the smallest preferred size that holds ``rows``; unchanged if none does.

    Repeating a real row keeps the padding a valid input for any model (a blank text would not be).
    """
    index = bisect.bisect_left(preferred, len(rows))
    if index == len(preferred) or preferred[index] == len(rows):
        return rows
    filler = np.repeat(rows[:1], preferred[index] - len(rows), axis=0)
    return np.concatenate([rows, filler])


def _settle(pending: _Pending, outcome: np.ndarray | BaseException) -> None:
    """Deliver a result unless the caller has already gone away."""
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
