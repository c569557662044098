"""Version numbering and the atomic publication of an exported version (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from classify_train.errors import ExportError
from classify_train.repository import STAGING_PREFIX, existing_versions, next_version, publish


def _staging(model_dir: Path) -> Path:
    staging = model_dir / f"{STAGING_PREFIX}test"
    staging.mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"graph")
    return staging


def _document(version: int) -> dict[str, Any]:
    return {"schema_version": 1, "name": "mnist-cnn", "version": version}


def test_first_version_is_one(tmp_path: Path) -> None:
    assert next_version(tmp_path / "mnist-cnn") == 1
    assert existing_versions(tmp_path / "mnist-cnn") == []


def test_next_version_follows_the_highest_integer_directory(tmp_path: Path) -> None:
    for name in ["1", "3", "10", "007", "latest", f"{STAGING_PREFIX}abc"]:
        (tmp_path / name).mkdir()
    assert existing_versions(tmp_path) == [1, 3, 10]
    assert next_version(tmp_path) == 11


def test_a_file_with_a_version_name_is_not_a_version_but_blocks_the_number(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").write_text("stray")
    assert existing_versions(tmp_path) == [1]
    assert next_version(tmp_path) == 3


def test_publish_renames_the_finished_directory_and_writes_its_version(tmp_path: Path) -> None:
    (tmp_path / "4").mkdir()
    staging = _staging(tmp_path)
    target = publish(staging, tmp_path, _document)
    assert target == tmp_path / "5"
    assert not staging.exists()
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    assert json.loads((target / "model.json").read_text())["version"] == 5


def test_publish_takes_the_next_number_when_another_exporter_wins_the_race(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    racing = {"done": False}

    def document_racing_another_exporter(version: int) -> dict[str, Any]:
        if not racing["done"]:  # another process publishes this very number first
            racing["done"] = True
            (tmp_path / str(version)).mkdir()
            (tmp_path / str(version) / "model.json").write_text("{}")
        return _document(version)

    target = publish(staging, tmp_path, document_racing_another_exporter)
    assert target == tmp_path / "2"
    assert json.loads((target / "model.json").read_text())["version"] == 2
    assert (tmp_path / "1" / "model.json").read_text() == "{}"  # the winner's version is untouched


def test_publish_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    staging = _staging(tmp_path)

    def always_taken(version: int) -> dict[str, Any]:
        (tmp_path / str(version)).mkdir()
        return _document(version)

    with pytest.raises(ExportError, match="could not claim"):
        publish(staging, tmp_path, always_taken)
