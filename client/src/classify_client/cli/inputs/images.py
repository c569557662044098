"""Images as files: a folder of PNG/JPEG, and encoded image bytes (a Parquet ``image`` column)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...formats import FormatError
from ...wire.arrays import IMAGE_SIDE
from .rows import IMAGE, InputRow, MissingDependencyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PILLOW_MISSING = "reading PNG/JPEG needs Pillow: pip install 'classify-client[images]'"


class ImageFolder:
    """A folder of PNG/JPEG files, sorted by name; each converted to grayscale and sized 28x28."""

    kind = IMAGE

    def __init__(self, path: Path) -> None:
        self.path = path
        self._image_module = import_pillow()
        self._files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise FormatError(path, "folder holds no PNG or JPEG files")
        self.count = len(self._files)

    def rows(self) -> Iterator[InputRow]:
        for index, file in enumerate(self._files):
            try:
                image = load_image(self._image_module, file)
            except Exception as exc:  # a corrupt file makes Pillow raise nearly anything
                yield InputRow(index, file.name, error=f"cannot read image: {exc}")
            else:
                yield InputRow(index, file.name, image=image)


def import_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(PILLOW_MISSING) from exc
    return Image


def load_image(image_module: Any, file: Path | io.BytesIO) -> np.ndarray:
    """A 28x28 uint8 grayscale array from an image file of any size or mode."""
    with image_module.open(file) as image:
        gray = image.convert("L")
        if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
            gray = gray.resize((IMAGE_SIDE, IMAGE_SIDE), image_module.Resampling.LANCZOS)
        return np.asarray(gray, dtype=np.uint8)


def decode_image_bytes(image_module: Any, data: bytes) -> np.ndarray:
    """A 28x28 uint8 grayscale array from the bytes of a PNG/JPEG file."""
    return load_image(image_module, io.BytesIO(data))
