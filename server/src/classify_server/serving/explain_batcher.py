"""Explain work for one model, in short executions on a thread of its own beside Classify's batches.

An explain item costs many rows of model work (integrated gradients: steps + 2), so one request of 32
images at 32 steps is over a thousand rows. Taking turns on the model's execution slot, every Classify
batch would wait for an explain execution of tens of milliseconds (measured: batch-1 p50 3.8 -> 47 ms).
So explain runs on its own worker thread, one execution at a time per model, concurrently with Classify's
executions: TensorFlow interleaves the two on its thread pools and they share the cores, each getting
about half when both are busy (batch-1 p50 3.5 -> 6.6 ms), and neither waits for the other's queue.

Each execution is bounded twice: at most ``max_rows`` rows of work (the model's --max-batch-size) and,
once this method's cost per item has been measured, at most ``slice_seconds`` of expected time
(--explain-slice-ms; one item is the smallest unit, so a costly item takes longer; an unmeasured method
starts with one item). Items of different callers with the same method and steps share an execution up
to those bounds, FIFO, so a small request is not held behind a large one's whole work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from classify_server.errors import DeadlineExceededError, OverloadedError, UnavailableError
from classify_server.serving.explain_runner import ExplainOutput, ExplainRunner, rows_per_item


@dataclass(eq=False)
class _Job:
    """One caller's request: its pieces fill ``parts`` in order; the future gets them joined."""

    future: asyncio.Future[ExplainOutput]
    deadline: float | None
    parts: dict[int, ExplainOutput] = field(default_factory=dict)
    pieces: int = 0


@dataclass(eq=False)
class _Piece:
    """One item of a job (execution sizes change as costs are measured, so items are merged at take)."""

    job: _Job
    index: int
    inputs: np.ndarray
    targets: np.ndarray
    key: tuple[str, int]  # (method, steps): only pieces of one key share an execution


@dataclass
class ExplainStats:
    requests: int = 0
    items: int = 0
    executions: int = 0
    rejected: int = 0
    expired: int = 0
    compute_seconds: float = 0.0


# Weight of the newest execution in the seconds-per-item estimate of one (method, steps).
COST_SMOOTHING = 0.3


class ExplainBatcher:
    def __init__(
        self,
        name: str,
        runner: ExplainRunner,
        max_rows: int,
        capacity_rows: int,
        slice_seconds: float = 0.0,
    ) -> None:
        self.name = name
        self.runner = runner
        self.stats = ExplainStats()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"explain-{name}")
        self._max_rows = max_rows
        self._slice_seconds = slice_seconds  # 0: bounded by rows only
        self._seconds_per_item: dict[tuple[str, int], float] = {}
        # Queued work in rows (items times their cost), bounded like Classify's queue.
        self._capacity_rows = capacity_rows
        self._queued_rows = 0
        self._queue: deque[_Piece] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, nothing running
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def items_per_execution(self, method: str, steps: int) -> int:
        """Items one execution takes: within max_rows of work and, once measured, the time slice; an
        unmeasured method starts with one item, so the first execution is short too."""
        by_rows = max(1, self._max_rows // rows_per_item(method, steps))
        if not self._slice_seconds:
            return by_rows
        cost = self._seconds_per_item.get((method, steps))
        if cost is None:
            return 1
        return max(1, min(by_rows, int(self._slice_seconds / cost)))

    def _measured(self, key: tuple[str, int], items: int, seconds: float) -> None:
        per_item = seconds / items
        known = self._seconds_per_item.get(key)
        self._seconds_per_item[key] = (
            per_item if known is None else known + COST_SMOOTHING * (per_item - known)
        )

    async def submit(
        self, method: str, steps: int, inputs: np.ndarray, targets: np.ndarray, deadline: float | None
    ) -> ExplainOutput:
        if self._closing:
            raise UnavailableError(f"model {self.name!r} is shutting down; retry on another replica")
        cost = rows_per_item(method, steps)
        # A request alone may exceed the bound (it runs in bounded executions all the same); behind
        # queued work, it must fit.
        if self._queued_rows and self._queued_rows + cost * len(inputs) > self._capacity_rows:
            self.stats.rejected += 1
            raise OverloadedError(
                f"model {self.name!r} has {self._queued_rows} rows of explain work queued, capacity "
                f"{self._capacity_rows}; this request adds {cost * len(inputs)} "
                f"({len(inputs)} items x {cost}); retry with backoff or fewer items or steps"
            )
        self._start()
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), deadline)
        for index in range(len(inputs)):
            piece = _Piece(job, index, inputs[index : index + 1], targets[index : index + 1], (method, steps))
            self._queue.append(piece)
        job.pieces = len(inputs)
        self._queued_rows += cost * len(inputs)
        self.stats.requests += 1
        self.stats.items += len(inputs)
        self._idle.clear()
        self._wakeup.set()
        return await job.future

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"explain-{self.name}")

    async def close(self) -> None:
        """Finish what is queued and running (as the Classify batcher does), then stop."""
        self._closing = True
        await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            pieces = self._take()
            if pieces:
                await self._execute(pieces)

    def _take(self) -> list[_Piece]:
        """The head piece and the queued pieces of the same key that fit beside it."""
        now = asyncio.get_running_loop().time()
        head = self._queue[0]
        method, steps = head.key
        room = self.items_per_execution(method, steps)
        taken: list[_Piece] = []
        for piece in list(self._queue):
            if len(taken) == room:
                break
            if piece.key != head.key:
                continue
            self._queue.remove(piece)
            self._queued_rows -= rows_per_item(method, steps) * len(piece.inputs)
            if piece.job.future.done():
                continue  # the caller went away, or an earlier piece failed
            if piece.job.deadline is not None and piece.job.deadline <= now:
                self.stats.expired += 1
                _fail(
                    piece.job, DeadlineExceededError(f"deadline passed while queued to explain {self.name!r}")
                )
                continue
            taken.append(piece)
        return taken

    async def _execute(self, pieces: list[_Piece]) -> None:
        method, steps = pieces[0].key
        inputs = np.concatenate([piece.inputs for piece in pieces])
        targets = np.concatenate([piece.targets for piece in pieces])
        seconds = 0.0

        def timed_run() -> ExplainOutput:
            # Timed on the worker thread: the hand-off to it is not the method's cost.
            nonlocal seconds
            started = time.perf_counter()
            try:
                return self.runner.run(method, inputs, targets, steps)
            finally:
                seconds = time.perf_counter() - started

        try:
            output = await asyncio.get_running_loop().run_in_executor(self._executor, timed_run)
        except Exception as exc:  # a failed execution fails its callers, never the scheduler
            for piece in pieces:
                _fail(piece.job, exc)
            return
        self._measured(pieces[0].key, len(inputs), seconds)
        self.stats.executions += 1
        self.stats.compute_seconds += seconds
        start = 0
        for piece in pieces:
            stop = start + len(piece.inputs)
            _deliver(piece, output.rows(start, stop))
            start = stop


def _deliver(piece: _Piece, output: ExplainOutput) -> None:
    job = piece.job
    if job.future.done():
        return
    job.parts[piece.index] = output
    if len(job.parts) == job.pieces:
        job.future.set_result(ExplainOutput.concatenate([job.parts[i] for i in range(job.pieces)]))


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
