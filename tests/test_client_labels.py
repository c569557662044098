"""True labels for `classify score`: labels files and mapping indices or names onto the model's classes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from classify_client.cli.inputs import InputRow
from classify_client.cli.labels import LabelError, LabelMap, check_labels, read_labels, resolve_labels
from classify_client.formats import FormatError, read_idx, write_idx

REPO = Path(__file__).resolve().parents[1]
DIGITS = [str(d) for d in range(10)]
SENTIMENT = ["negative", "positive"]


def data_dir() -> Path:
    return Path(os.environ.get("CLASSIFY_DATA_DIR", REPO.parent / "shared" / "data"))


def test_real_idx_labels_file_gz_and_plain(tmp_path: Path) -> None:
    real = data_dir() / "mnist" / "train-labels-idx1-ubyte.gz"
    labels = read_labels(real)
    assert len(labels) == 60000
    assert labels[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # as the data README says
    plain = tmp_path / "labels-idx1-ubyte"
    write_idx(plain, read_idx(real)[:10])
    assert read_labels(plain) == labels[:10]


def test_npy_and_text_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "ints.npy", np.array([[3], [1], [4]], dtype=np.int64))
    assert read_labels(tmp_path / "ints.npy") == [3, 1, 4]
    np.save(tmp_path / "names.npy", np.array(["positive", "negative"]))
    assert read_labels(tmp_path / "names.npy") == ["positive", "negative"]
    np.save(tmp_path / "floats.npy", np.array([0.5]))
    with pytest.raises(FormatError, match="integers or strings"):
        read_labels(tmp_path / "floats.npy")
    (tmp_path / "labels.txt").write_text("positive\n\n  negative \n1\n")
    assert read_labels(tmp_path / "labels.txt") == ["positive", "negative", "1"]
    with pytest.raises(FormatError, match="no such file"):
        read_labels(tmp_path / "missing.txt")


def test_label_map_takes_names_indices_and_index_strings() -> None:
    digits = LabelMap(DIGITS)
    assert digits.index_of(7) == 7
    assert digits.index_of("7") == 7
    assert digits.index_of(np.uint8(3)) == 3
    assert digits.index_of(2.0) == 2
    sentiment = LabelMap(SENTIMENT)
    assert sentiment.index_of("positive") == 1
    assert sentiment.index_of(" negative ") == 0
    assert sentiment.index_of("1") == 1
    assert sentiment.index_of(-1) is None  # the IMDb "unlabelled" convention
    assert sentiment.index_of(None) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("great", "unknown label 'great'; the model's labels are negative, positive"),
        (2, "label 2 is out of range: the model has 2 classes (negative, positive)"),
        (True, "a class index or name"),
        (0.5, "a class index or name"),
    ],
)
def test_label_map_errors_say_what_the_model_knows(value: object, message: str) -> None:
    with pytest.raises(LabelError) as info:
        LabelMap(SENTIMENT).index_of(value)
    assert message in str(info.value)


def test_resolve_labels_from_rows_or_an_external_list() -> None:
    rows = [
        InputRow(0, "a:1", text="fine", label=1),
        InputRow(1, "a:2", text="meh", label="sideways"),
        InputRow(2, "a:3", text="ok", label=-1),
        InputRow(3, "a:4", error="empty text", label="nonsense"),
    ]
    resolved = list(resolve_labels(rows, LabelMap(SENTIMENT)))
    assert [row.true_index for row in resolved] == [1, None, None, None]
    assert resolved[1].error is not None
    assert resolved[1].error.startswith("bad label: unknown label 'sideways'")
    assert resolved[3].error == "empty text"  # the first problem of a row is the one reported
    external = list(resolve_labels(rows[:3], LabelMap(SENTIMENT), external=["positive", 0]))
    assert [row.true_index for row in external] == [1, 0, None]


def test_check_labels_names_the_position() -> None:
    check_labels([0, "1", "positive"], LabelMap(SENTIMENT), "l.txt")
    with pytest.raises(FormatError, match=r"l.txt: label #2: unknown label 'meh'"):
        check_labels([0, 1, "meh"], LabelMap(SENTIMENT), "l.txt")
