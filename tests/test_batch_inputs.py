"""The columns of a Ray Data batch as model inputs (classify_client.batch_inputs): every layout the
predictor accepts, and bad rows reported per row instead of failing the batch. Real MNIST digits."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classify_client.batch_inputs import PIXEL_ERROR, batch_inputs
from classify_client.formats import read_idx

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    data = Path(os.environ.get("CLASSIFY_DATA_DIR", REPO.parent / "shared" / "data"))
    return read_idx(data / "mnist" / "train-images-idx3-ubyte.gz")[:6]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_arrays_flat_or_square_are_used_as_they_are(digits: np.ndarray) -> None:
    for column in (digits, digits.reshape(len(digits), -1), digits[..., None]):
        inputs = batch_inputs({"image": column})
        assert inputs.errors == [None] * len(digits)
        np.testing.assert_array_equal(inputs.images, digits)


def test_mnist_as_csv_pixel_columns(digits: np.ndarray) -> None:
    flat = digits.reshape(len(digits), -1).astype(np.int64)
    flat[2, 5] = 256  # out of range
    batch = {f"pixel{i}": flat[:, i] for i in range(784)}
    inputs = batch_inputs(batch)
    assert inputs.errors == [None, None, PIXEL_ERROR, None, None, None]
    np.testing.assert_array_equal(inputs.images, np.delete(digits, 2, axis=0))


def test_encoded_images_dicts_and_bad_values_in_an_object_column(digits: np.ndarray) -> None:
    column = np.array(
        [
            png(digits[0]),
            {"bytes": png(digits[1]), "path": "x.png"},
            b"\x89PNG broken",
            None,
            digits[4].ravel(),
        ],
        dtype=object,
    )
    inputs = batch_inputs({"image": column})
    assert inputs.errors[0] is None and inputs.errors[1] is None and inputs.errors[4] is None
    assert inputs.errors[2].startswith("cannot read image")
    assert inputs.errors[3] == "no image"
    np.testing.assert_array_equal(inputs.images, digits[[0, 1, 4]])


def test_texts_and_a_batch_without_inputs() -> None:
    inputs = batch_inputs(
        {"review": np.array(["a fine film", "  ", None], dtype=object)}, text_column="review"
    )
    assert inputs.texts == ["a fine film"]
    assert inputs.errors == [None, "missing or empty text", "missing or empty text"]
    with pytest.raises(ValueError, match=r"no .text. column, no .image. column and no pixel0..pixel783"):
        batch_inputs({"id": np.arange(3)})
