"""Writers for scored rows: CSV or JSON lines, chosen by the output file's extension.

Every row is exactly one line (CSV fields have their line breaks replaced by spaces; JSON escapes them),
and the scorer flushes after each batch: a job killed at any instant leaves complete rows followed by
at most one partial line, which is what lets ``classify score --resume`` carry on (see resume.py).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..types import ClassScore

COLUMNS = ("index", "source", "label", "score", "top_k", "true_label", "correct", "error")
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class OutputRow:
    """One line of output: the prediction for an input row, or the error that kept it from being scored."""

    index: int
    source: str
    classes: tuple[ClassScore, ...] = ()
    true_label: str | None = None
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.classes[0].label if self.classes else None

    @property
    def score(self) -> float | None:
        return self.classes[0].score if self.classes else None

    @property
    def correct(self) -> bool | None:
        if self.true_label is None or not self.classes:
            return None
        return self.label == self.true_label


class RowWriter(Protocol):
    def write(self, row: OutputRow) -> None: ...

    def flush(self) -> None: ...


def output_format(path: str | Path) -> str:
    """ "csv" or "jsonl" from the extension; ValueError naming both otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"output {str(path)!r} must end in .csv or .jsonl (the extension picks the format)")
    return FORMATS[suffix]


@contextmanager
def open_writer(path: str | Path, *, append: bool = False) -> Iterator[RowWriter]:
    """A writer for ``path`` in the format its extension names; the file is closed on exit.

    ``append`` continues a file that already holds its header and complete rows (a resumed job).
    """
    kind = output_format(path)
    with Path(path).open("a" if append else "w", encoding="utf-8", newline="") as stream:
        if kind == "csv":
            yield CsvRowWriter(stream, header=not append)
        else:
            yield JsonlRowWriter(stream)


def format_top_k(classes: tuple[ClassScore, ...]) -> str:
    """The compact CSV form, best first: "7:0.98|1:0.01"."""
    return "|".join(f"{c.label}:{c.score:.4g}" for c in classes)


def one_line(text: str) -> str:
    """A CSV field without line breaks, so that every row is one line (resume finds rows by lines)."""
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class CsvRowWriter:
    def __init__(self, stream: IO[str], *, header: bool = True) -> None:
        self._stream = stream
        self._writer = csv.writer(stream)
        if header:
            self._writer.writerow(COLUMNS)

    def flush(self) -> None:
        self._stream.flush()

    def write(self, row: OutputRow) -> None:
        correct = "" if row.correct is None else str(row.correct).lower()
        score = "" if row.score is None else f"{row.score:.6g}"
        self._writer.writerow(
            (
                row.index,
                one_line(row.source),
                row.label or "",
                score,
                format_top_k(row.classes),
                row.true_label or "",
                correct,
                one_line(row.error or ""),
            )
        )


class JsonlRowWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, row: OutputRow) -> None:
        self._stream.write(json.dumps(row_record(row), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._stream.flush()


def row_record(row: OutputRow) -> dict[str, Any]:
    return {
        "index": row.index,
        "source": row.source,
        "label": row.label,
        "score": None if row.score is None else round(row.score, 6),
        "top_k": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in row.classes],
        "true_label": row.true_label,
        "correct": row.correct,
        "error": row.error,
    }
