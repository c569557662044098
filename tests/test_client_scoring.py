"""The scoring loop of `classify score` over a plain-Python backend (no gRPC, no server).

The backend stands in for the server's answers only; the end-to-end tests against the real server
process live elsewhere. Here: order, bad-row isolation, retries, fatal errors and the tally.
"""

from __future__ import annotations

import io
import json

import grpc
import pytest

from classify_client.cli.inputs import InputRow
from classify_client.cli.outputs import JsonlRowWriter
from classify_client.cli.progress import StderrReporter
from classify_client.cli.scoring import BusyRetry, Scorer, batched
from classify_client.conversions import Inputs
from classify_client.errors import ClassifyError, InvalidInputError, OverloadedError, UnavailableError
from classify_client.types import ClassifyResult, ClassScore, Prediction

LABELS = ["negative", "positive"]
NO_PAUSE = BusyRetry(attempts=3, first_pause=0.0)


class Answer:
    def __init__(self, result: ClassifyResult | None = None, error: ClassifyError | None = None) -> None:
        self._result, self._error = result, error

    def result(self) -> ClassifyResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class WordBackend:
    """ "good" in a text means positive; a text containing "REJECT" fails the whole call, as a server would.

    ``busy`` calls are answered RESOURCE_EXHAUSTED first; ``down`` makes every call UNAVAILABLE.
    """

    def __init__(self, busy: int = 0, down: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.busy = busy
        self.down = down

    def submit(self, inputs: Inputs) -> Answer:
        texts = list(inputs.texts or [])
        self.calls.append(texts)
        if self.down:
            return Answer(error=UnavailableError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
        if self.busy:
            self.busy -= 1
            return Answer(error=OverloadedError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"))
        if any("REJECT" in text for text in texts):
            return Answer(error=InvalidInputError(grpc.StatusCode.INVALID_ARGUMENT, "text too strange"))
        predictions = []
        for text in texts:
            index = int("good" in text)
            predictions.append(Prediction([ClassScore(index, LABELS[index], 0.9)]))
        return Answer(ClassifyResult("imdb-lstm", 1, predictions))


def rows(texts: list[str | None], labels: list[int | None] | None = None) -> list[InputRow]:
    labels = labels or [None] * len(texts)
    return [
        InputRow(i, f"r.txt:{i + 1}", text=t, error=None if t is not None else "empty text", true_index=label)
        for i, (t, label) in enumerate(zip(texts, labels, strict=True))
    ]


def run(backend: WordBackend, items: list[InputRow], batch_size: int = 2, in_flight: int = 2):
    output, messages = io.StringIO(), io.StringIO()
    with StderrReporter(len(items), stream=messages, show_bar=False) as reporter:
        scorer = Scorer(
            backend,
            JsonlRowWriter(output),
            reporter,
            labels=LABELS,
            batch_size=batch_size,
            in_flight=in_flight,
            retry=NO_PAUSE,
        )
        tally = scorer.run(items)
    records = [json.loads(line) for line in output.getvalue().splitlines()]
    return tally, records, messages.getvalue()


def test_rows_come_out_in_input_order_with_labels_counted() -> None:
    texts = ["good film", "awful", "good", "bad", "good fun"]
    tally, records, messages = run(WordBackend(), rows(texts, [1, 0, 0, None, 1]), batch_size=2)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["label"] for r in records] == ["positive", "negative", "positive", "negative", "positive"]
    assert [r["correct"] for r in records] == [True, True, False, None, True]
    assert (tally.n, tally.scored, tally.failed, tally.labelled, tally.correct) == (5, 5, 0, 4, 3)
    assert tally.confusion.tolist() == [[1, 1], [0, 2]]
    assert messages == ""


def test_unreadable_rows_are_written_and_never_sent() -> None:
    backend = WordBackend()
    tally, records, messages = run(backend, rows(["good", None, None, "bad"]), batch_size=2)
    assert backend.calls == [["good"], ["bad"]]
    assert [r["error"] for r in records] == [None, "empty text", "empty text", None]
    assert (tally.scored, tally.failed) == (2, 2)
    assert messages.splitlines() == ["row 1 (r.txt:2): empty text", "row 2 (r.txt:3): empty text"]


def test_a_rejected_batch_is_retried_row_by_row() -> None:
    backend = WordBackend()
    texts = ["good", "REJECT me", "bad", "good", "REJECT", "fine"]
    tally, records, messages = run(backend, rows(texts), batch_size=3)
    assert [r["error"] for r in records] == [None, "text too strange", None, None, "text too strange", None]
    assert [r["label"] for r in records] == ["positive", None, "negative", "positive", None, "negative"]
    assert backend.calls[:2] == [texts[:3], texts[3:]]
    assert sorted(map(tuple, backend.calls[2:])) == sorted((t,) for t in texts)
    assert (tally.scored, tally.failed) == (4, 2)
    assert "row 1 (r.txt:2): text too strange" in messages


def test_a_busy_server_is_retried() -> None:
    backend = WordBackend(busy=2)
    tally, records, _ = run(backend, rows(["good", "bad"]), batch_size=2)
    assert len(backend.calls) == 3
    assert tally.failed == 0
    assert [r["label"] for r in records] == ["positive", "negative"]


def test_busy_beyond_the_retries_fails_those_rows_only() -> None:
    tally, records, _ = run(WordBackend(busy=4), rows(["good", "bad", "good"]), batch_size=2, in_flight=1)
    assert [r["error"] for r in records] == ["RESOURCE_EXHAUSTED: queue full"] * 2 + [None]
    assert (tally.scored, tally.failed) == (1, 2)


def test_an_unreachable_server_stops_the_job() -> None:
    with pytest.raises(UnavailableError, match="connection refused"):
        run(WordBackend(down=True), rows(["good"]))


def test_row_messages_are_capped() -> None:
    messages = io.StringIO()
    with StderrReporter(None, stream=messages, show_bar=False, max_messages=2) as reporter:
        for index in range(5):
            reporter.row_failed(index, f"s{index}", "bad")
    assert messages.getvalue().splitlines() == [
        "row 0 (s0): bad",
        "row 1 (s1): bad",
        "... and 3 more bad rows; see the error column of the output",
    ]


def test_batched() -> None:
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batched([], 3)) == []
