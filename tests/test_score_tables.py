"""`classify score` on the table formats pipelines use: MNIST-as-CSV, Parquet images and texts, Parquet
output, --id-column, bad rows and --resume. Real server (the session fixture), real validation data."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ServerProcess, run_cli
from PIL import Image

from classify_client.cli.inputs import PYARROW_MISSING, MissingDependencyError, open_input
from classify_client.cli.outputs import OutputRow, open_writer
from classify_client.formats import iter_jsonl, read_idx, write_idx

ROWS = 300


def score(server: ServerProcess, *args: str | Path, check: bool = True):
    return run_cli("classify", "score", "--target", server.target, *args, check=check, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def digits(validation_files: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")[:ROWS]
    labels = read_idx(validation_files / "validation-labels-idx1-ubyte.gz")[:ROWS]
    return images, labels


@pytest.fixture(scope="module")
def idx_reference(server: ServerProcess, digits, tmp_path_factory) -> list[dict[str, str]]:
    """The same digits scored from an IDX file: what every table format must reproduce."""
    folder = tmp_path_factory.mktemp("idx")
    write_idx(folder / "digits-idx3-ubyte", digits[0])
    score(
        server, "--model", "mnist-cnn", "--input", folder / "digits-idx3-ubyte", "--output", folder / "o.csv"
    )
    return read_csv(folder / "o.csv")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mnist_as_csv_matches_idx_and_reports_a_bad_row_by_line(
    server: ServerProcess, digits, idx_reference, tmp_path: Path
) -> None:
    images, labels = digits
    source = tmp_path / "train.csv"
    with source.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label", *(f"pixel{i}" for i in range(784)), "ImageId"])
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            pixels = image.reshape(-1).tolist()
            if i == 7:
                pixels[100] = 300  # out of range: this row fails, the others are scored
            writer.writerow([int(label), *pixels, f"img-{i}"])
    output, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    result = score(
        server, "--model", "mnist-cnn", "--input", source, "--output", output,
        "--id-column", "ImageId", "--summary-json", summary, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one bad row
    assert "train.csv:9" in result.stderr  # line 9: the header, then row 7 on the 9th line
    rows = [line.record for line in iter_jsonl(output)]
    assert [r["index"] for r in rows] == list(range(ROWS))
    assert [r["ImageId"] for r in rows] == [f"img-{i}" for i in range(ROWS)]
    assert "pixel values must be whole numbers" in rows[7]["error"]
    for i, (row, reference) in enumerate(zip(rows, idx_reference, strict=True)):
        if i != 7:
            assert row["label"] == reference["label"]
            assert row["score"] == pytest.approx(float(reference["score"]), rel=1e-5)
            assert row["true_label"] == str(labels[i])
    facts = json.loads(summary.read_text())
    assert (facts["n"], facts["scored"], facts["failed"], facts["labelled"]) == (ROWS, ROWS - 1, 1, ROWS - 1)
    assert facts["accuracy"] > 0.8
    assert "confusion" in result.stdout


@pytest.mark.parametrize("layout", ["png-bytes", "pixel-lists"])
def test_parquet_images_score_like_idx_into_parquet_with_ids(
    server: ServerProcess, digits, idx_reference, tmp_path: Path, layout: str
) -> None:
    images, labels = digits
    if layout == "png-bytes":
        image_column = pa.array([png_bytes(image) for image in images], type=pa.binary())
    else:
        image_column = pa.array([image.reshape(-1) for image in images], type=pa.list_(pa.uint8()))
    table = pa.table(
        {"id": np.arange(1000, 1000 + ROWS), "image": image_column, "label": labels.astype(np.int64)}
    )
    pq.write_table(table, tmp_path / "digits.parquet", row_group_size=64)  # several row groups
    output = tmp_path / "out.parquet"
    result = score(
        server, "--model", "mnist-cnn", "--input", tmp_path / "digits.parquet", "--output", output,
        "--id-column", "id", "--top-k", "2",
    )  # fmt: skip
    assert "accuracy" in result.stdout
    scored = pq.read_table(output)
    assert not (tmp_path / "out.parquet.journal").exists()
    assert scored.schema.field("id").type == pa.int64()
    assert scored.column("id").to_pylist() == list(range(1000, 1000 + ROWS))
    assert scored.column("label").to_pylist() == [r["label"] for r in idx_reference]
    np.testing.assert_allclose(
        scored.column("score").to_numpy(), [float(r["score"]) for r in idx_reference], rtol=1e-5
    )
    assert scored.column("true_label").to_pylist() == [str(label) for label in labels]
    assert all(len(top) == 2 for top in scored.column("top_k").to_pylist())
    assert scored.column("error").null_count == ROWS


def test_parquet_texts_resume_from_a_torn_journal(
    server: ServerProcess, validation_files: Path, tmp_path: Path
) -> None:
    reviews = [line.record for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")][:ROWS]
    texts = [review["text"] for review in reviews]
    texts[5] = "   "  # an empty review: a bad row, reported by position
    table = pa.table(
        {"review_id": [f"r{i}" for i in range(ROWS)], "text": texts, "label": [r["label"] for r in reviews]}
    )
    pq.write_table(table, tmp_path / "reviews.parquet")
    args = ("--model", "imdb-lstm", "--input", tmp_path / "reviews.parquet", "--id-column", "review_id")
    full = score(server, *args, "--output", tmp_path / "full.parquet", check=False)
    assert full.returncode == 1 and "reviews.parquet#5" in full.stderr
    expected = pq.read_table(tmp_path / "full.parquet").to_pylist()
    assert expected[5]["error"] == "empty text" and expected[5]["label"] is None
    # What a job killed after 100 rows leaves: 100 complete journal lines and a torn one.
    output = tmp_path / "out.parquet"
    journal = tmp_path / "out.parquet.journal"
    lines = [json.dumps(record) for record in expected[:100]]
    journal.write_text("\n".join(lines) + "\n" + '{"index": 100, "sou')
    resumed = score(
        server, *args, "--output", output, "--resume", "--summary-json", tmp_path / "s.json", check=False
    )
    assert "resuming after 100 rows" in resumed.stderr
    got = pq.read_table(output).to_pylist()
    assert [r["index"] for r in got] == list(range(ROWS))
    assert [r["review_id"] for r in got] == [f"r{i}" for i in range(ROWS)]
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        [r["score"] or 0.0 for r in got], [r["score"] or 0.0 for r in expected], rtol=1e-6
    )
    facts = json.loads((tmp_path / "s.json").read_text())
    assert (facts["n"], facts["failed"]) == (ROWS, 1)  # the kept 100 rows are counted, none twice
    assert facts["accuracy"] > 0.6
    # Resuming a finished Parquet output rescoring nothing keeps every row.
    again = score(server, *args, "--output", output, "--resume", check=False)
    assert f"resuming after {ROWS} rows" in again.stderr
    assert pq.read_table(output).num_rows == ROWS


def test_without_pyarrow_parquet_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    pq.write_table(pa.table({"text": ["fine"]}), tmp_path / "t.parquet")
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # what an install without the parquet extra looks like
    with pytest.raises(MissingDependencyError, match=r"pip install 'classify-client\[parquet\]'"):
        open_input(tmp_path / "t.parquet")
    with pytest.raises(MissingDependencyError) as raised, open_writer(tmp_path / "o.parquet") as writer:
        writer.write(OutputRow(0, "x"))
    assert str(raised.value) == PYARROW_MISSING
    # CSV needs no extra.
    (tmp_path / "t.csv").write_text("text,label\nfine film,1\n")
    assert [row.text for row in open_input(tmp_path / "t.csv").rows()] == ["fine film"]
