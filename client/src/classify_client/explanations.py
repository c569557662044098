"""Explain: the request a client sends and the answer it reads (``Client.explain``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conversions import Inputs
from .wire.arrays import IMAGE_SIDE, image_batch
from .wire.proto.classify.v1 import classify_pb2

METHODS = {
    "auto": classify_pb2.EXPLAIN_METHOD_AUTO,
    "votes": classify_pb2.EXPLAIN_METHOD_VOTES,
    "integrated_gradients": classify_pb2.EXPLAIN_METHOD_INTEGRATED_GRADIENTS,
    "occlusion": classify_pb2.EXPLAIN_METHOD_OCCLUSION,
}


@dataclass(frozen=True)
class Attribution:
    """One item's explanation for one class. Images: ``map`` (28 x 28 float32, positive = for the class);
    texts: ``tokens`` as the model's vectorizer split them and their ``scores``."""

    target_index: int
    target_label: str
    probability: float
    logit: float
    baseline_logit: float
    completeness_gap: float
    map: np.ndarray | None = None
    tokens: list[str] | None = None
    scores: np.ndarray | None = None

    @property
    def relative_gap(self) -> float:
        """|completeness gap| / |logit - baseline logit|: how far the attributions miss their total."""
        difference = abs(self.logit - self.baseline_logit)
        return abs(self.completeness_gap) / difference if difference else float("inf")


@dataclass(frozen=True)
class ExplainResult:
    model: str
    version: int
    method: str
    steps: int
    # One list per input item, in input order: its explained classes, best first.
    items: list[list[Attribution]]

    def maps(self) -> np.ndarray:
        """(N, 28, 28) float32: every image's first explained class's map, in input order."""
        return np.stack([targets[0].map for targets in self.items if targets[0].map is not None])


def explain_request(
    model: str,
    inputs: Inputs,
    *,
    version: int | None,
    target: str | int | None,
    top_k: int,
    method: str,
    steps: int,
) -> classify_pb2.ExplainRequest:
    if method not in METHODS:
        raise ValueError(f"unknown explain method {method!r}; expected one of {', '.join(METHODS)}")
    if steps < 0:
        raise ValueError(f"steps must be 0 (the default) or more, not {steps}")
    request = classify_pb2.ExplainRequest(
        model=model, version=version or 0, top_k=top_k, method=METHODS[method], steps=steps
    )
    if isinstance(target, bool):
        raise TypeError("target is a label name or a class index, not a bool")
    if isinstance(target, int):
        request.target_index = target
    elif target is not None:
        request.target_label = str(target)
    if inputs.images is not None:
        request.images.CopyFrom(image_batch(inputs.images))
    else:
        request.texts.texts.extend(inputs.texts or [])
    return request


def explanation_from_proto(response: classify_pb2.ExplainResponse) -> ExplainResult:
    items = [[_attribution(target) for target in item.targets] for item in response.items]
    return ExplainResult(response.model, response.version, response.method, response.steps, items)


def _attribution(message: classify_pb2.Attribution) -> Attribution:
    map_ = None
    if message.map:
        map_ = np.frombuffer(message.map, dtype="<f4").astype(np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE)
    texts = bool(message.tokens) or not message.map
    return Attribution(
        target_index=message.target_index,
        target_label=message.target_label,
        probability=message.probability,
        logit=message.logit,
        baseline_logit=message.baseline_logit,
        completeness_gap=message.completeness_gap,
        map=map_,
        tokens=list(message.tokens) if texts else None,
        scores=np.asarray(message.scores, dtype=np.float32) if texts else None,
    )
