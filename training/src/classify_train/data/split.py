"""The validation split: carved once, deterministically, from the training split.

Every command that needs it (training, ``classify-train split``) calls :func:`carve_validation` with the
same seed and gets the same rows, so the rows a model was validated on can be written out and scored later
without ever having been trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from classify_train.data.checksums import indices_sha256, rows_sha256
from classify_train.data.dataset import Dataset

DEFAULT_SEED = 20261127
VALIDATION_FRACTION = 0.1


@dataclass(frozen=True)
class ValidationSplit:
    """Sorted, disjoint row indices into one training split."""

    seed: int
    fraction: float
    train_indices: np.ndarray
    validation_indices: np.ndarray

    def describe(self, dataset: Dataset) -> dict[str, Any]:
        """The model.json ``data.validation_split`` entry: enough to check another copy is the same split."""
        return {
            "seed": self.seed,
            "fraction": self.fraction,
            "indices_sha256": indices_sha256(self.validation_indices),
            "data_sha256": rows_sha256(*rows(dataset, self.validation_indices)),
        }


def carve_validation(
    labels: np.ndarray, fraction: float = VALIDATION_FRACTION, seed: int = DEFAULT_SEED
) -> ValidationSplit:
    """Hold out ``round(fraction * N)`` rows stratified by label, drawn by an RNG seeded with ``seed``."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    size = round(fraction * len(labels))
    validation = stratified_sample(labels, size, seed)
    train = np.setdiff1d(np.arange(len(labels)), validation, assume_unique=True)
    return ValidationSplit(seed, fraction, train, validation)


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` rows whose label mix matches the whole (largest-remainder rounding)."""
    labels = np.asarray(labels)
    size = min(size, len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    picked = []
    for label, quota in zip(classes, class_quotas(counts, size), strict=True):
        members = np.flatnonzero(labels == label)
        picked.append(rng.permutation(members)[:quota])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Split ``size`` among classes in proportion to ``counts``, summing exactly to ``size``."""
    exact = counts * size / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    # Hand the rows lost to rounding down to the classes with the largest fractional parts (ties: first).
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: size - quotas.sum()]] += 1
    return quotas


def subset(labels: np.ndarray, indices: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """A stratified sample of ``size`` of the given rows (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(indices):
        return indices
    return indices[stratified_sample(labels[indices], size, seed)]


def rows(dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray | list[str], np.ndarray]:
    """The inputs and labels of the given rows, for image and text data sets alike."""
    if isinstance(dataset.inputs, np.ndarray):
        return dataset.inputs[indices], dataset.labels[indices]
    return [dataset.inputs[i] for i in indices], dataset.labels[indices]
