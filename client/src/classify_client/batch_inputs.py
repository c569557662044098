"""The items of a column-oriented batch (a dict of numpy arrays, as Ray Data hands them) as model inputs.

Images come as an ``image`` column (arrays of 28x28 or 784 pixels, or PNG/JPEG bytes, or the Hugging
Face ``{"bytes": ...}`` form) or as the MNIST-as-CSV columns ``pixel0`` .. ``pixel783``; texts as a
``text`` column. A row that cannot be used gets an error instead of failing its batch.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .wire.arrays import IMAGE_PIXELS, IMAGE_SIDE

PIXEL_ERROR = "pixel values must be whole numbers from 0 to 255, 784 of them"


@dataclass(frozen=True)
class BatchInputs:
    """The usable items of a batch and, per row, why it is not usable (None for usable rows)."""

    images: np.ndarray | None
    texts: list[str] | None
    errors: list[str | None]

    @property
    def good(self) -> list[int]:
        return [row for row, error in enumerate(self.errors) if error is None]


def batch_inputs(
    batch: Mapping[str, Any],
    *,
    text_column: str = "text",
    image_column: str = "image",
    pixel_prefix: str = "pixel",
) -> BatchInputs:
    """The inputs of ``batch``; ValueError when it has none of the columns that hold inputs."""
    if text_column in batch:
        return text_inputs(batch[text_column])
    if image_column in batch:
        return image_inputs(batch[image_column])
    pixel_names = [f"{pixel_prefix}{i}" for i in range(IMAGE_PIXELS)]
    if all(name in batch for name in pixel_names):
        matrix = np.column_stack([np.asarray(batch[name], dtype=np.float64) for name in pixel_names])
        return pixel_inputs(matrix)
    raise ValueError(
        f"the batch has no {text_column!r} column, no {image_column!r} column and no "
        f"{pixel_prefix}0..{pixel_prefix}783 columns; it has {', '.join(list(batch)[:12])}"
    )


def text_inputs(column: Any) -> BatchInputs:
    texts, errors = [], []
    for value in column:
        good = isinstance(value, str) and bool(value.strip())
        texts.append(value if good else "")
        errors.append(None if good else "missing or empty text")
    return BatchInputs(None, [texts[i] for i, e in enumerate(errors) if e is None], errors)


def pixel_inputs(matrix: np.ndarray) -> BatchInputs:
    """(N, 784) numbers: rows of whole numbers in 0-255 are images, the others errors."""
    values = np.asarray(matrix, dtype=np.float64).reshape(len(matrix), -1)
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(values) & (values >= 0) & (values <= 255) & (values == np.round(values))).all(
            axis=1
        )
    images = values[ok].astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return BatchInputs(images, None, [None if good else PIXEL_ERROR for good in ok])


def image_inputs(column: Any) -> BatchInputs:
    array = np.asarray(column) if not isinstance(column, np.ndarray) else column
    if array.dtype != object and array.ndim >= 2 and array[0].size == IMAGE_PIXELS:
        return pixel_inputs(array.reshape(len(array), IMAGE_PIXELS))
    images, errors = [], []
    for value in array:
        image, error = one_image(value)
        errors.append(error)
        if image is not None:
            images.append(image)
    stacked = np.stack(images) if images else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    return BatchInputs(stacked, None, errors)


def one_image(value: Any) -> tuple[np.ndarray | None, str | None]:
    """One image of an object column: encoded bytes, a {"bytes": ...} dict, or pixel values."""
    if isinstance(value, Mapping):
        value = value.get("bytes")
    if value is None:
        return None, "no image"
    if isinstance(value, bytes | bytearray | memoryview):
        return decode_image(bytes(value))
    try:
        pixels = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None, PIXEL_ERROR
    if pixels.size != IMAGE_PIXELS:
        return None, PIXEL_ERROR
    result = pixel_inputs(pixels.reshape(1, IMAGE_PIXELS))
    return (result.images[0], None) if result.errors[0] is None else (None, PIXEL_ERROR)  # type: ignore[index]


def decode_image(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """A 28x28 grayscale image from PNG/JPEG bytes (resized as `classify score` does), or why not."""
    try:
        from PIL import Image
    except ImportError:
        return None, "decoding PNG/JPEG needs Pillow: pip install 'classify-client[images]'"
    try:
        with Image.open(io.BytesIO(data)) as image:
            gray = image.convert("L")
            if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
                gray = gray.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
            return np.asarray(gray, dtype=np.uint8), None
    except Exception as exc:  # a corrupt file makes Pillow raise nearly anything
        return None, f"cannot read image: {exc}"
