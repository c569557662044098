"""Calls one loaded version's ``explain_<method>`` signatures (written by classify-train).

The server knows no model: what a version can explain is the list of its explain signatures, and the
signature does all the work (preprocessing, tokenizing, gradients) inside the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SIGNATURE_PREFIX = "explain_"
# Order of preference for method "auto": the exact method first.
AUTO_ORDER = ("votes", "integrated_gradients", "occlusion")
METHODS = AUTO_ORDER
DEFAULT_STEPS = 32
MAX_STEPS = 1024
# Rows of model work one item costs per method, for sizing bounded executions: integrated gradients
# runs steps + 1 path points and one forward pass; occlusion 13 x 13 patch positions, the input and
# the blank image; votes one row.
OCCLUSION_ROWS = 13 * 13 + 2
REEXPORT_COMMAND = "classify-train export-signatures"


def rows_per_item(method: str, steps: int) -> int:
    if method == "integrated_gradients":
        return steps + 2
    if method == "occlusion":
        return OCCLUSION_ROWS
    return 1


@dataclass(frozen=True)
class ExplainOutput:
    """The signature's answers for a chunk of items, one row each (texts: tokens too)."""

    attributions: np.ndarray  # float32 (N, 28, 28) or (N, T)
    targets: np.ndarray  # int32 (N,)
    probabilities: np.ndarray  # float32 (N, classes)
    logit: np.ndarray
    baseline_logit: np.ndarray
    completeness_gap: np.ndarray
    tokens: np.ndarray | None = None  # object (N, T) of str, "" for padding

    @staticmethod
    def concatenate(parts: list[ExplainOutput]) -> ExplainOutput:
        if len(parts) == 1:
            return parts[0]
        fields = {}
        for name in ("attributions", "tokens"):
            arrays = [getattr(part, name) for part in parts]
            fields[name] = None if arrays[0] is None else _concat_padded(arrays, name == "tokens")
        for name in ("targets", "probabilities", "logit", "baseline_logit", "completeness_gap"):
            fields[name] = np.concatenate([getattr(part, name) for part in parts])
        return ExplainOutput(**fields)

    def rows(self, start: int, stop: int) -> ExplainOutput:
        return ExplainOutput(
            attributions=self.attributions[start:stop],
            targets=self.targets[start:stop],
            probabilities=self.probabilities[start:stop],
            logit=self.logit[start:stop],
            baseline_logit=self.baseline_logit[start:stop],
            completeness_gap=self.completeness_gap[start:stop],
            tokens=None if self.tokens is None else self.tokens[start:stop],
        )


def _concat_padded(arrays: list[np.ndarray], strings: bool) -> np.ndarray:
    """Texts of different chunks have different lengths: pad to the longest (0 or "")."""
    if arrays[0].ndim != 2 or len({a.shape[1] for a in arrays}) == 1:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    fill: Any = "" if strings else 0.0
    padded = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill) for a in arrays]
    return np.concatenate(padded)


class ExplainRunner:
    """The explain signatures of one loaded SavedModel: ``runner.run(method, inputs, targets, steps)``."""

    def __init__(self, signatures: Any, input_name: str) -> None:
        import tensorflow as tf

        self._tf = tf
        self._input_name = input_name
        self._functions = {
            name[len(SIGNATURE_PREFIX) :]: signatures[name]
            for name in signatures
            if name.startswith(SIGNATURE_PREFIX) and name[len(SIGNATURE_PREFIX) :] in METHODS
        }

    @property
    def methods(self) -> list[str]:
        """What this version can explain with, in ``auto``'s order of preference."""
        return [method for method in AUTO_ORDER if method in self._functions]

    def takes_steps(self, method: str) -> bool:
        return "steps" in self._functions[method].structured_input_signature[1]

    def run(self, method: str, inputs: np.ndarray, targets: np.ndarray, steps: int) -> ExplainOutput:
        """One signature call (a worker thread's job: TensorFlow releases the GIL while it computes)."""
        tf = self._tf
        function = self._functions[method]
        arguments = {self._input_name: tf.constant(inputs), "targets": tf.constant(targets, tf.int32)}
        if self.takes_steps(method):
            arguments["steps"] = tf.constant(steps, tf.int32)
        answer = function(**arguments)
        tokens = answer.get("tokens")
        return ExplainOutput(
            attributions=np.asarray(answer["attributions"].numpy(), np.float32),
            targets=answer["targets"].numpy().astype(np.int32),
            probabilities=np.asarray(answer["probabilities"].numpy(), np.float32),
            logit=answer["logit"].numpy(),
            baseline_logit=answer["baseline_logit"].numpy(),
            completeness_gap=answer["completeness_gap"].numpy(),
            tokens=None if tokens is None else _decoded(tokens.numpy()),
        )


def _decoded(tokens: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda token: token.decode("utf-8", "replace"), otypes=[object])(tokens)
