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

from classify_train.buckets import LengthBuckets, concat_padded

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
    buckets = LengthBuckets(ids, np.zeros(len(ids), np.int64), _PREDICT_BATCH, shuffle=False, seed=0)
    probabilities: np.ndarray | None = None
    for index in range(len(buckets)):
        batch, _ = buckets[index]
        answers = np.asarray(model(batch, training=False))
        if probabilities is None:
            probabilities = np.zeros((len(ids), answers.shape[1]), np.float32)
        probabilities[buckets.rows_of(index)] = answers
    return probabilities if probabilities is not None else np.zeros((0, 0), np.float32)


def combine(ids: np.ndarray, labels: np.ndarray, extra: PseudoLabels) -> tuple[np.ndarray, np.ndarray]:
    """Training rows plus pseudo-labelled ones, ids padded to a common width."""
    return concat_padded([ids, extra.ids]), np.concatenate([labels.astype(np.int64), extra.labels])
