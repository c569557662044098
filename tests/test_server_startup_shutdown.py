"""The real server process's start-up and shutdown: a broken model, a SIGTERM under load, a bad repository.

Protocol checks that need no trained model (bad requests, top-k, health while loading, an empty
repository) are in tests/in_process, against the same server built in-process over a fake model.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import copy_model, health_status

from classify_client import ClassifyError, Client, RetryPolicy
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc

BLANK = np.zeros((2, 28, 28), dtype=np.uint8)


def image_request(images: np.ndarray, model: str = "mnist-cnn", **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=model, images=pb.ImageBatch(data=images.tobytes(), shape=list(images.shape)), **fields
    )


def test_a_broken_model_is_reported_and_the_others_still_serve(
    quick_repository: Path, tmp_path: Path, private_server
) -> None:
    repository = tmp_path / "mixed"
    repository.mkdir()
    copy_model(quick_repository, "mnist-softmax", repository)
    broken = copy_model(quick_repository, "mnist-mlp", repository, "mnist-broken")
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    started = private_server(repository)
    started.wait_serving()
    assert health_status(started.target, "mnist-broken") == "NOT_SERVING"
    assert health_status(started.target, "mnist-softmax") == "SERVING"
    with grpc.insecure_channel(started.target) as channel:
        stub = pb_grpc.ClassifierStub(channel)
        states = {m.name: m.state for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert states == {"mnist-softmax": "ready", "mnist-broken": "failed"}
        with pytest.raises(grpc.RpcError) as error:
            stub.Classify(image_request(BLANK, model="mnist-broken"))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "failed to load" in error.value.details()
        assert len(stub.Classify(image_request(BLANK, model="mnist-softmax")).predictions) == 2
    assert "mnist-broken version 1 failed to load" in started.log()


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic() when sent
    finished: float
    code: str  # OK or the status name


def hammer(target: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    """Closed loop of 128-image calls until ``stop``; records each call's outcome and timing."""
    # Retries as by default but with short pauses: once the server has exited, a caller's last call gives
    # up within seconds instead of backing off for the whole 60 s timeout, which only made the test slow.
    with Client(target, timeout=60, retry=RetryPolicy(max_backoff=0.2)) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                client.classify("mnist-cnn", images=np.zeros((128, 28, 28), np.uint8))
                code = "OK"
            except ClassifyError as error:
                code = error.code.name
            outcomes.append(Outcome(started, time.monotonic(), code))
            if code == "UNAVAILABLE":
                stop.wait(0.05)  # the server is going away: do not spin


def test_sigterm_under_load_answers_every_accepted_request_then_exits_zero(
    quick_repository: Path, tmp_path: Path, private_server
) -> None:
    repository = tmp_path / "one"
    repository.mkdir()
    copy_model(quick_repository, "mnist-cnn", repository)
    # Small batches: 24 callers' 128-image requests take a few seconds to drain, so many are in flight.
    # No wait bound: on a busy machine those seconds pass --max-queue-ms's 5 and a call is refused on
    # arrival (RESOURCE_EXHAUSTED, never accepted); this test is about what the drain does to accepted ones.
    started = private_server(repository, "--max-batch-size", "32", "--max-queue-ms", "0")
    started.wait_serving()
    stop, outcomes = threading.Event(), []
    callers = [threading.Thread(target=hammer, args=(started.target, stop, outcomes)) for _ in range(24)]
    for caller in callers:
        caller.start()
    time.sleep(3.0)
    signalled = time.monotonic()
    code = started.terminate()
    stop.set()
    for caller in callers:
        caller.join(timeout=60)
    assert code == 0, started.log()
    log = started.log()
    in_progress = int(re.search(r"shutting down: (\d+) requests in progress", log).group(1))
    assert in_progress >= 8, f"only {in_progress} requests in progress at SIGTERM: the test proves little"
    assert "stopped" in log
    assert {o.code for o in outcomes} <= {"OK", "UNAVAILABLE"}, "an accepted request was dropped"
    # Sent well before the signal, so surely accepted: each was answered, many of them after the signal.
    accepted = [o for o in outcomes if o.started < signalled - 1.0]
    assert accepted and all(o.code == "OK" for o in accepted)
    answered_while_draining = [o for o in outcomes if o.code == "OK" and o.started < signalled < o.finished]
    assert len(answered_while_draining) >= 8


def test_missing_repository_fails_with_a_clear_message(tmp_path: Path, private_server) -> None:
    started = private_server(tmp_path / "nowhere")
    assert started.process.wait(timeout=120) == 2
    assert "--model-repository (or CLASSIFY_MODEL_REPOSITORY)" in started.log()
    assert "nowhere is not a folder" in started.log()
    assert "Traceback" not in started.log()
