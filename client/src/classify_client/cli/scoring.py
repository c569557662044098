"""The scoring loop of ``classify score``: rows in, one output row per input row out, in input order.

The loop talks to the server through a small ``Backend`` interface (submit a batch, get a pending result)
so that it is independent of how calls are made; ``ClientBackend`` is the real one over ``Client``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
import numpy as np

from ..client import Client
from ..conversions import Inputs
from ..errors import ClassifyError, InvalidInputError, MessageTooLargeError
from ..types import ClassifyResult, ClassScore
from .inputs import InputRow
from .outputs import OutputRow, RowWriter

# Worth retrying after a pause: the queue drains. UNAVAILABLE (a restarting server) is retried by the
# client library's RetryPolicy already; one that still arrives here means it gave up, so the job stops
# (and can be resumed with --resume).
RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
# No later row can succeed either: stop the job instead of failing every row the same way.
FATAL = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

T = TypeVar("T")
Outcome = tuple[ClassScore, ...] | str  # the classes of a scored row, or why it failed


class Pending(Protocol):
    def result(self) -> ClassifyResult: ...


class Backend(Protocol):
    def submit(self, inputs: Inputs) -> Pending: ...


class Reporter(Protocol):
    def row_failed(self, index: int, source: str, error: str) -> None: ...

    def advance(self, rows: int) -> None: ...


class ClientBackend:
    """Sends each batch as one Classify call of a Client, pinned to one model version."""

    def __init__(
        self, client: Client, model: str, *, version: int | None, top_k: int, timeout: float | None
    ) -> None:
        self._client = client
        self._model = model
        self._version = version
        self._top_k = top_k
        self._timeout = timeout

    def submit(self, inputs: Inputs) -> Pending:
        return self._client.classify_future(
            self._model,
            images=inputs.images,
            texts=inputs.texts,
            top_k=self._top_k,
            version=self._version,
            timeout=self._timeout,
        )


@dataclass(frozen=True)
class BusyRetry:
    """How the scoring loop waits out RESOURCE_EXHAUSTED (a full queue) before failing a batch."""

    attempts: int = 5
    first_pause: float = 0.2
    max_pause: float = 2.0

    def pause(self, attempt: int) -> float:
        return min(self.first_pause * 2**attempt, self.max_pause)


@dataclass
class Tally:
    """Counts of a scoring job; ``confusion[true, predicted]`` over rows both labelled and scored."""

    num_classes: int
    n: int = 0
    scored: int = 0
    failed: int = 0
    labelled: int = 0
    correct: int = 0
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def record(self, true_index: int | None, predicted_index: int | None) -> None:
        self.n += 1
        if predicted_index is None:
            self.failed += 1
            return
        self.scored += 1
        if true_index is not None:
            self.labelled += 1
            self.correct += int(true_index == predicted_index)
            if 0 <= predicted_index < self.num_classes:
                self.confusion[true_index, predicted_index] += 1


@dataclass
class _Batch:
    rows: list[InputRow]
    good: list[InputRow]
    inputs: Inputs | None
    pending: Pending | None


class Scorer:
    """Scores rows in batches with a few batches in flight, writing every row's outcome in input order."""

    def __init__(
        self,
        backend: Backend,
        writer: RowWriter,
        reporter: Reporter,
        *,
        labels: list[str],
        batch_size: int = 256,
        in_flight: int = 4,
        retry: BusyRetry | None = None,
        tally: Tally | None = None,
    ) -> None:
        self._backend = backend
        self._writer = writer
        self._reporter = reporter
        self._labels = labels
        self._batch_size = batch_size
        self._in_flight = in_flight
        self._retry = retry or BusyRetry()
        # A resumed job starts from the counts of the rows already in its output.
        self.tally = tally or Tally(num_classes=len(labels))

    def run(self, rows: Iterable[InputRow]) -> Tally:
        window: deque[_Batch] = deque()
        for batch in batched(rows, self._batch_size):
            window.append(self._submit(batch))
            if len(window) >= self._in_flight:
                self._finish(window.popleft())
        while window:
            self._finish(window.popleft())
        return self.tally

    def _submit(self, rows: list[InputRow]) -> _Batch:
        good = [row for row in rows if row.error is None]
        if not good:
            return _Batch(rows, good, None, None)
        inputs = rows_to_inputs(good)
        return _Batch(rows, good, inputs, self._backend.submit(inputs))

    def _finish(self, batch: _Batch) -> None:
        outcomes: dict[int, Outcome] = {}
        if batch.inputs is not None and batch.pending is not None:
            settled = self._settle(batch.good, batch.inputs, batch.pending)
            outcomes = {row.index: outcome for row, outcome in zip(batch.good, settled, strict=True)}
        for row in batch.rows:
            self._emit(row, outcomes.get(row.index, row.error or "not scored"))
        # Whole batches reach the file: a kill leaves at most one partial line for --resume to drop.
        self._writer.flush()
        self._reporter.advance(len(batch.rows))

    def _settle(self, rows: list[InputRow], inputs: Inputs, pending: Pending) -> list[Outcome]:
        """Wait for a batch; retry it when the server is busy, and split it when it holds bad rows."""
        attempt = 0
        while True:
            try:
                result = pending.result()
            except ClassifyError as error:
                too_large = isinstance(error, MessageTooLargeError)  # waiting cannot shrink it
                if error.code in RETRYABLE and not too_large and attempt < self._retry.attempts:
                    time.sleep(self._retry.pause(attempt))
                    attempt += 1
                    pending = self._backend.submit(inputs)
                    continue
                if error.code in FATAL:
                    raise
                if isinstance(error, InvalidInputError) or too_large:
                    # One bad row fails the whole call: ask row by row to find it and score the others
                    # (row by row also gets under a message size limit a whole batch broke).
                    return self._isolate(rows) if len(rows) > 1 else [error.details or error.code.name]
                return [f"{error.code.name}: {error.details}"] * len(rows)
            if len(result.predictions) != len(rows):
                raise ClassifyError(
                    grpc.StatusCode.INTERNAL,
                    f"server answered {len(result.predictions)} predictions for {len(rows)} rows",
                )
            return [tuple(p.classes) or "server returned no classes for this row" for p in result.predictions]

    def _isolate(self, rows: list[InputRow]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        window: deque[tuple[InputRow, Inputs, Pending]] = deque()
        for row in rows:
            inputs = rows_to_inputs([row])
            window.append((row, inputs, self._backend.submit(inputs)))
            if len(window) >= self._in_flight:
                outcomes.extend(self._settle_one(window.popleft()))
        while window:
            outcomes.extend(self._settle_one(window.popleft()))
        return outcomes

    def _settle_one(self, sent: tuple[InputRow, Inputs, Pending]) -> list[Outcome]:
        row, inputs, pending = sent
        return self._settle([row], inputs, pending)

    def _emit(self, row: InputRow, outcome: Outcome) -> None:
        true_label = self._labels[row.true_index] if row.true_index is not None else None
        if isinstance(outcome, str):
            self._writer.write(
                OutputRow(row.index, row.source, true_label=true_label, error=outcome, ids=row.ids)
            )
            self._reporter.row_failed(row.index, row.source, outcome)
            self.tally.record(row.true_index, None)
        else:
            self._writer.write(
                OutputRow(row.index, row.source, classes=outcome, true_label=true_label, ids=row.ids)
            )
            self.tally.record(row.true_index, outcome[0].index)


def rows_to_inputs(rows: list[InputRow]) -> Inputs:
    if rows[0].image is not None:
        return Inputs(images=np.stack([row.image for row in rows]))  # type: ignore[misc]
    return Inputs(texts=[row.text or "" for row in rows])


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); itertools.batched is 3.12+."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
