"""Uploaded PNG/JPEG files → the 28×28 grey pixels the image models take.

The rule is the client's for a folder of images (`classify score`): grey (Pillow mode L; colour is
averaged with ITU-R 601 weights, transparency dropped), then resized to 28×28 with Lanczos when it is
another size, aspect ratio not kept. Nothing is inverted: like MNIST, digits should be light on dark.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from classify_server.errors import InvalidInputError, TooLargeError
from classify_server.serving.validation import IMAGE_HEIGHT, IMAGE_WIDTH

# A small file may declare a huge canvas (a decompression bomb): refuse it before decoding any pixel.
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg")


def decode_image(data: bytes, name: str) -> np.ndarray:
    """uint8 (28, 28) pixels of one PNG or JPEG file, or INVALID_ARGUMENT saying why not."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise TooLargeError(
                    f"{name} is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels are decoded "
                    "(it is resized to 28x28 anyway)"
                )
            gray = image.convert("L")
            if gray.size != (IMAGE_WIDTH, IMAGE_HEIGHT):
                gray = gray.resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.Resampling.LANCZOS)
            return np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"{name} is not a readable PNG or JPEG image ({exc})") from None
