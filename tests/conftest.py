"""Fixtures shared by the end-to-end tests: real data, quick models trained once, real server processes.

Nothing here is mocked: models are trained by the real `classify-train`, served by the real
`classify-server` on loopback (started by `classify_server.launcher`), and called over gRPC.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from classify_server.launcher import (
    ServerLauncher,
    ServerLaunchError,
    ServerStopTimeout,
    health_status,  # noqa: F401 (re-exported: the tests' health probe)
)

# CLASSIFY_TEST_GRPC_FRONT=native|grpcio|auto runs the suite's servers (launched and in-process, which
# all read CLASSIFY_* variables) on that gRPC front (docs/serving.md, "gRPC front"), assertions unchanged.
if os.environ.get("CLASSIFY_TEST_GRPC_FRONT"):
    os.environ["CLASSIFY_GRPC_FRONT"] = os.environ["CLASSIFY_TEST_GRPC_FRONT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL_NAMES = ("mnist-softmax", "mnist-mlp", "mnist-cnn", "imdb-lstm")
SERVER_START_SECONDS = 180


def data_dir() -> Path:
    """The data directory: CLASSIFY_DATA_DIR, else the shared folder beside the repository."""
    configured = os.environ.get("CLASSIFY_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "mnist").is_dir() or not (path / "imdb").is_dir():
        # Fail, never skip: a suite that silently skips is a failed suite.
        pytest.fail(f"data directory {path} lacks mnist/ and imdb/; set CLASSIFY_DATA_DIR", pytrace=False)
    return path.resolve()


@pytest.fixture(scope="session")
def data_path() -> Path:
    return data_dir()


def run_cli(
    *args: str | Path, timeout: float = 900, check: bool = True, **kwargs
) -> subprocess.CompletedProcess:
    """Run one of the installed commands (classify, classify-train, classify-server) and capture it."""
    command = [str(BIN / str(args[0])), *map(str, args[1:])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def quick_repository(tmp_path_factory: pytest.TempPathFactory, data_path: Path) -> Path:
    """All four models trained with --quick once per test session, into a fresh repository."""
    repository = tmp_path_factory.mktemp("models")
    run_cli("classify-train", "all", "--quick", "--data-dir", data_path, "--export", repository, timeout=1800)
    for name in MODEL_NAMES:
        assert (repository / name / "1" / "model.json").is_file(), f"{name} was not exported"
    return repository


@pytest.fixture(scope="session")
def validation_files(tmp_path_factory: pytest.TempPathFactory, data_path: Path) -> Path:
    """Held-out validation samples in the standard formats (models never trained on them)."""
    out = tmp_path_factory.mktemp("validation")
    run_cli("classify-train", "split", "mnist", "--data-dir", data_path, "--out", out, "--limit", "1000")
    run_cli("classify-train", "split", "imdb", "--data-dir", data_path, "--out", out, "--limit", "400")
    return out


class ServerProcess(ServerLauncher):
    """A launched server whose start-up and shutdown failures fail the test with the server's log."""

    def metrics_url(self) -> str:
        """The /metrics address the server logged (tests start it with --metrics-port 0)."""
        found = re.search(r"metrics on (http://\S+/metrics)", self.log())
        if found is None:
            pytest.fail(f"server logged no metrics address:\n{self.log()}", pytrace=False)
        return found.group(1)

    def http_url(self) -> str:
        """The HTTP base address the server logged (tests start it with --http-port 0)."""
        found = re.search(r"HTTP on (https?://\S+) ", self.log())
        if found is None:
            pytest.fail(f"server logged no HTTP address:\n{self.log()}", pytrace=False)
        return found.group(1)

    def wait_serving(self, timeout: float = SERVER_START_SECONDS) -> None:
        try:
            self.wait_ready(timeout)
        except ServerLaunchError as exc:
            pytest.fail(str(exc), pytrace=False)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and the exit code; a server that ignores it fails the test."""
        try:
            code = self.stop(timeout)
        except ServerStopTimeout as exc:
            pytest.fail(str(exc), pytrace=False)
        return -1 if code is None else code


def launch_server(repository: Path, log_dir: Path, *extra: str) -> ServerProcess:
    """Start (without waiting for SERVING) a server on a free port, its log in ``log_dir``."""
    return ServerProcess(repository, *extra, http_port=0, log_dir=log_dir).start()


@pytest.fixture(scope="session")
def server(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole session, serving the quick models."""
    started = launch_server(quick_repository, tmp_path_factory.mktemp("server-logs"))
    try:
        started.wait_serving()
        yield started
    finally:
        started.terminate()


@pytest.fixture
def private_server(tmp_path: Path):
    """Start servers that a test may stop, break or signal; all are stopped afterwards."""
    launched: list[ServerProcess] = []

    def start(repository: Path, *extra: str) -> ServerProcess:
        launched.append(launch_server(repository, tmp_path, *extra))
        return launched[-1]

    yield start
    for process in launched:
        process.kill()


def copy_model(repository: Path, name: str, destination: Path, new_name: str | None = None) -> Path:
    """Copy one exported model (all its versions) into another repository."""
    target = destination / (new_name or name)
    shutil.copytree(repository / name, target)
    return target


def repository_without_explain(quick_repository: Path, destination: Path) -> Path:
    """A repository whose mnist-softmax version 1 is the quick model re-exported without the explain
    signatures, as versions exported before explain existed are; returns the repository's root."""
    import json

    import tensorflow as tf

    from classify_train.explain_reexport import rebuild
    from classify_train.export import write_saved_model
    from classify_train.recipes import get_recipe

    source = quick_repository / "mnist-softmax" / "1"
    old = destination / "mnist-softmax" / "1"
    old.mkdir(parents=True)
    shutil.copy(source / "model.json", old / "model.json")
    document = json.loads((source / "model.json").read_text())
    trained = rebuild(get_recipe("mnist-softmax"), document, tf.saved_model.load(str(source)))
    write_saved_model(trained, old, [])
    return destination
