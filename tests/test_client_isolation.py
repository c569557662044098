"""The client installs and runs on its own: a fresh virtual environment with no TensorFlow in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def test_client_only_environment_has_no_tensorflow_and_the_cli_works(tmp_path: Path) -> None:
    venv = tmp_path / "client-only"
    # Build from a copy: setuptools leaves a build/ folder beside the sources it builds.
    source = tmp_path / "client"
    shutil.copytree(REPO_ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "-c",
            str(REPO_ROOT / "constraints.txt"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "tensorflow" not in installed
    assert "keras" not in installed
    help_text = subprocess.run(
        [str(venv / "bin" / "classify"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "score" in help_text.stdout
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, classify_client, classify_client.cli; "
            "from classify_client import Client; "
            "print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"
    # Without the parquet and ray extras, the commands that need them say which extra to install.
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a fine film"]}), tmp_path / "reviews.parquet")
    (tmp_path / "reviews.jsonl").write_text('{"text": "a fine film"}\n')
    common = [
        "score",
        "--target",
        "127.0.0.1:1",
        "--model",
        "imdb-lstm",
        "--input",
        str(tmp_path / "reviews.parquet"),
    ]
    for extra, args in (
        ("parquet", ["--output", str(tmp_path / "out.csv")]),
        ("parquet", ["--input", str(tmp_path / "reviews.jsonl"), "--output", str(tmp_path / "out.parquet")]),
        ("ray", ["--engine", "ray", "--output", str(tmp_path / "out")]),
    ):
        refused = subprocess.run(
            [str(venv / "bin" / "classify"), *common, *args], capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 2, refused.stderr
        assert f"pip install 'classify-client[{extra}]'" in refused.stderr
        assert "Traceback" not in refused.stderr
