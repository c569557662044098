"""Typed tensors of the other protocols (KServe V2, TF Serving) → the data plane's payloads.

Both protocols send arrays with a dtype and a shape; this module checks them against what the model
accepts and turns them into the same ``ImagePayload`` / ``TextPayload`` the native API produces, so the
data plane validates and batches every protocol alike. Float images in [0, 1] become uint8 exactly as the
client library converts them (round to nearest), so every path gives the same answer for the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from classify_server.errors import InvalidInputError
from classify_server.serving.repository import ModelSpec
from classify_server.serving.validation import ImagePayload, Payload, TextPayload, is_image_shape


@dataclass(frozen=True)
class ExpectedInput:
    """What one protocol calls the model's input: its name, accepted dtypes and shapes."""

    name: str
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def describe(self) -> str:
        shapes = " or ".join(str(list(shape)) for shape in self.shapes)
        return f"{self.name!r}: {' or '.join(self.dtypes)} with shape {shapes}"


def image_pixels(array: np.ndarray, name: str) -> np.ndarray:
    """uint8 pixels from a uint8 array or from floats in [0, 1]; the shape is checked by the caller."""
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.float32, np.float64):
        if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise InvalidInputError(
                f"input {name!r}: float pixels must lie in [0, 1] (or send uint8 0-255); "
                f"got values from {float(np.nanmin(array)):g} to {float(np.nanmax(array)):g}"
            )
        return np.rint(array * 255.0).astype(np.uint8)
    raise InvalidInputError(
        f"input {name!r}: images are uint8 (0-255) or float32 in [0, 1], not {array.dtype}"
    )


def check_image_shape(shape: tuple[int, ...], name: str, expected: str) -> None:
    if not is_image_shape(shape):
        raise InvalidInputError(f"input {name!r} has shape {list(shape)}; the model expects {expected}")


def image_payload(array: np.ndarray, name: str, expected: str) -> ImagePayload:
    check_image_shape(tuple(array.shape), name, expected)
    pixels = np.ascontiguousarray(image_pixels(array, name))
    return ImagePayload(pixels.tobytes(), tuple(int(d) for d in pixels.shape))


def text_payload(values: list[bytes], shape: tuple[int, ...], name: str, expected: str) -> TextPayload:
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InvalidInputError(f"input {name!r} has shape {list(shape)}; the model expects {expected}")
    texts = []
    for position, value in enumerate(values):
        try:
            texts.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"input {name!r}: element {position} is not valid UTF-8 ({exc})"
            ) from None
    return TextPayload(tuple(texts))


def element_count(shape: tuple[int, ...], name: str) -> int:
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"input {name!r} has a negative dimension in shape {list(shape)}")
    return math.prod(shape)


def check_count(actual: int, shape: tuple[int, ...], name: str, what: str = "values") -> None:
    expected = math.prod(shape)
    if actual != expected:
        raise InvalidInputError(
            f"input {name!r} carries {actual} {what} but its shape {list(shape)} needs {expected}"
        )


def payload_for(
    spec: ModelSpec,
    array_or_texts: np.ndarray | list[bytes],
    shape: tuple[int, ...],
    name: str,
    expected: str,
) -> Payload:
    """The payload for a model from a decoded tensor (a numpy array for images, bytes for texts)."""
    if spec.input.kind == "image":
        if isinstance(array_or_texts, list):
            raise InvalidInputError(f"model {spec.name!r} classifies images; it expects {expected}")
        return image_payload(array_or_texts, name, expected)
    if not isinstance(array_or_texts, list):
        raise InvalidInputError(f"model {spec.name!r} classifies texts; it expects {expected}")
    return text_payload(array_or_texts, shape, name, expected)
