"""numpy and Python values ⇄ protobuf messages; shared by the sync and the asyncio client.

Everything here is pure (no I/O), so both clients build identical requests and read replies identically.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .types import ClassifyResult, ClassScore, InputSpec, ModelInfo, ModelMetadata, Prediction, VersionStatus
from .wire.arrays import IMAGE_PIXELS, IMAGE_SIDE, image_batch
from .wire.proto.classify.v1 import classify_pb2

EXPECTED_IMAGES = (
    "images must be a uint8 array (0-255) or a float array in [0, 1] of shape "
    "(N, 28, 28), (N, 28, 28, 1), (N, 784) or a single (28, 28) image"
)


@dataclass(frozen=True)
class Inputs:
    """A validated batch: exactly one of ``images`` (uint8, (N, 28, 28)) and ``texts`` is set."""

    images: np.ndarray | None = None
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.texts or ())

    def rows(self, start: int, stop: int) -> Inputs:
        if self.images is not None:
            return Inputs(images=self.images[start:stop])
        return Inputs(texts=(self.texts or [])[start:stop])


def as_inputs(images: object = None, texts: object = None) -> Inputs:
    """Validate the ``images=`` / ``texts=`` pair of a classify call; exactly one must be given."""
    if (images is None) == (texts is None):
        raise TypeError("pass exactly one of images= (a numpy array) or texts= (a list of strings)")
    inputs = Inputs(images=as_image_array(images)) if images is not None else Inputs(texts=as_texts(texts))
    if len(inputs) == 0:
        raise ValueError("nothing to classify: the batch is empty")
    return inputs


def as_image_array(images: object) -> np.ndarray:
    """Bring images to the wire layout: C-contiguous uint8 of shape (N, 28, 28)."""
    array = np.asarray(images)
    pixels = _as_uint8(array)
    shape = pixels.shape
    if shape == (IMAGE_SIDE, IMAGE_SIDE):
        pixels = pixels[np.newaxis]
    elif shape[1:] in ((IMAGE_PIXELS,), (IMAGE_SIDE, IMAGE_SIDE, 1)):  # flat rows or a channel axis
        pixels = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    elif not (len(shape) == 3 and shape[1:] == (IMAGE_SIDE, IMAGE_SIDE)):
        raise ValueError(f"{EXPECTED_IMAGES}; got shape {shape}")
    return np.ascontiguousarray(pixels)


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError(f"{EXPECTED_IMAGES}; got floats outside [0, 1]")
        # Round, not truncate: 0.999 * 255 must become 255, as a PNG writer would store it.
        return np.rint(array * 255.0).astype(np.uint8)
    raise ValueError(f"{EXPECTED_IMAGES}; got dtype {array.dtype}")


def as_texts(texts: object) -> list[str]:
    # A lone string is a Sequence too; classifying its characters one by one is never what was meant.
    if isinstance(texts, str | bytes):
        raise TypeError("texts must be a list of strings, not a single string: use texts=[text]")
    if not isinstance(texts, Sequence | np.ndarray):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    values = list(texts)
    for position, text in enumerate(values):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
    return values


def check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


# Where a request queues on the server: high first, low (batch jobs) in the room online traffic leaves.
# Native calls carry it in ClassifyRequest.priority; other protocols in this metadata key / HTTP header.
PRIORITY_HEADER = "x-classify-priority"
PRIORITIES = {
    "high": classify_pb2.PRIORITY_HIGH,
    "normal": classify_pb2.PRIORITY_NORMAL,
    "low": classify_pb2.PRIORITY_LOW,
}


def check_priority(priority: str | None) -> int:
    """The proto value of ``high``, ``normal`` or ``low`` (None: normal)."""
    if priority is None:
        return classify_pb2.PRIORITY_NORMAL
    value = PRIORITIES.get(priority.lower()) if isinstance(priority, str) else None
    if value is None:
        raise ValueError(f"priority must be one of high, normal, low, got {priority!r}")
    return value


def chunk_bounds(total: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of at most ``chunk_rows`` rows covering ``range(total)`` in order."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    return [(start, min(start + chunk_rows, total)) for start in range(0, total, chunk_rows)]


def classify_request(
    model: str,
    inputs: Inputs,
    *,
    top_k: int = 1,
    version: int | None = None,
    return_probabilities: bool = False,
    request_id: str = "",
    version_label: str = "",
    priority: int = classify_pb2.PRIORITY_NORMAL,
) -> classify_pb2.ClassifyRequest:
    request = classify_pb2.ClassifyRequest(
        model=model,
        version=version or 0,
        version_label=version_label,
        priority=priority,  # type: ignore[arg-type]
        top_k=top_k,
        return_probabilities=return_probabilities,
        request_id=request_id,
        # Packed arrays instead of a message per item: far cheaper for both ends on large batches.
        answer_format=classify_pb2.ANSWER_FORMAT_ARRAYS,
    )
    if inputs.images is not None:
        request.images.CopyFrom(image_batch(inputs.images))
    else:
        request.texts.texts.extend(inputs.texts or [])
    return request


def prediction_from_proto(message: classify_pb2.Prediction) -> Prediction:
    classes = [ClassScore(index=c.index, label=c.label, score=float(c.score)) for c in message.classes]
    probabilities = np.array(message.probabilities, dtype=np.float32) if message.probabilities else None
    return Prediction(classes=classes, probabilities=probabilities)


def predictions_from_arrays(
    indices: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    probabilities: np.ndarray | None = None,
) -> list[Prediction]:
    """Per-item predictions from (N, k) class indices and scores, best first, and optional (N, C) rows."""
    return [
        Prediction(
            classes=[
                ClassScore(index=index, label=labels[index], score=score)
                for index, score in zip(row_indices, row_scores, strict=True)
            ],
            probabilities=None if probabilities is None else probabilities[row],
        )
        for row, (row_indices, row_scores) in enumerate(zip(indices.tolist(), scores.tolist(), strict=True))
    ]


def _predictions_from_array_answers(arrays: classify_pb2.ArrayAnswers) -> list[Prediction]:
    shape = (int(arrays.rows), int(arrays.top_k))
    indices = np.frombuffer(arrays.top_indices, dtype="<i4").reshape(shape)
    scores = np.frombuffer(arrays.top_scores, dtype="<f4").reshape(shape)
    labels = list(arrays.labels)
    probabilities = None
    if arrays.probabilities:
        probabilities = np.frombuffer(arrays.probabilities, dtype="<f4").reshape(shape[0], len(labels))
    return predictions_from_arrays(indices, scores, labels, probabilities)


def result_from_response(response: classify_pb2.ClassifyResponse) -> ClassifyResult:
    """Read either answer format: packed arrays (what this library asks for) or one message per item."""
    if response.HasField("arrays"):
        predictions = _predictions_from_array_answers(response.arrays)
    else:
        predictions = [prediction_from_proto(p) for p in response.predictions]
    return ClassifyResult(model=response.model, version=int(response.version), predictions=predictions)


def merge_results(parts: Sequence[ClassifyResult]) -> ClassifyResult:
    """Join the results of consecutive chunks, in the order given, into one result."""
    if not parts:
        raise ValueError("no results to merge")
    if len(parts) == 1:
        return parts[0]
    predictions = [prediction for part in parts for prediction in part.predictions]
    return ClassifyResult(model=parts[0].model, version=parts[0].version, predictions=predictions)


def model_info_from_proto(message: classify_pb2.ModelSummary) -> ModelInfo:
    return ModelInfo(
        name=message.name,
        version=int(message.version),
        task=message.task,
        state=message.state,
        reason=message.reason,
        versions=tuple(VersionStatus(int(v.version), v.state, v.reason) for v in message.versions),
        version_labels={label: int(version) for label, version in sorted(message.version_labels.items())},
    )


def metadata_from_proto(message: classify_pb2.ModelMetadata) -> ModelMetadata:
    return ModelMetadata(
        name=message.name,
        version=int(message.version),
        task=message.task,
        labels=list(message.labels),
        input=InputSpec(
            kind=message.input.kind,
            dtype=message.input.dtype,
            shape=tuple(int(dim) for dim in message.input.shape),
            description=message.input.description,
        ),
        metrics=dict(message.metrics),
        quick=message.quick,
        versions=[int(v) for v in message.versions],
        model_json=_parse_model_json(message.model_json),
    )


def _parse_model_json(text: str) -> dict:
    # model.json is informative; a server that sends none (or something odd) must not break metadata().
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


LENGTH_PREFIX = struct.Struct("<I")


def serialize_texts(texts: list[str]) -> bytes:
    """Triton's raw BYTES layout (KServe V2): a little-endian uint32 length before each UTF-8 string."""
    encoded = [text.encode("utf-8") for text in texts]
    return b"".join(LENGTH_PREFIX.pack(len(value)) + value for value in encoded)
