"""Explain requests on the data plane: pick the method, resolve the targets, queue the work.

Protocol-independent like the rest of the data plane: the native RPC and the HTTP ``:explain`` verb
both build an ``ExplainCall`` and get an ``Explanation``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from classify_client.wire.arrays import top_classes
from classify_server.errors import DeadlineExceededError, FailedPreconditionError, InvalidInputError
from classify_server.serving.explain_runner import (
    DEFAULT_STEPS,
    MAX_STEPS,
    METHODS,
    REEXPORT_COMMAND,
    ExplainOutput,
)
from classify_server.serving.registry import LoadedModel
from classify_server.serving.repository import ModelSpec
from classify_server.serving.validation import InputLimits, Payload, model_input

AUTO = "auto"


@dataclass(frozen=True)
class ExplainCall:
    model: str
    version: int | None
    payload: Payload | None
    method: str = AUTO  # "auto" or one of METHODS
    steps: int = 0  # 0: the default
    # The class to explain for every item, by label or index; neither: each item's top_k classes.
    target_label: str | None = None
    target_index: int | None = None
    top_k: int = 1
    time_remaining: float | None = None
    protocol: str = "native"
    # A version label instead of a version ("" : none); see serving/labels.py.
    version_label: str = ""


@dataclass(frozen=True)
class Explanation:
    spec: ModelSpec
    method: str
    steps: int  # 0 for a method without steps
    per_item: int  # explained classes per item; output rows are item-major
    output: ExplainOutput


async def explain(model: LoadedModel, call: ExplainCall, limits: InputLimits) -> Explanation:
    spec = model.spec
    explainer = model.explainer
    methods = explainer.runner.methods if explainer is not None else []
    if explainer is None or not methods:
        raise FailedPreconditionError(
            f"model {spec.name!r} version {spec.version} was exported without explain signatures; add "
            f"them without retraining: {REEXPORT_COMMAND} --model-repository {spec.path.parent.parent} "
            f"--name "
            f"{spec.name} --version {spec.version} (it writes them as the next version)"
        )
    method = choose_method(call.method, methods, spec)
    steps = choose_steps(call.steps) if explainer.runner.takes_steps(method) else 0
    batch = model_input(call.payload, spec, limits)
    deadline = _deadline(call.time_remaining)
    fixed = fixed_target(call, spec)
    if fixed is not None or call.top_k <= 1:
        rows, targets, per_item = batch, np.full(len(batch), -1 if fixed is None else fixed, np.int32), 1
    else:
        # The top_k classes need the probabilities first: one Classify pass through the same batcher.
        per_item = min(call.top_k, len(spec.labels))
        probabilities = await model.batcher.submit(batch, deadline)
        indices, _ = top_classes(probabilities, per_item)
        rows = np.repeat(batch, per_item, axis=0)
        targets = indices.reshape(-1).astype(np.int32)
    output = await explainer.submit(method, steps, rows, targets, deadline)
    return Explanation(spec, method, steps, per_item, output)


def choose_method(asked: str, available: list[str], spec: ModelSpec) -> str:
    if asked == AUTO:
        return available[0]
    if asked not in METHODS:
        raise InvalidInputError(
            f"unknown explain method {asked!r}; expected auto or one of {', '.join(METHODS)}"
        )
    if asked not in available:
        raise InvalidInputError(
            f"model {spec.name!r} version {spec.version} explains with {', '.join(available)}, not {asked}"
        )
    return asked


def choose_steps(steps: int) -> int:
    if steps == 0:
        return DEFAULT_STEPS
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidInputError(
            f"steps must be between 1 and {MAX_STEPS} (0 for the default {DEFAULT_STEPS}), not {steps}"
        )
    return steps


def fixed_target(call: ExplainCall, spec: ModelSpec) -> int | None:
    labels = list(spec.labels)
    if call.target_label is not None:
        if call.target_label not in labels:
            raise InvalidInputError(
                f"model {spec.name!r} has no label {call.target_label!r}; its labels: {', '.join(labels)}"
            )
        return labels.index(call.target_label)
    if call.target_index is not None:
        if not 0 <= call.target_index < len(labels):
            raise InvalidInputError(
                f"target index {call.target_index} is out of range: model {spec.name!r} has "
                f"{len(labels)} labels (0 to {len(labels) - 1})"
            )
        return call.target_index
    return None


def _deadline(time_remaining: float | None) -> float | None:
    if time_remaining is None:
        return None
    if time_remaining <= 0:
        raise DeadlineExceededError("the request's deadline had passed when it arrived")
    return asyncio.get_running_loop().time() + time_remaining
