"""The classify-train command line without training: help, errors, `split`, and `all --if-empty`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from classify_client.formats import iter_jsonl, read_idx
from classify_train.cli import main
from classify_train.data.checksums import rows_sha256
from classify_train.data.datadir import DATA_DIR_ENV
from classify_train.data.split import carve_validation, rows
from classify_train.datasets import load_dataset
from classify_train.recipes import MODEL_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output


def test_help_and_split_never_import_tensorflow(tmp_path: Path, data_dir: Path) -> None:
    script = (
        "import sys\n"
        "from classify_train.cli import main\n"
        "for args in (['--help'], ['mnist-cnn', '--help'],\n"
        f"             ['split', 'imdb', '--data-dir', {str(data_dir)!r}, '--out', {str(tmp_path)!r}, '--limit', '10']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, (args, exit.code)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "mnist-softmax" in completed.stdout


def test_unknown_model_is_a_usage_error_listing_the_models() -> None:
    code, output = _run("mnist-rnn", "--export", "repo")
    assert code == 2
    assert "unknown command or model 'mnist-rnn'" in output
    assert all(name in output for name in MODEL_NAMES)


def test_no_data_dir_says_both_ways_to_give_one(tmp_path: Path) -> None:
    # No data anywhere and the download fails (a closed loopback port as the mirror): one line naming the ways.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    env = {DATA_DIR_ENV: "", "XDG_CACHE_HOME": str(tmp_path / "cache"), "CLASSIFY_DATA_MIRROR": mirror}
    code, output = _run("mnist-cnn", "--export", str(tmp_path), env=env)
    assert code == 1
    assert output.startswith("Error: ") and output.count("\n") == 1
    assert "--data-dir" in output and DATA_DIR_ENV in output


def test_missing_files_name_what_was_looked_for(tmp_path: Path) -> None:
    code, output = _run("imdb-lstm", "--data-dir", str(tmp_path), "--export", str(tmp_path / "repo"))
    assert code == 1
    assert "imdb_train.jsonl.gz" in output and "aclImdb/" in output
    assert not (tmp_path / "repo").exists()


def test_split_mnist_writes_exactly_the_validation_rows(tmp_path: Path, data_dir: Path) -> None:
    code, output = _run("split", "mnist", "--data-dir", str(data_dir), "--out", str(tmp_path))
    assert code == 0, output
    images = read_idx(tmp_path / "validation-images-idx3-ubyte.gz")
    labels = read_idx(tmp_path / "validation-labels-idx1-ubyte.gz")
    assert images.shape == (6000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (6000,) and labels.dtype == np.uint8
    # The same bytes model.json's data_sha256 describes: what was written is what was held out.
    dataset = load_dataset("mnist", data_dir)
    described = carve_validation(dataset.labels).describe(dataset)
    assert rows_sha256(images, labels) == described["data_sha256"]
    assert described["indices_sha256"] in output


def test_split_imdb_with_a_limit_writes_a_stratified_sample(tmp_path: Path, data_dir: Path) -> None:
    code, output = _run("split", "imdb", "--data-dir", str(data_dir), "--out", str(tmp_path), "--limit", "50")
    assert code == 0, output
    records = [row.record for row in iter_jsonl(tmp_path / "imdb_validation.jsonl.gz")]
    assert len(records) == 50
    assert sorted(records[0]) == ["label", "text"]
    assert sum(record["label"] for record in records) == 25
    dataset = load_dataset("imdb", data_dir)
    texts, _ = rows(dataset, carve_validation(dataset.labels).validation_indices)
    assert {record["text"] for record in records} <= set(texts)


def test_all_if_empty_skips_models_that_already_have_a_version(tmp_path: Path) -> None:
    for name in MODEL_NAMES:
        (tmp_path / name / "1").mkdir(parents=True)
    code, output = _run("all", "--quick", "--if-empty", "--export", str(tmp_path), env={DATA_DIR_ENV: ""})
    assert code == 0, output
    assert output.count("skipped") == len(MODEL_NAMES)
