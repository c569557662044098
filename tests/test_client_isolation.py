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
