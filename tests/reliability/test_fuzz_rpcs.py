"""Fuzz every RPC of every protocol against the session's real server (a reduced count of the harness's).

The fuzzer runs in a subprocess: it imports this package's KServe V2 messages, which cannot share a
process with tritonclient's (other tests import tritonclient).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ServerProcess, health_status

from classify_client import Client

HERE = Path(__file__).resolve().parent
CASES = 1500


def test_every_rpc_answers_only_documented_statuses_and_the_server_keeps_serving(
    server: ServerProcess,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzzing.py"),
            "--target",
            server.target,
            "--cases",
            str(CASES),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        json.dumps({key: report[key] for key in ("cases", "failures", "unparseable", "seconds", "outcomes")})
    )
    assert report["failures"] == 0, json.dumps(report["examples"], indent=1)[:4000]
    assert report["cases"] >= CASES
    # Every RPC was tried, and the inputs reached both the happy path and the validation paths.
    assert len(report["by_rpc"]) == 20, sorted(report["by_rpc"])
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= set(report["outcomes"])
    assert server.process.poll() is None
    assert health_status(server.target) == "SERVING"
    with Client(server.target, timeout=30) as client:
        assert len(client.classify("mnist-cnn", images=np.zeros((3, 28, 28), np.uint8)).predictions) == 3
