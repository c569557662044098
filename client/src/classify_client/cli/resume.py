"""``classify score --resume``: find where a killed job stopped, so it goes on without rescoring or gaps.

The output holds one row per input row, in input order, one line per row, flushed after each batch
(outputs.py). So the rows a job finished are the complete lines at the start of its output whose
``index`` runs 0, 1, 2, ...; whatever follows the last of them (a partial line cut by a kill) is cut off,
and the job skips that many input rows. The kept rows are read back into the tally, so the summary and
accuracy cover the whole job, not just the part after the restart. A Parquet output is resumed
through its JSON lines journal (parquet_output.py).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .outputs import COLUMNS, output_format
from .scoring import Tally


@dataclass(frozen=True)
class Resumed:
    """What a previous run left: how many rows it finished, their counts, and the bytes dropped."""

    rows: int
    tally: Tally
    dropped_bytes: int


def resume_output(path: Path, labels: list[str], id_columns: tuple[str, ...] = ()) -> Resumed | None:
    """Cut ``path`` back to its last complete row and count those rows; None when there is nothing to
    resume (no file, or not even a complete CSV header), in which case the job starts afresh."""
    kind = output_format(path)
    if kind == "parquet":
        from .parquet_output import journal_path, parquet_to_journal

        journal = journal_path(path)
        if not journal.is_file():
            if not path.is_file():
                return None
            parquet_to_journal(path, journal, COLUMNS)
        path, kind = journal, "jsonl"
    if not path.is_file():
        return None
    data = path.read_bytes()
    header = [*COLUMNS, *id_columns]
    tally = Tally(num_classes=len(labels))
    label_index = {label: index for index, label in enumerate(labels)}
    offset = 0
    lines = data.split(b"\n")[:-1]  # the piece after the last newline is a partial line, if anything
    if kind == "csv":
        if not lines or next(csv.reader([lines[0].decode("utf-8", "replace")]), []) != header:
            return None
        offset = len(lines[0]) + 1
        lines = lines[1:]
    kept = 0
    for line in lines:
        record = _parse(line, kind, header)
        if record is None or record.get("index") != str(kept):
            break  # a torn or foreign line: everything from here on is redone
        _count(tally, record, label_index)
        kept += 1
        offset += len(line) + 1
    if offset < len(data):
        os.truncate(path, offset)
    return Resumed(rows=kept, tally=tally, dropped_bytes=len(data) - offset)


def _parse(line: bytes, kind: str, header: list[str]) -> dict[str, str] | None:
    """One output row as strings (CSV's view of it), or None when the line is not a whole row."""
    try:
        text = line.decode("utf-8")
        if kind == "csv":
            fields = next(csv.reader([text]))
            return dict(zip(header, fields, strict=True)) if len(fields) == len(header) else None
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError, StopIteration):
        return None
    if not isinstance(record, dict) or not set(COLUMNS) <= set(record):
        return None
    return {key: "" if record[key] is None else str(record[key]) for key in COLUMNS}


def _count(tally: Tally, record: dict[str, str], label_index: dict[str, int]) -> None:
    true_index = label_index.get(record["true_label"]) if record["true_label"] else None
    if record["error"] or not record["label"]:
        tally.record(true_index, None)
    else:
        # A label this model does not have (another model wrote the file) is counted, never matched.
        tally.record(true_index, label_index.get(record["label"], -1))
