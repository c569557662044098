"""Explain work for one model, cut into bounded executions that take turns with Classify's batches.

An explain item costs many rows of model work (integrated gradients: steps + 2), so one request of 32
images at 32 steps is over a thousand rows. Run whole, it would hold the model for a second while Classify
requests queue behind it. Instead every request is cut into pieces of at most ``max_rows`` rows of work
(the model's --max-batch-size), pieces of different callers with the same method and steps are merged
into one execution up to that bound, and each execution takes one of the model's execution slots, FIFO
with the Classify batcher's own (DynamicBatcher.run_exclusive). So a Classify batch waits for at most one
bounded explain execution, and explain gets every other turn when both are busy: its share, never more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from classify_server.errors import DeadlineExceededError, OverloadedError, UnavailableError
from classify_server.serving.batcher import DynamicBatcher
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


class ExplainBatcher:
    def __init__(self, name: str, runner: ExplainRunner, batcher: DynamicBatcher, max_rows: int) -> None:
        self.name = name
        self.runner = runner
        self.stats = ExplainStats()
        self._batcher = batcher
        self._max_rows = max_rows
        # Queued work in rows (items times their cost), bounded like Classify's queue.
        self._capacity_rows = batcher.policy.queue_capacity_rows
        self._queued_rows = 0
        self._queue: deque[_Piece] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, nothing running
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def items_per_execution(self, method: str, steps: int) -> int:
        return max(1, self._max_rows // rows_per_item(method, steps))

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
        size = self.items_per_execution(method, steps)
        for start in range(0, len(inputs), size):
            piece = _Piece(job, job.pieces, inputs[start : start + size], targets[start : start + size],
                           (method, steps))  # fmt: skip
            job.pieces += 1
            self._queue.append(piece)
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
            if piece.key != head.key or (
                taken and sum(len(p.inputs) for p in taken) + len(piece.inputs) > room
            ):
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
        try:
            output = await self._batcher.run_exclusive(
                lambda: self.runner.run(method, inputs, targets, steps)
            )
        except Exception as exc:  # a failed execution fails its callers, never the scheduler
            for piece in pieces:
                _fail(piece.job, exc)
            return
        self.stats.executions += 1
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
