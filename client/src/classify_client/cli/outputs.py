"""Writers for scored rows: CSV, JSON lines or Parquet, chosen by the output file's extension.

Every row is exactly one line (CSV fields have their line breaks replaced by spaces; JSON escapes them),
and the scorer flushes after each batch: a job killed at any instant leaves complete rows followed by
at most one partial line, which is what lets ``classify score --resume`` carry on (see resume.py).
Parquet cannot be appended to nor read before its footer is written, so a Parquet output is written
as a JSON lines journal beside it first and turned into Parquet when the job ends (parquet_output.py).
The values of ``--id-column`` columns follow the fixed columns, under their own names.
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
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class OutputRow:
    """One line of output: the prediction for an input row, or the error that kept it from being scored."""

    index: int
    source: str
    classes: tuple[ClassScore, ...] = ()
    true_label: str | None = None
    error: str | None = None
    ids: tuple[Any, ...] = ()  # the values of the --id-column columns

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
    """ "csv", "jsonl" or "parquet" from the extension; ValueError naming them otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"output {str(path)!r} must end in .csv, .jsonl or .parquet (the extension picks the format)"
        )
    return FORMATS[suffix]


def check_id_columns(id_columns: tuple[str, ...]) -> None:
    """ValueError when an --id-column would overwrite a column of the output (or repeats)."""
    for name in id_columns:
        if name in COLUMNS:
            raise ValueError(f"--id-column {name!r} clashes with the output column of that name")
    if len(set(id_columns)) != len(id_columns):
        raise ValueError("--id-column names a column twice")


@contextmanager
def open_writer(
    path: str | Path, *, append: bool = False, id_columns: tuple[str, ...] = ()
) -> Iterator[RowWriter]:
    """A writer for ``path`` in the format its extension names; the file is closed on exit.

    ``append`` continues a file that already holds its header and complete rows (a resumed job).
    """
    kind = output_format(path)
    if kind == "parquet":
        from .parquet_output import open_parquet_writer

        def journal_writer(stream: IO[str]) -> RowWriter:
            return JsonlRowWriter(stream, id_columns=id_columns, precise=True)

        with open_parquet_writer(
            Path(path), append=append, id_columns=id_columns, journal_writer=journal_writer
        ) as writer:
            yield writer
        return
    with Path(path).open("a" if append else "w", encoding="utf-8", newline="") as stream:
        if kind == "csv":
            yield CsvRowWriter(stream, header=not append, id_columns=id_columns)
        else:
            yield JsonlRowWriter(stream, id_columns=id_columns)


def format_top_k(classes: tuple[ClassScore, ...]) -> str:
    """The compact CSV form, best first: "7:0.98|1:0.01"."""
    return "|".join(f"{c.label}:{c.score:.4g}" for c in classes)


def one_line(text: str) -> str:
    """A CSV field without line breaks, so that every row is one line (resume finds rows by lines)."""
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class CsvRowWriter:
    def __init__(self, stream: IO[str], *, header: bool = True, id_columns: tuple[str, ...] = ()) -> None:
        self._stream = stream
        self._writer = csv.writer(stream)
        if header:
            self._writer.writerow((*COLUMNS, *id_columns))

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
                *(one_line("" if value is None else str(value)) for value in row.ids),
            )
        )


class JsonlRowWriter:
    """One JSON object a line; ``precise`` keeps every digit of the scores (the Parquet journal)."""

    def __init__(self, stream: IO[str], *, id_columns: tuple[str, ...] = (), precise: bool = False) -> None:
        self._stream = stream
        self._id_columns = id_columns
        self._precise = precise

    def write(self, row: OutputRow) -> None:
        record = row_record(row, self._id_columns, precise=self._precise)
        # default=str: an id value JSON has no type for (a date, bytes) is written as its text.
        self._stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def flush(self) -> None:
        self._stream.flush()


def row_record(row: OutputRow, id_columns: tuple[str, ...] = (), *, precise: bool = False) -> dict[str, Any]:
    def rounded(score: float) -> float:
        return score if precise else round(score, 6)

    record = {
        "index": row.index,
        "source": row.source,
        "label": row.label,
        "score": None if row.score is None else rounded(row.score),
        "top_k": [{"index": c.index, "label": c.label, "score": rounded(c.score)} for c in row.classes],
        "true_label": row.true_label,
        "correct": row.correct,
        "error": row.error,
    }
    record.update(zip(id_columns, row.ids, strict=True))
    return record
