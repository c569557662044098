"""The `classify` command without a server: fast help, no TensorFlow, and whole-job errors → exit code 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from classify_client.cli import main
from classify_client.formats import read_idx, write_idx

REPO = Path(__file__).resolve().parents[1]
CLASSIFY = Path(sys.executable).parent / "classify"


def data_dir() -> Path:
    return Path(os.environ.get("CLASSIFY_DATA_DIR", REPO.parent / "shared" / "data"))


def closed_port_target() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def digits_idx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "digits-idx3-ubyte.gz"
    write_idx(path, read_idx(data_dir() / "mnist" / "train-images-idx3-ubyte.gz")[:20])
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def test_help_and_import_never_load_tensorflow() -> None:
    probe = (
        "import sys, runpy\n"
        "import classify_client, classify_client.client, classify_client.aio, classify_client.cli\n"
        "from classify_client import Client, AsyncClient, ClassifyResult\n"
        "sys.argv = ['classify', '--help']\n"
        "try:\n    classify_client.cli.main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('clean')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("clean")


def test_installed_command_help_is_fast_and_lists_the_commands() -> None:
    for args in (["--help"], ["score", "--help"], ["models", "--help"], ["health", "--help"]):
        result = subprocess.run(
            [str(CLASSIFY), *args], capture_output=True, text=True, timeout=20, check=True
        )
        assert "Usage: classify" in result.stdout
    top = subprocess.run([str(CLASSIFY), "--help"], capture_output=True, text=True, check=True).stdout
    assert all(command in top for command in ("score", "models", "health"))
    probe = "import sys, classify_client.cli; print(sorted(m for m in ('grpc', 'numpy', 'tensorflow') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"  # --help pays for neither grpc nor numpy


def test_bad_output_extension_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    code, _, err = invoke(
        "score", "--target", closed_port_target(), "--model", "m", "--input", str(tmp_path / "missing"),
        "--output", str(tmp_path / "out.txt"),
    )  # fmt: skip
    assert code == 2
    assert "must end in .csv, .jsonl or .parquet" in err
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c" + bytes(800),
            "trailing bytes",
        ),
        (b"hello, not idx", "not an IDX file"),
    ],
)
def test_whole_file_problems_exit_2_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(content)
    code, _, err = invoke(
        "score", "--target", closed_port_target(), "--model", "mnist-cnn", "--input", str(path),
        "--output", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_label_count_mismatch_exits_2(tmp_path: Path, digits_idx: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n2\n")
    code, _, err = invoke(
        "score", "--target", closed_port_target(), "--model", "mnist-cnn", "--input", str(digits_idx),
        "--labels", str(labels), "--output", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert code == 2
    assert "2 labels for 20 input rows" in err


def test_unreachable_server_exits_2_naming_the_target(tmp_path: Path, digits_idx: Path) -> None:
    target = closed_port_target()
    code, _, err = invoke(
        "score", "--target", target, "--model", "mnist-cnn", "--input", str(digits_idx),
        "--output", str(tmp_path / "out.jsonl"), "--summary-json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert code == 2
    assert f"cannot reach server at {target} (UNAVAILABLE)" in err
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "s.json").exists()


def test_target_from_environment(tmp_path: Path, digits_idx: Path) -> None:
    target = closed_port_target()
    result = CliRunner().invoke(
        main,
        ["score", "--model", "m", "--input", str(digits_idx), "--output", str(tmp_path / "o.csv")],
        env={"CLASSIFY_TARGET": target},
    )
    assert result.exit_code == 2
    assert target in result.stderr


def test_models_and_health_against_nothing_exit_2() -> None:
    target = closed_port_target()
    for args in (["models"], ["health"], ["health", "--model", "mnist-cnn", "--wait", "0.5"]):
        code, out, err = invoke(*args, "--target", target)
        assert code == 2, args
        assert f"cannot reach server at {target}" in err
        assert out == ""


def test_bad_header_is_a_usage_error() -> None:
    code, _, err = invoke("--header", "no-equals-sign", "health")
    assert code == 2
    assert "KEY=VALUE" in err


def test_summary_json_shape_is_documented() -> None:
    # Guard the documented keys of --summary-json (the lead's end-to-end tests read them).
    from classify_client.cli.report import ScoreSummary

    summary = ScoreSummary("m", 1, 3, 2, 1, 2, 1, 1.0, ["a", "b"], np.zeros((2, 2), dtype=np.int64))
    assert set(json.loads(json.dumps(summary.as_json()))) == {
        "n", "scored", "failed", "accuracy", "labelled", "seconds", "per_second", "model", "version",
    }  # fmt: skip
