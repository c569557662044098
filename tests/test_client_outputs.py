"""Output writers and the end-of-job summary of `classify score`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from classify_client.cli.outputs import (
    COLUMNS,
    CsvRowWriter,
    JsonlRowWriter,
    OutputRow,
    open_writer,
    output_format,
)
from classify_client.cli.report import ScoreSummary, confusion_lines, summary_lines
from classify_client.types import ClassScore

SCORED = OutputRow(
    0, "digits#0", classes=(ClassScore(7, "7", 0.981234567), ClassScore(1, "1", 0.0123)), true_label="7"
)
WRONG = OutputRow(1, "digits#1", classes=(ClassScore(2, "2", 0.5),), true_label="3")
FAILED = OutputRow(2, "digits#2", true_label="4", error='cannot read image: bad "PNG", chunk')
UNLABELLED = OutputRow(3, "r.txt:4", classes=(ClassScore(1, "positive", 0.9),))


def test_output_format_by_extension() -> None:
    assert output_format("out.csv") == "csv"
    assert output_format("OUT.JSONL") == "jsonl"
    assert output_format("out.parquet") == "parquet"
    for bad in ("out.json", "out", "out.csv.gz"):
        with pytest.raises(ValueError, match=r"must end in \.csv, \.jsonl or \.parquet"):
            output_format(bad)


def test_csv_rows() -> None:
    stream = io.StringIO()
    writer = CsvRowWriter(stream)
    for row in (SCORED, WRONG, FAILED, UNLABELLED):
        writer.write(row)
    records = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert tuple(records[0]) == COLUMNS
    assert records[0] == {
        "index": "0",
        "source": "digits#0",
        "label": "7",
        "score": "0.981235",
        "top_k": "7:0.9812|1:0.0123",
        "true_label": "7",
        "correct": "true",
        "error": "",
    }
    assert records[1]["correct"] == "false"
    assert records[2]["error"] == 'cannot read image: bad "PNG", chunk'
    assert (records[2]["label"], records[2]["score"], records[2]["correct"]) == ("", "", "")
    assert (records[3]["true_label"], records[3]["correct"]) == ("", "")


def test_jsonl_rows() -> None:
    stream = io.StringIO()
    writer = JsonlRowWriter(stream)
    for row in (SCORED, FAILED, UNLABELLED):
        writer.write(row)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(records[0]) == list(COLUMNS)
    assert records[0]["top_k"] == [
        {"index": 7, "label": "7", "score": 0.981235},
        {"index": 1, "label": "1", "score": 0.0123},
    ]
    assert records[0]["correct"] is True
    assert records[1] == {
        "index": 2,
        "source": "digits#2",
        "label": None,
        "score": None,
        "top_k": [],
        "true_label": "4",
        "correct": None,
        "error": 'cannot read image: bad "PNG", chunk',
    }
    assert records[2]["true_label"] is None


def test_open_writer_picks_the_format_and_closes(tmp_path: Path) -> None:
    with open_writer(tmp_path / "o.jsonl") as writer:
        writer.write(SCORED)
    assert json.loads((tmp_path / "o.jsonl").read_text())["label"] == "7"
    with open_writer(tmp_path / "o.csv") as writer:
        writer.write(SCORED)
    assert (tmp_path / "o.csv").read_text().splitlines()[0] == ",".join(COLUMNS)


def summary(labels: list[str], confusion: np.ndarray, failed: int = 1) -> ScoreSummary:
    correct = int(np.trace(confusion))
    labelled = int(confusion.sum())
    return ScoreSummary(
        model="m",
        version=2,
        n=labelled + failed,
        scored=labelled,
        failed=failed,
        labelled=labelled,
        correct=correct,
        seconds=0.5,
        labels=labels,
        confusion=confusion,
    )


def test_summary_with_matrix_and_json() -> None:
    confusion = np.array([[5, 1], [2, 7]])
    result = summary(["negative", "positive"], confusion)
    lines = summary_lines(result)
    assert lines[:4] == [
        "model m version 2",
        "n 16, scored 15, failed 1",
        "0.50 s, 32 rows/s",
        "accuracy 0.8000 (12 of 15 labelled rows)",
    ]
    assert lines[5].split() == ["true\\pred", "negative", "positive"]
    assert lines[6].split() == ["negative", "5", "1"]
    assert lines[7].split() == ["positive", "2", "7"]
    assert result.as_json() == {
        "n": 16,
        "scored": 15,
        "failed": 1,
        "accuracy": 0.8,
        "labelled": 15,
        "seconds": 0.5,
        "per_second": 32.0,
        "model": "m",
        "version": 2,
    }


def test_summary_without_labels_has_no_accuracy() -> None:
    result = summary(["a", "b"], np.zeros((2, 2), dtype=np.int64), failed=0)
    assert result.as_json()["accuracy"] is None
    assert not any(line.startswith("accuracy") for line in summary_lines(result))


def test_many_classes_list_the_worst_mistakes() -> None:
    labels = [f"c{i}" for i in range(12)]
    confusion = np.eye(12, dtype=np.int64) * 10
    confusion[3, 8] = 4
    confusion[5, 6] = 2
    lines = confusion_lines(labels, confusion)
    assert lines == ["most frequent mistakes (true -> predicted: count)", "  c3 -> c8: 4", "  c5 -> c6: 2"]
