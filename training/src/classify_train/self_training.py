"""Self-training for text models: a trained teacher labels the unlabelled reviews it is sure of, and the
exported model (the student) learns from the training rows plus those.

The 50,000 unlabelled IMDb reviews carry what a 22,500-review training set lacks: more ways people praise
and pan films. Only the teacher's confident answers are kept, so most pseudo-labels are right; the
validation rows are never labelled or trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

_PREDICT_BATCH = 512


@dataclass(frozen=True)
class PseudoLabels:
    ids: np.ndarray  # token ids of the kept reviews, 0-padded
    labels: np.ndarray  # the teacher's answer for each
    considered: int  # unlabelled reviews the teacher read

    def describe(self) -> dict[str, float | int]:
        positive = float(self.labels.mean()) if len(self.labels) else 0.0
        return {"considered": self.considered, "kept": len(self.labels), "positive_share": round(positive, 4)}


def pseudo_label(teacher: keras.Model, ids: np.ndarray, confidence: float) -> PseudoLabels:
    """The reviews whose top probability from ``teacher`` is at least ``confidence``, with that class."""
    probabilities = predict_by_length(teacher, ids)
    keep = probabilities.max(axis=1) >= confidence
    return PseudoLabels(ids[keep], probabilities[keep].argmax(axis=1).astype(np.int64), len(ids))


def predict_by_length(model: keras.Model, ids: np.ndarray) -> np.ndarray:
    """Probabilities for every row, computed in batches of similar length (each cut to its longest row,
    as in training) and returned in the rows' order."""
    lengths = np.count_nonzero(ids, axis=1)
    order = np.argsort(lengths, kind="stable")
    probabilities: np.ndarray | None = None
    for start in range(0, len(order), _PREDICT_BATCH):
        rows = order[start : start + _PREDICT_BATCH]
        width = max(1, int(lengths[rows].max()))
        batch = np.asarray(model(ids[rows, :width], training=False))
        if probabilities is None:
            probabilities = np.zeros((len(ids), batch.shape[1]), np.float32)
        probabilities[rows] = batch
    return probabilities if probabilities is not None else np.zeros((0, 0), np.float32)


def combine(ids: np.ndarray, labels: np.ndarray, extra: PseudoLabels) -> tuple[np.ndarray, np.ndarray]:
    """Training rows plus pseudo-labelled ones, ids padded to a common width."""
    width = max(ids.shape[1], extra.ids.shape[1])
    padded = [np.pad(part, [(0, 0), (0, width - part.shape[1])]) for part in (ids, extra.ids)]
    return np.concatenate(padded), np.concatenate([labels.astype(np.int64), extra.labels])
