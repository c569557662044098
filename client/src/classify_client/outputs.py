"""Writers for scored rows: CSV or JSON lines, chosen by the output file's extension."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from .types import ClassScore

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


def output_format(path: str | Path) -> str:
    """ "csv" or "jsonl" from the extension; ValueError naming both otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"output {str(path)!r} must end in .csv or .jsonl (the extension picks the format)")
    return FORMATS[suffix]


@contextmanager
def open_writer(path: str | Path) -> Iterator[RowWriter]:
    """A writer for ``path`` in the format its extension names; the file is closed on exit."""
    kind = output_format(path)
    with Path(path).open("w", encoding="utf-8", newline="") as stream:
        yield CsvRowWriter(stream) if kind == "csv" else JsonlRowWriter(stream)


def format_top_k(classes: tuple[ClassScore, ...]) -> str:
    """The compact CSV form, best first: "7:0.98|1:0.01"."""
    return "|".join(f"{c.label}:{c.score:.4g}" for c in classes)


class CsvRowWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(COLUMNS)

    def write(self, row: OutputRow) -> None:
        correct = "" if row.correct is None else str(row.correct).lower()
        score = "" if row.score is None else f"{row.score:.6g}"
        self._writer.writerow(
            (
                row.index,
                row.source,
                row.label or "",
                score,
                format_top_k(row.classes),
                row.true_label or "",
                correct,
                row.error or "",
            )
        )


class JsonlRowWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, row: OutputRow) -> None:
        self._stream.write(json.dumps(row_record(row), ensure_ascii=False) + "\n")


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
