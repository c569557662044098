"""The end-of-job summary of ``classify score``: counts, speed, accuracy and where the model errs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Up to this many classes the whole confusion matrix fits a terminal; beyond it, the worst pairs only.
MATRIX_MAX_CLASSES = 10
WORST_PAIRS = 5


@dataclass(frozen=True)
class ScoreSummary:
    model: str
    version: int
    n: int
    scored: int
    failed: int
    labelled: int
    correct: int
    seconds: float
    labels: list[str]
    confusion: np.ndarray

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The ``--summary-json`` document."""
        return {
            "n": self.n,
            "scored": self.scored,
            "failed": self.failed,
            "accuracy": self.accuracy,
            "labelled": self.labelled,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "model": self.model,
            "version": self.version,
        }


def summary_lines(summary: ScoreSummary) -> list[str]:
    lines = [
        f"model {summary.model} version {summary.version}",
        f"n {summary.n}, scored {summary.scored}, failed {summary.failed}",
        f"{summary.seconds:.2f} s, {summary.per_second:,.0f} rows/s",
    ]
    if summary.accuracy is not None:
        counts = f"{summary.correct} of {summary.labelled} labelled rows"
        lines.append(f"accuracy {summary.accuracy:.4f} ({counts})")
        lines.extend(confusion_lines(summary.labels, summary.confusion))
    return lines


def confusion_lines(labels: list[str], confusion: np.ndarray) -> list[str]:
    if len(labels) <= MATRIX_MAX_CLASSES:
        return matrix_lines(labels, confusion)
    return worst_pair_lines(labels, confusion)


def matrix_lines(labels: list[str], confusion: np.ndarray) -> list[str]:
    """The confusion matrix as text: one row per true class, one column per predicted class."""
    width = max(len(str(int(confusion.max(initial=0)))), *(len(label) for label in labels), 4)
    side = max(len("true\\pred"), *(len(label) for label in labels))
    header = "true\\pred".ljust(side) + " " + " ".join(label.rjust(width) for label in labels)
    lines = ["confusion (rows: true label, columns: predicted label)", header]
    for label, counts in zip(labels, confusion, strict=True):
        lines.append(label.ljust(side) + " " + " ".join(str(int(c)).rjust(width) for c in counts))
    return lines


def worst_pair_lines(labels: list[str], confusion: np.ndarray) -> list[str]:
    """The most frequent mistakes, for models with too many classes for a matrix."""
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    order = np.argsort(mistakes, axis=None)[::-1][:WORST_PAIRS]
    pairs = [np.unravel_index(flat, mistakes.shape) for flat in order]
    lines = ["most frequent mistakes (true -> predicted: count)"]
    lines.extend(
        f"  {labels[true]} -> {labels[predicted]}: {int(mistakes[true, predicted])}"
        for true, predicted in pairs
        if mistakes[true, predicted] > 0
    )
    return lines
