"""Turns request payloads into model-ready arrays, or says precisely what was wrong and what was expected."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from classify_client.wire.arrays import IMAGE_SIDE
from classify_server.errors import InvalidInputError, TooLargeError
from classify_server.serving.repository import ModelSpec

IMAGE_HEIGHT = IMAGE_WIDTH = IMAGE_SIDE  # the wire's one image size, shared with the client
IMAGE_TAILS = ((IMAGE_HEIGHT, IMAGE_WIDTH), (IMAGE_HEIGHT, IMAGE_WIDTH, 1))


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """[N, 28, 28] or [N, 28, 28, 1] with N >= 0: the shapes every protocol accepts for images."""
    return len(shape) in (3, 4) and shape[1:] in IMAGE_TAILS and shape[0] >= 0


@dataclass(frozen=True)
class ImagePayload:
    data: bytes
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TextPayload:
    texts: tuple[str, ...]


Payload = ImagePayload | TextPayload


@dataclass(frozen=True)
class InputLimits:
    max_request_rows: int
    max_text_chars: int


def model_input(payload: Payload | None, spec: ModelSpec, limits: InputLimits) -> np.ndarray:
    """The batch to feed ``spec``'s signature: uint8 (N, 28, 28) images or an object array of str."""
    expected = _expected_input(spec)
    if payload is None:
        raise InvalidInputError(f"request carries no input; model {spec.name!r} expects {expected}")
    if spec.input.kind == "image":
        if not isinstance(payload, ImagePayload):
            raise InvalidInputError(
                f"model {spec.name!r} classifies images and expects {expected}; the request carried texts"
            )
        return _images(payload, spec, limits)
    if not isinstance(payload, TextPayload):
        raise InvalidInputError(
            f"model {spec.name!r} classifies texts and expects {expected}; the request carried images"
        )
    return _texts(payload, spec, limits)


def _expected_input(spec: ModelSpec) -> str:
    if spec.input.kind == "image":
        return "images: uint8 bytes with shape [N, 28, 28] or [N, 28, 28, 1]"
    return "texts: a list of non-empty strings"


def _check_rows(rows: int, spec: ModelSpec, limits: InputLimits) -> None:
    if rows == 0:
        raise InvalidInputError(f"empty batch: send at least one item to model {spec.name!r}")
    if rows > limits.max_request_rows:
        raise TooLargeError(
            f"batch of {rows} items exceeds this server's limit of {limits.max_request_rows} per request; "
            "split it (the client library does this for you)"
        )


def _images(payload: ImagePayload, spec: ModelSpec, limits: InputLimits) -> np.ndarray:
    shape = payload.shape
    if not is_image_shape(shape):
        raise InvalidInputError(
            f"image shape {list(shape)} is not [N, 28, 28] or [N, 28, 28, 1] (model {spec.name!r})"
        )
    rows = shape[0]
    _check_rows(rows, spec, limits)
    expected_bytes = rows * IMAGE_HEIGHT * IMAGE_WIDTH
    if len(payload.data) != expected_bytes:
        raise InvalidInputError(_byte_count_message(len(payload.data), expected_bytes, shape))
    return np.frombuffer(payload.data, dtype=np.uint8).reshape(rows, IMAGE_HEIGHT, IMAGE_WIDTH)


def _byte_count_message(actual: int, expected: int, shape: tuple[int, ...]) -> str:
    message = f"image data has {actual} bytes but shape {list(shape)} of uint8 needs {expected}"
    ratio = actual / expected if expected else math.inf
    if ratio in (2, 4, 8):
        message += f" (that is {ratio:g} bytes per pixel: images travel as uint8, 0-255, one byte per pixel)"
    return message


def _texts(payload: TextPayload, spec: ModelSpec, limits: InputLimits) -> np.ndarray:
    texts = payload.texts
    _check_rows(len(texts), spec, limits)
    for position, text in enumerate(texts):
        if not text.strip():
            raise InvalidInputError(f"text {position} is empty; model {spec.name!r} needs words to classify")
        if len(text) > limits.max_text_chars:
            raise TooLargeError(
                f"text {position} has {len(text)} characters; "
                f"this server accepts at most {limits.max_text_chars}"
            )
    return np.array(texts, dtype=object)
