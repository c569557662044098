"""Loaders of classify-train: MNIST (IDX, gz or not, and Keras mnist.npz) and IMDb (JSON lines and the
aclImdb/ folder layout), on real rows of the shared data, plus the data directory's resolution."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from classify_client.formats import FormatError, iter_jsonl, read_idx, write_idx
from classify_train.data.datadir import DATA_DIR_ENV, resolve_data_dir
from classify_train.data.dataset import DataError
from classify_train.data.imdb import load_imdb
from classify_train.data.mnist import load_mnist

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="module")
def mnist_rows(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 200 real MNIST training images and labels."""
    images = read_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz")[:200]
    labels = read_idx(data_dir / "mnist" / "train-labels-idx1-ubyte.gz")[:200]
    return images, labels


@pytest.fixture(scope="module")
def imdb_rows(data_dir: Path) -> list[dict]:
    """Six real labelled reviews: three negative (the file starts with them) and three positive."""
    records = [row.record for row in iter_jsonl(data_dir / "imdb" / "imdb_train.jsonl.gz")]
    return records[:3] + records[-3:]  # type: ignore[return-value]


# --- data directory -------------------------------------------------------------------------------------


def test_data_dir_flag_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag_dir, env_dir = tmp_path / "flag", tmp_path / "env"
    flag_dir.mkdir()
    env_dir.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    assert resolve_data_dir(flag_dir) == flag_dir
    assert resolve_data_dir(None) == env_dir


def test_no_data_dir_given_means_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 18 changed this from an error: the cache is the third place looked in, filled by download
    # (the offline error that names the ways to give data is in test_training_datasets.py).
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path / "classify" / "datasets"


def test_nonexistent_data_dir_is_reported_with_its_origin(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="from --data-dir"):
        resolve_data_dir(tmp_path / "nowhere")


# --- MNIST ----------------------------------------------------------------------------------------------


def test_mnist_training_split_from_gzipped_idx(data_dir: Path) -> None:
    dataset = load_mnist(data_dir)
    assert dataset.inputs.shape == (60000, 28, 28)
    assert dataset.inputs.dtype == np.uint8
    assert dataset.labels.dtype == np.uint8
    assert dataset.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # as the data README says
    assert sorted(dataset.source_files) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert all(len(digest) == 64 for digest in dataset.source_files.values())


def test_mnist_test_split_from_uncompressed_t10k_files(tmp_path: Path, mnist_rows: tuple) -> None:
    images, labels = mnist_rows
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", labels)
    dataset = load_mnist(tmp_path, split="test")
    np.testing.assert_array_equal(dataset.inputs, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    # Without a training split in the same place, asking for it says what was looked for.
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*mnist\.npz"):
        load_mnist(tmp_path, split="train")


def test_mnist_from_keras_npz(tmp_path: Path, mnist_rows: tuple) -> None:
    images, labels = mnist_rows
    np.savez(
        tmp_path / "mnist.npz",
        x_train=images[:150],
        y_train=labels[:150],
        x_test=images[150:],
        y_test=labels[150:],
    )
    train, test = load_mnist(tmp_path, "train"), load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(train.inputs, images[:150])
    np.testing.assert_array_equal(test.labels, labels[150:])
    assert list(train.source_files) == ["mnist.npz"]


def test_mnist_npz_without_the_split_keys_is_a_format_error(tmp_path: Path, mnist_rows: tuple) -> None:
    np.savez(tmp_path / "mnist.npz", images=mnist_rows[0])
    with pytest.raises(FormatError, match="x_train"):
        load_mnist(tmp_path)


def test_mnist_labels_that_do_not_match_the_images_are_refused(tmp_path: Path, mnist_rows: tuple) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", mnist_rows[0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", mnist_rows[1][:-1])
    with pytest.raises(FormatError, match="expected 200 labels"):
        load_mnist(tmp_path)


# --- IMDb -----------------------------------------------------------------------------------------------


def test_imdb_training_split_from_json_lines(data_dir: Path) -> None:
    dataset = load_imdb(data_dir)
    assert len(dataset.inputs) == len(dataset.labels) == 25000
    assert np.bincount(dataset.labels).tolist() == [12500, 12500]
    assert dataset.labels[0] == 0 and dataset.labels[-1] == 1  # negatives first
    assert all(isinstance(text, str) and text for text in dataset.inputs[:100])
    assert list(dataset.source_files) == ["imdb_train.jsonl.gz"]


def test_imdb_unlabelled_split(data_dir: Path) -> None:
    dataset = load_imdb(data_dir, split="unsup")
    assert len(dataset) == 50000
    assert set(dataset.labels.tolist()) == {-1}


def test_imdb_test_split_from_json_lines(tmp_path: Path, imdb_rows: list[dict]) -> None:
    (tmp_path / "imdb").mkdir()
    lines = "".join(json.dumps(record) + "\n" for record in imdb_rows)
    (tmp_path / "imdb" / "imdb_test.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    dataset = load_imdb(tmp_path, split="test")
    assert dataset.inputs == [record["text"] for record in imdb_rows]
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_imdb_bad_json_line_fails_with_its_line_number(tmp_path: Path, imdb_rows: list[dict]) -> None:
    lines = [json.dumps(imdb_rows[0]), '{"text": "cut off', json.dumps(imdb_rows[1])]
    (tmp_path / "imdb_train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match="line 2"):
        load_imdb(tmp_path)


def test_imdb_label_outside_zero_one_fails(tmp_path: Path, imdb_rows: list[dict]) -> None:
    lines = [json.dumps(imdb_rows[0]), json.dumps({**imdb_rows[1], "label": 7})]
    (tmp_path / "imdb_train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match="line 2: field 'label'"):
        load_imdb(tmp_path)


def _write_acl(root: Path, folder: str, reviews: list[tuple[int, int, str]]) -> None:
    (root / folder).mkdir(parents=True)
    for review_id, rating, text in reviews:
        (root / folder / f"{review_id}_{rating}.txt").write_text(text, encoding="utf-8")


def test_imdb_from_the_aclimdb_folder_layout(tmp_path: Path, imdb_rows: list[dict]) -> None:
    acl = tmp_path / "aclImdb"
    negative, positive = imdb_rows[:3], imdb_rows[3:]
    # Ids 10 and 9: rows must follow the numeric id, not the file system's or the string order.
    _write_acl(acl, "train/neg", [(10, 2, negative[0]["text"]), (9, 1, negative[1]["text"])])
    _write_acl(acl, "train/pos", [(3, 9, positive[0]["text"])])
    _write_acl(acl, "train/unsup", [(0, 0, negative[2]["text"])])
    _write_acl(acl, "test/neg", [(0, 4, negative[2]["text"])])
    _write_acl(acl, "test/pos", [(0, 8, positive[1]["text"]), (1, 10, positive[2]["text"])])
    (acl / "train" / "pos" / "urls_pos.txt").write_text("not a review")  # shipped in the tarball's folders

    train = load_imdb(tmp_path)
    assert train.inputs == [negative[1]["text"], negative[0]["text"], positive[0]["text"]]
    assert train.labels.tolist() == [0, 0, 1]
    assert list(train.source_files) == ["aclImdb/train"]
    test = load_imdb(tmp_path, split="test")
    assert test.labels.tolist() == [0, 1, 1]
    assert load_imdb(tmp_path, split="unsup").labels.tolist() == [-1]
    # The data directory may also be the aclImdb folder itself.
    assert load_imdb(acl).inputs == train.inputs


def test_imdb_missing_names_both_formats(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"imdb_test\.jsonl\.gz.*aclImdb/ folder with test/neg/, test/pos/"):
        load_imdb(tmp_path, split="test")
