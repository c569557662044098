"""The generated protobuf code is reproducible from proto/ and the check notices when it is stale."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", REPO_ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_matches_proto_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "proto" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_check_reports_an_edited_generated_file(tmp_path: Path) -> None:
    generator = load_generator()
    fresh = tmp_path / "fresh"
    generator.generate(fresh)
    committed = tmp_path / "committed"
    shutil.copytree(generator.OUTPUT_DIR, committed, ignore=shutil.ignore_patterns("__pycache__"))
    assert generator.differences(fresh, committed) == []
    stale = committed / "classify" / "v1" / "classify_pb2.py"
    stale.write_text(stale.read_text() + "\n# hand edit\n")
    (committed / "classify" / "v1" / "leftover_pb2.py").write_text("")
    assert generator.differences(fresh, committed) == [
        "not produced by proto/ any more: classify/v1/leftover_pb2.py",
        "stale: classify/v1/classify_pb2.py",
    ]


def test_generated_imports_are_anchored_in_the_client_package() -> None:
    grpc_module = (
        REPO_ROOT / "client/src/classify_client/wire/proto/classify/v1/classify_pb2_grpc.py"
    ).read_text()
    assert "from classify_client.wire.proto.classify.v1 import classify_pb2" in grpc_module
    assert "\nfrom classify.v1" not in grpc_module
