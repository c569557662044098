"""Batch scoring on Ray Data: ``ClassifyPredictor`` is the callable class for ``Dataset.map_batches``.

    ds = ray.data.read_parquet("s3://bucket/digits/")
    ds = ds.map_batches(ClassifyPredictor, fn_constructor_kwargs={"target": "classify:8500",
                        "model": "mnist-cnn"}, concurrency=4, batch_size=256)
    ds.write_parquet("s3://bucket/scored/")

Ray makes ``concurrency`` actors; each holds one Client (one gRPC channel) for its life, and sends each
batch it is handed as Classify calls with the library's retries (UNAVAILABLE is sent again within the
call's deadline, so a restarting server loses no row) and deadlines. The batch comes back with the
columns ``label`` and ``score`` (and ``error``: None, or why that row was not scored), optionally
``top_k_labels`` / ``top_k_scores`` and ``probabilities``, and ``true_label`` / ``correct`` when the batch
has a label column. Needs the ``ray`` extra: pip install 'classify-client[ray]'.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .batch_inputs import BatchInputs, batch_inputs
from .client import Client
from .errors import ClassifyError, InvalidInputError, MessageTooLargeError, OverloadedError
from .retry import RetryPolicy
from .settings import DEFAULT_RETRY, DEFAULT_TIMEOUT
from .types import Prediction

# RESOURCE_EXHAUSTED (a full server queue) is waited out this many times before a batch's rows fail.
BUSY_ATTEMPTS = 5
BUSY_FIRST_PAUSE = 0.2


class ClassifyPredictor:
    """Scores Ray Data batches (dicts of numpy arrays) with a model of a Classify server.

    ``target`` is the server (``host:port``, or ``dns:///classify-server:8500``, a headless Service, to
    spread calls round-robin over every replica); the model version is pinned when the actor starts, so
    every actor scores with the same one. ``keep`` limits the input columns returned beside the results
    (None keeps them all).
    """

    def __init__(
        self,
        target: str,
        model: str,
        *,
        version: int | None = None,
        top_k: int = 1,
        probabilities: bool = False,
        text_column: str = "text",
        image_column: str = "image",
        pixel_prefix: str = "pixel",
        label_column: str = "label",
        keep: Sequence[str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        headers: Mapping[str, str] | None = None,
        load_balancing: str | None = None,
    ) -> None:
        # A dns:/// name (a headless Service) resolves to every replica: spread calls over all of them.
        balancing = load_balancing or ("round_robin" if target.startswith("dns:") else None)
        self._client = Client(target, timeout=timeout, headers=headers, retry=retry, load_balancing=balancing)
        metadata = self._client.metadata(model, version=version)
        self._model = model
        self._version = metadata.version
        self._labels = list(metadata.labels)
        self._label_index = {label: index for index, label in enumerate(self._labels)}
        self._top_k = min(top_k, len(self._labels))
        self._probabilities = probabilities
        self._columns = {
            "text_column": text_column,
            "image_column": image_column,
            "pixel_prefix": pixel_prefix,
        }
        self._label_column = label_column
        self._keep = None if keep is None else list(keep)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = batch_inputs(batch, **self._columns)
        outcomes = self._score(inputs)
        out = {name: batch[name] for name in (self._keep if self._keep is not None else batch)}
        out.update(self._columns_of(outcomes, len(inputs.errors)))
        if self._label_column in batch:
            out.update(self._truth(batch[self._label_column], outcomes))
        return out

    def _score(self, inputs: BatchInputs) -> list[Prediction | str]:
        """A Prediction or an error text per row of the batch, in order."""
        outcomes: list[Prediction | str] = [error or "" for error in inputs.errors]
        good = inputs.good
        if good:
            for row, outcome in zip(good, self._classify(inputs.images, inputs.texts), strict=True):
                outcomes[row] = outcome
        return outcomes

    def _classify(self, images: np.ndarray | None, texts: list[str] | None) -> list[Prediction | str]:
        for attempt in range(BUSY_ATTEMPTS + 1):
            try:
                result = self._client.classify(
                    self._model,
                    images=images,
                    texts=texts,
                    top_k=self._top_k,
                    version=self._version,
                    return_probabilities=self._probabilities,
                )
                return list(result.predictions)
            except OverloadedError as error:
                if attempt == BUSY_ATTEMPTS:
                    return [f"{error.code.name}: {error.details}"] * rows_of(images, texts)
                time.sleep(BUSY_FIRST_PAUSE * 2**attempt)
            except (InvalidInputError, MessageTooLargeError) as error:
                # One bad row fails the whole call: ask row by row to find it and score the others.
                if rows_of(images, texts) == 1:
                    return [error.details or error.code.name]
                return self._row_by_row(images, texts)
        raise AssertionError("unreachable")

    def _row_by_row(self, images: np.ndarray | None, texts: list[str] | None) -> list[Prediction | str]:
        if images is not None:
            return [outcome for image in images for outcome in self._classify(image[None], None)]
        return [outcome for text in texts or [] for outcome in self._classify(None, [text])]

    def _columns_of(self, outcomes: list[Prediction | str], rows: int) -> dict[str, np.ndarray]:
        labels = np.array([o.label if isinstance(o, Prediction) else None for o in outcomes], dtype=object)
        scores = np.array(
            [o.score if isinstance(o, Prediction) else np.nan for o in outcomes], dtype=np.float64
        )
        errors = np.array([None if isinstance(o, Prediction) else o for o in outcomes], dtype=object)
        columns = {"label": labels, "score": scores, "error": errors}
        if self._top_k > 1:
            empty = [""] * self._top_k, [np.nan] * self._top_k
            top = [
                ([c.label for c in o.classes], [c.score for c in o.classes])
                if isinstance(o, Prediction)
                else empty
                for o in outcomes
            ]
            columns["top_k_labels"] = np.array([names for names, _ in top], dtype=object).reshape(
                rows, self._top_k
            )
            columns["top_k_scores"] = np.array([values for _, values in top], dtype=np.float64)
        if self._probabilities:
            blank = np.full(len(self._labels), np.nan, dtype=np.float32)
            columns["probabilities"] = np.stack(
                [
                    o.probabilities if isinstance(o, Prediction) and o.probabilities is not None else blank
                    for o in outcomes
                ]
            ).astype(np.float32)
        return columns

    def _truth(self, raw_labels: np.ndarray, outcomes: list[Prediction | str]) -> dict[str, np.ndarray]:
        """The true label (a model label name) and whether the prediction matched, per row."""
        truths = [self._label_name(value) for value in raw_labels]
        correct = [
            None if truth is None or not isinstance(o, Prediction) else o.label == truth
            for truth, o in zip(truths, outcomes, strict=True)
        ]
        return {"true_label": np.array(truths, dtype=object), "correct": np.array(correct, dtype=object)}

    def _label_name(self, value: Any) -> str | None:
        """A label as written (class index or name; -1 or empty for none) as the model's label name."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, str):
            if value.strip() in self._label_index:
                return value.strip()
            try:
                value = int(value)
            except ValueError:
                return None
        index = int(value)
        return self._labels[index] if 0 <= index < len(self._labels) else None

    def __del__(self) -> None:
        # The channel is the actor's for its whole life; closing it when Ray drops the actor is tidy.
        with contextlib.suppress(AttributeError, ClassifyError):
            self._client.close()


def rows_of(images: np.ndarray | None, texts: list[str] | None) -> int:
    return len(images) if images is not None else len(texts or [])
