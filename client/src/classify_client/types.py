"""Typed results of the client's calls: plain dataclasses and numpy arrays, never protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ClassifyError


@dataclass(frozen=True)
class ClassScore:
    """One class of a prediction: its index in the model's label list, its label and its probability."""

    index: int
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """The answer for one input item: the top-k classes, best first, and optionally every probability."""

    classes: list[ClassScore]
    probabilities: np.ndarray | None = None

    @property
    def label(self) -> str:
        return self.classes[0].label

    @property
    def index(self) -> int:
        return self.classes[0].index

    @property
    def score(self) -> float:
        return self.classes[0].score


@dataclass(frozen=True)
class ClassifyResult:
    """The answer for a batch: which model and version answered and one prediction per item, in order."""

    model: str
    version: int
    predictions: list[Prediction]

    def __len__(self) -> int:
        return len(self.predictions)

    @property
    def labels(self) -> list[str]:
        """The top-1 label of every item."""
        return [prediction.label for prediction in self.predictions]

    @property
    def indices(self) -> np.ndarray:
        """The top-1 class index of every item, shape (N,)."""
        return np.array([prediction.index for prediction in self.predictions], dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:
        """The top-1 probability of every item, shape (N,)."""
        return np.array([prediction.score for prediction in self.predictions], dtype=np.float32)

    @property
    def probabilities(self) -> np.ndarray | None:
        """Every class's probability, shape (N, C); None unless requested with return_probabilities."""
        if not self.predictions or any(p.probabilities is None for p in self.predictions):
            return None
        return np.stack([p.probabilities for p in self.predictions])  # type: ignore[misc]


@dataclass(frozen=True)
class VersionStatus:
    """One version the server knows of: "loading", "ready", "unloading" or "failed" (with the reason)."""

    version: int
    state: str
    reason: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ListModels: the version unversioned requests get, and every version's state."""

    name: str
    version: int
    task: str
    state: str
    reason: str = ""
    versions: tuple[VersionStatus, ...] = ()
    # Version labels (stable, canary, ...) -> the version each names.
    version_labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: kind "image" or "text", dtype, shape with -1 as the batch dimension."""

    kind: str
    dtype: str
    shape: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class ModelMetadata:
    """Everything needed to build a request for a model and to read its answers."""

    name: str
    version: int
    task: str
    labels: list[str]
    input: InputSpec
    metrics: Mapping[str, float]
    quick: bool
    versions: list[int]
    model_json: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamRequest:
    """One request of ``classify_stream``: like ``classify`` but never split into chunks.

    ``request_id`` is echoed in the matching ``StreamReply``; the client numbers requests when it is None.
    """

    model: str
    images: np.ndarray | None = None
    texts: Sequence[str] | None = None
    top_k: int = 1
    version: int | None = None
    return_probabilities: bool = False
    request_id: str | None = None


@dataclass(frozen=True)
class StreamReply:
    """The answer to one streamed request: a result, or the error of that request alone."""

    request_id: str
    result: ClassifyResult | None = None
    error: ClassifyError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
