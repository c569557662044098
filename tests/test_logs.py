"""Structured logs and request ids on a real server: JSON lines for lifecycle events and failures."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerProcess, copy_model, run_cli

from classify_client import REQUEST_ID_HEADER, Client, InvalidInputError, ModelNotFoundError
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc

DIGIT = np.zeros((1, 28, 28), dtype=np.uint8)


def json_lines(server: ServerProcess) -> list[dict]:
    """Every line of the server's output, each of which must be one JSON object."""
    entries = []
    for line in server.log().splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line!r}\n{server.log()}", pytrace=False)
    return entries


def events(entries: list[dict], event: str) -> list[dict]:
    return [entry for entry in entries if entry.get("event") == event]


@pytest.fixture
def json_server(quick_repository: Path, tmp_path: Path, private_server) -> ServerProcess:
    """JSON logs chosen in a config file, which also lowers the text limit (the file is really read)."""
    repository = tmp_path / "models"
    repository.mkdir()
    copy_model(quick_repository, "mnist-softmax", repository)
    config = tmp_path / "classify.toml"
    config.write_text('log-format = "json"\nmax_text_chars = 40\n')
    started = private_server(repository, "--config-file", str(config))
    started.wait_serving()
    return started


def test_json_logs_carry_lifecycle_events_and_failures_with_request_ids(json_server: ServerProcess) -> None:
    with Client(json_server.target) as client:
        with pytest.raises(ModelNotFoundError) as missing:
            client.classify("mnist-nope", images=DIGIT, headers={REQUEST_ID_HEADER: "trace-123"})
        assert missing.value.request_id == "trace-123"
        with pytest.raises(InvalidInputError) as wrong:  # no id sent: the server makes one up
            client.classify("mnist-softmax", texts=["not a digit"])
        made_up = wrong.value.request_id
        assert made_up and made_up != "trace-123"
    # Successful calls get the id back too, in the trailing metadata.
    with grpc.insecure_channel(json_server.target) as channel:
        stub = pb_grpc.ClassifierStub(channel)
        request = pb.ClassifyRequest(
            model="mnist-softmax", images=pb.ImageBatch(data=bytes(784), shape=[1, 28, 28])
        )
        _, call = stub.Classify.with_call(request, metadata=((REQUEST_ID_HEADER, "ok-1"),))
        assert dict(call.trailing_metadata())[REQUEST_ID_HEADER] == "ok-1"
        _, call = stub.Classify.with_call(request)
        assert dict(call.trailing_metadata())[REQUEST_ID_HEADER] not in ("", "ok-1")
    assert json_server.terminate() == 0

    entries = json_lines(json_server)
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    failures = {entry["request_id"]: entry for entry in events(entries, "request_failed")}
    assert set(failures) == {"trace-123", made_up}, "one line per failure, none for successes"
    assert failures["trace-123"]["code"] == "NOT_FOUND"
    assert failures["trace-123"]["model"] == "mnist-nope"
    assert failures["trace-123"]["method"] == "/classify.v1.Classifier/Classify"
    assert failures["trace-123"]["level"] == "WARNING"
    assert (
        failures[made_up]["code"] == "INVALID_ARGUMENT"
        and "classifies images" in failures[made_up]["message"]
    )
    lifecycle = [
        (entry["event"], entry["model"], entry["version"])
        for entry in entries
        if "model_" in entry.get("event", "")
    ]
    assert lifecycle == [
        ("model_loading", "mnist-softmax", 1),
        ("model_ready", "mnist-softmax", 1),
        ("model_unloading", "mnist-softmax", 1),
        ("model_unloaded", "mnist-softmax", 1),
    ]
    assert events(entries, "model_ready")[0]["seconds"] > 0
    assert events(entries, "settings")[0]["settings"]["max_text_chars"] == 40
    assert [entry["event"] for entry in entries if entry.get("event", "").startswith("server_")] == [
        "server_listening",
        "server_serving",
        "server_stopping",
        "server_stopped",
    ]


def test_a_failed_load_is_one_json_line_with_its_reason(json_server: ServerProcess, tmp_path: Path) -> None:
    staging = tmp_path / "models" / "mnist-softmax" / ".staging"
    staging.mkdir()
    (staging / "model.json").write_text("{}")
    staging.rename(staging.parent / "2")  # whole, at once: a poll never sees it half written
    run_cli("classify", "load", "mnist-softmax", "--target", json_server.target, check=False)
    failed = events(json_lines(json_server), "model_failed")
    assert len(failed) == 1
    assert failed[0]["version"] == 2 and failed[0]["level"] == "ERROR" and failed[0]["reason"]


def test_cli_request_id_reaches_the_server_log_and_the_error_message(server: ServerProcess) -> None:
    result = run_cli(
        "classify", "--request-id", "cli-7", "load", "no-such-model", "--target", server.target, check=False
    )
    assert result.returncode == 2
    assert "request id cli-7" in result.stderr
    # The plain format: one readable line with the id, the status, the model and the method.
    line = next(line for line in server.log().splitlines() if "request cli-7 failed" in line)
    assert "NOT_FOUND (model no-such-model, /classify.v1.Classifier/LoadModel)" in line
