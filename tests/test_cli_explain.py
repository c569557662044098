"""`classify explain` against the real server: the files it writes for images and reviews, in input order
and equal to what Client.explain answers, and whole-job mistakes as one line and exit code 2."""

from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from classify_client import Client
from classify_client.cli.explain_pictures import IMAGE_ZOOM, SHEET_COLUMNS, SHEET_ZOOM
from classify_client.formats import read_idx, write_idx

pytestmark = pytest.mark.slow

IMAGES = 70  # more than a contact sheet's 64, and not a multiple of the chunk size
CHUNK = 32
PICTURE_SIZE = (28 * IMAGE_ZOOM, 24 + 28 * IMAGE_ZOOM + 30)  # title, the map, the colour bar
SHEET_SIZE = (SHEET_COLUMNS * (28 * SHEET_ZOOM + 4) + 4, 40 + 8 * (28 * SHEET_ZOOM + 14 + 4))  # 8 x 8


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target, timeout=120) as connected:
        yield connected


@pytest.fixture(scope="module")
def digits_file(validation_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits-idx3-ubyte.gz"
    write_idx(path, read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:IMAGES])
    return path


def explain(server, *args: str | Path, check: bool = True):
    return run_cli("classify", "explain", "--target", server.target, *args, check=check, timeout=600)


@pytest.mark.parametrize(
    ("model", "method"), [("mnist-cnn", "integrated_gradients"), ("mnist-softmax", "votes")]
)
def test_images_give_maps_in_input_order_a_png_each_and_a_contact_sheet(
    server, client, digits_file: Path, tmp_path: Path, *, model: str, method: str
) -> None:
    out = tmp_path / "out"
    result = explain(server, "--model", model, "--input", digits_file, "--output", out, "--batch-size", CHUNK)
    assert f"explained {IMAGES} of {IMAGES} images with {model} v1 by {method}" in result.stdout
    assert "mean completeness gap" in result.stdout and str(out) in result.stdout
    maps = np.load(out / "attributions.npy")
    assert maps.shape == (IMAGES, 28, 28) and maps.dtype == np.float32
    digits = read_idx(digits_file)
    # Rows from the first, a middle and the last chunk: row i is input row i, as a direct call gives it.
    rows = [0, CHUNK + 1, IMAGES - 1]
    direct = client.explain(model, images=digits[rows])
    np.testing.assert_allclose(maps[rows], direct.maps(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(maps[0], maps[1])  # different digits, different maps: the order is tested

    pictures = sorted((out / "images").glob("*.png"))
    assert [p.name for p in pictures] == [f"{i:05d}.png" for i in range(IMAGES)]
    for picture in pictures[:3] + pictures[-1:]:
        with Image.open(picture) as image:
            assert image.size == PICTURE_SIZE
    with Image.open(out / "contact-sheet.png") as sheet:
        assert sheet.size == SHEET_SIZE  # the first 64 only: 8 rows, not 9
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [item["index"] for item in items] == list(range(IMAGES))
    labels = client.classify(model, images=digits).labels
    assert [item["targets"][0]["label"] for item in items] == labels

    # Blue for, red against: the picture's colour under the map's strongest vote for, and against.
    with Image.open(pictures[0]) as image:
        picture = np.asarray(image.convert("RGB"), dtype=int)

    def colour_at(pixel: int) -> np.ndarray:
        row, column = divmod(pixel, 28)
        return picture[24 + row * IMAGE_ZOOM + IMAGE_ZOOM // 2, column * IMAGE_ZOOM + IMAGE_ZOOM // 2]

    strongest_for = colour_at(int(np.argmax(maps[0])))
    assert strongest_for[2] > strongest_for[0] + 60, strongest_for
    if maps[0].min() < -0.5 * np.abs(maps[0]).max():
        strongest_against = colour_at(int(np.argmin(maps[0])))
        assert strongest_against[0] > strongest_against[2] + 60, strongest_against


def test_reviews_give_a_page_with_every_token_and_a_line_per_review(
    server, client, validation_files: Path, tmp_path: Path
) -> None:
    with gzip.open(validation_files / "imdb_validation.jsonl.gz", "rt", encoding="utf-8") as stream:
        reviews = [json.loads(line)["text"] for _, line in zip(range(30), stream, strict=False)]
    reviews.append("<script>alert('x')</script> A <b>wonderful</b> film & a great cast")
    source = tmp_path / "reviews.jsonl"
    source.write_text(
        "".join(json.dumps({"text": text, "key": f"r{i}"}) + "\n" for i, text in enumerate(reviews))
    )
    out = tmp_path / "out"
    result = explain(
        server, "--model", "imdb-lstm", "--input", source, "--output", out, "--batch-size", "8",
        "--id-column", "key",
    )  # fmt: skip
    assert f"explained {len(reviews)} of {len(reviews)} reviews with imdb-lstm v1" in result.stdout
    lines = [json.loads(line) for line in (out / "attributions.jsonl").read_text().splitlines()]
    assert len(lines) == len(reviews)
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(len(reviews))]
    page = (out / "reviews.html").read_text(encoding="utf-8")
    for line in lines:
        assert line["label"] in ("negative", "positive") and 0.5 <= line["probability"] <= 1
        assert len(line["tokens"]) == len(line["scores"]) > 0
        for token in line["tokens"]:
            assert f">{html.escape(token)}</span>" in page, token
    direct = client.explain("imdb-lstm", texts=[reviews[7]]).items[0][0]
    assert lines[7]["tokens"] == direct.tokens
    np.testing.assert_allclose(lines[7]["scores"], direct.scores, rtol=1e-4, atol=1e-6)
    # The review's own markup is shown as text, never run: the page stays one script-free document.
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;wonderful" in page


@pytest.mark.parametrize(
    ("model", "input_name", "message"),
    [
        ("no-such-model", "digits", "model 'no-such-model' not found"),
        ("imdb-lstm", "digits", "model imdb-lstm takes text input but"),
        ("mnist-cnn", "broken", "not an IDX file"),
    ],
)
def test_whole_job_mistakes_are_one_line_and_exit_2(
    server, digits_file: Path, tmp_path: Path, *, model: str, input_name: str, message: str
) -> None:
    broken = tmp_path / "broken-idx3-ubyte"
    broken.write_bytes(b"not an idx file at all")
    source = digits_file if input_name == "digits" else broken
    out = tmp_path / "out"
    result = explain(server, "--model", model, "--input", source, "--output", out, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything was written
