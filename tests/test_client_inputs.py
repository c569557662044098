"""Readers of every input format of `classify score`, on small real files built from the shared data."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from classify_client.cli.inputs import (
    PILLOW_MISSING,
    IdxImages,
    ImageFolder,
    JsonLinesTexts,
    MissingDependencyError,
    NpyImages,
    TextLines,
    open_input,
)
from classify_client.formats import FormatError, iter_jsonl, read_idx, write_idx

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("CLASSIFY_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The first 40 real MNIST training digits and their labels."""
    images = read_idx(data_dir() / "mnist" / "train-images-idx3-ubyte.gz")[:40]
    labels = read_idx(data_dir() / "mnist" / "train-labels-idx1-ubyte.gz")[:40]
    return images, labels


@pytest.fixture(scope="module")
def reviews() -> list[dict]:
    """Six real IMDb reviews, both labels."""
    records = []
    for line in iter_jsonl(data_dir() / "imdb" / "imdb_train.jsonl.gz"):
        assert line.record is not None
        records.append(line.record)
        if len(records) == 3:
            break
    return records


def images_of(source) -> np.ndarray:
    return np.stack([row.image for row in source.rows()])


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz", "digits.bin.gz"])
def test_idx_images_stream_in_order_whatever_the_name(tmp_path: Path, mnist, name: str) -> None:
    images, _ = mnist
    path = tmp_path / name
    write_idx(path, images)  # gzip when the name ends in .gz; "digits.bin.gz" is found by content
    source = open_input(path)
    assert isinstance(source, IdxImages)
    assert (source.kind, source.count) == ("image", 40)
    rows = list(source.rows())
    assert [row.index for row in rows] == list(range(40))
    assert rows[3].source == f"{name}#3"
    np.testing.assert_array_equal(np.stack([row.image for row in rows]), images)


def test_idx_stream_crosses_block_boundaries(tmp_path: Path, mnist, monkeypatch) -> None:
    monkeypatch.setattr("classify_client.cli.inputs.arrays.BLOCK_ROWS", 7)
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, mnist[0])
    np.testing.assert_array_equal(images_of(open_input(path)), mnist[0])


def test_truncated_idx_keeps_every_declared_row_and_names_the_missing_ones(tmp_path: Path, mnist) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, mnist[0])
    path.write_bytes(path.read_bytes()[:-100])  # the last image loses its final 100 bytes
    for source in (open_input(path), open_input(gz_copy(path))):
        rows = list(source.rows())
        assert source.count == len(rows) == 40
        good = [row for row in rows if row.error is None]
        np.testing.assert_array_equal(np.stack([row.image for row in good]), mnist[0][:39])
        assert rows[39].image is None
        assert "ends after 31260 of 31360 bytes, inside image 39" in (rows[39].error or "")
        assert [row.index for row in rows] == list(range(40))


def test_cut_gzip_stream_scores_what_it_delivered(tmp_path: Path, mnist) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, mnist[0])
    path.write_bytes(path.read_bytes()[:-200])
    rows = list(open_input(path).rows())
    assert len(rows) == 40
    bad = [row for row in rows if row.error is not None]
    assert bad, "a cut gzip stream cannot deliver every image"
    assert all("corrupt gzip stream" in (row.error or "") for row in bad)
    assert [row.index for row in bad] == list(range(40 - len(bad), 40))  # only the tail is missing
    good = np.stack([row.image for row in rows if row.error is None])
    np.testing.assert_array_equal(good, mnist[0][: len(good)])


def gz_copy(path: Path) -> Path:
    copy = path.with_name(path.name + ".gz")
    copy.write_bytes(gzip.compress(path.read_bytes()))
    return copy


def test_not_idx_and_idx_labels_are_refused(tmp_path: Path, mnist) -> None:
    fake = tmp_path / "images-idx3-ubyte"
    fake.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(FormatError, match="not an IDX file"):
        open_input(fake)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, mnist[1])
    with pytest.raises(FormatError, match=r"one dimension \(labels\?\), not images"):
        open_input(labels)


@pytest.mark.parametrize("shape", [(40, 28, 28), (40, 784), (40, 28, 28, 1)])
def test_npy_uint8_layouts(tmp_path: Path, mnist, shape: tuple[int, ...]) -> None:
    path = tmp_path / "digits.npy"
    np.save(path, mnist[0].reshape(shape))
    source = open_input(path)
    assert isinstance(source, NpyImages)
    assert source.count == 40
    np.testing.assert_array_equal(images_of(source), mnist[0])


def test_npy_floats_are_scaled_and_bad_rows_reported(tmp_path: Path, mnist) -> None:
    floats = mnist[0][:5].astype(np.float32) / 255.0
    floats[2, 0, 0] = 1.5
    path = tmp_path / "floats.npy"
    np.save(path, floats)
    rows = list(open_input(path).rows())
    assert [row.error is None for row in rows] == [True, True, False, True, True]
    assert "within [0, 1]" in (rows[2].error or "")
    np.testing.assert_array_equal(rows[4].image, mnist[0][4])


def test_npy_wrong_shape_dtype_or_truncation(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(
        FormatError, match=r"\(N, 28, 28\), \(N, 784\) or \(N, 28, 28, 1\); got \[3, 32, 32\]"
    ):
        open_input(path)
    np.save(path, np.zeros((3, 28, 28), np.int32))
    with pytest.raises(FormatError, match="dtype int32"):
        open_input(path)
    np.save(path, np.zeros((30, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(FormatError, match=r"not a readable \.npy"):
        open_input(path)


def write_png_folder(folder: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image, mode="L").save(folder / f"digit_{index:03d}.png")


def test_png_folder_reads_real_digits_sorted_by_name(tmp_path: Path, mnist) -> None:
    folder = tmp_path / "pngs"
    write_png_folder(folder, mnist[0][:12])
    (folder / "README.txt").write_text("not an image")
    source = open_input(folder)
    assert isinstance(source, ImageFolder)
    assert source.count == 12
    rows = list(source.rows())
    assert [row.source for row in rows][:2] == ["digit_000.png", "digit_001.png"]
    np.testing.assert_array_equal(np.stack([row.image for row in rows]), mnist[0][:12])


def test_folder_converts_color_resizes_and_reports_corrupt_files(tmp_path: Path, mnist) -> None:
    from PIL import Image

    folder = tmp_path / "mixed"
    write_png_folder(folder, mnist[0][:2])
    big = Image.fromarray(mnist[0][2], mode="L").resize((112, 112)).convert("RGB")
    big.save(folder / "digit_002_big.jpg", quality=95)
    good = (folder / "digit_000.png").read_bytes()
    (folder / "digit_001_corrupt.png").write_bytes(good[: len(good) // 2])
    (folder / "digit_003_garbage.PNG").write_bytes(b"not a png at all")
    rows = list(open_input(folder).rows())
    assert [row.source for row in rows] == [
        "digit_000.png",
        "digit_001.png",
        "digit_001_corrupt.png",
        "digit_002_big.jpg",
        "digit_003_garbage.PNG",
    ]
    assert [row.index for row in rows] == [0, 1, 2, 3, 4]
    assert rows[2].error is not None
    assert rows[2].error.startswith("cannot read image")
    assert rows[4].error is not None
    assert rows[3].image is not None
    assert rows[3].image.shape == (28, 28)
    # A resized JPEG of the same digit stays close to the original pixels.
    assert np.abs(rows[3].image.astype(int) - mnist[0][2].astype(int)).mean() < 20


def test_empty_folder_and_missing_pillow(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no PNG or JPEG"):
        open_input(tmp_path / "empty")
    monkeypatch.setitem(sys.modules, "PIL", None)  # what an install without the images extra looks like
    with pytest.raises(MissingDependencyError) as info:
        open_input(tmp_path / "empty")
    assert (
        str(info.value)
        == PILLOW_MISSING
        == ("reading PNG/JPEG needs Pillow: pip install 'classify-client[images]'")
    )


def test_jsonl_rows_keep_positions_and_report_bad_lines(tmp_path: Path, reviews: list[dict]) -> None:
    lines = [
        json.dumps({"text": reviews[0]["text"], "label": reviews[0]["label"]}),
        '{"text": "unterminated',
        "",
        json.dumps({"text": "   ", "label": 1}),
        json.dumps({"review": "no text field"}),
        "[1, 2]",
        json.dumps({"text": reviews[1]["text"], "label": "positive"}),
        json.dumps({"text": reviews[2]["text"]}),
    ]
    path = tmp_path / "reviews.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    source = open_input(path)
    assert isinstance(source, JsonLinesTexts)
    assert (source.kind, source.count) == ("text", None)
    rows = list(source.rows())
    assert [row.index for row in rows] == list(range(7))
    assert [row.source for row in rows] == [f"reviews.jsonl.gz:{n}" for n in (1, 2, 4, 5, 6, 7, 8)]
    assert rows[0].text == reviews[0]["text"]
    assert rows[0].label == reviews[0]["label"]
    assert "invalid JSON" in (rows[1].error or "")
    assert rows[2].error == "empty text"
    assert rows[3].error == "missing or non-string 'text' field"
    assert "expected a JSON object" in (rows[4].error or "")
    assert (rows[5].label, rows[5].error) == ("positive", None)
    assert (rows[6].label, rows[6].error) == (None, None)


def test_text_lines_skip_blank_lines_and_survive_bad_bytes(tmp_path: Path, reviews: list[dict]) -> None:
    path = tmp_path / "reviews.txt"
    path.write_bytes(
        reviews[0]["text"].encode() + b"\n\n   \n" + b"caf\xe9 latin-1\r\n" + reviews[1]["text"].encode()
    )
    source = open_input(path)
    assert isinstance(source, TextLines)
    rows = list(source.rows())
    assert [row.source for row in rows] == ["reviews.txt:1", "reviews.txt:4", "reviews.txt:5"]
    assert rows[0].text == reviews[0]["text"]
    assert "invalid UTF-8" in (rows[1].error or "")
    assert rows[2].text == reviews[1]["text"]


def test_unknown_and_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        open_input(tmp_path / "nope.jsonl")
    other = tmp_path / "data.xml"
    other.write_text("a,b\n")
    with pytest.raises(FormatError, match="cannot tell the input format; expected an IDX image file"):
        open_input(other)
    # A CSV without the columns scoring needs says which columns it has and which were expected.
    table = tmp_path / "data.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(
        FormatError, match=r"expected a 'text' column.*pixel0..pixel783; the columns are a, b"
    ):
        open_input(table)


def test_a_bad_byte_in_json_lines_costs_its_line_only(tmp_path: Path, reviews: list[dict]) -> None:
    lines = [
        json.dumps({"text": reviews[0]["text"]}).encode(),
        b'{"text": "caf\xe9 in latin-1"}',
        json.dumps({"text": reviews[1]["text"]}).encode(),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = list(open_input(path).rows())
    assert [row.source for row in rows] == ["mixed.jsonl:1", "mixed.jsonl:2", "mixed.jsonl:3"]
    assert "invalid UTF-8 at byte 13" in (rows[1].error or "")
    assert (rows[0].text, rows[2].text) == (reviews[0]["text"], reviews[1]["text"])
