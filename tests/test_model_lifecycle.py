"""Versions, hot reload and explicit load/unload on a real server watching a real repository."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerProcess, copy_model, health_status, run_cli
from lifecycle import publish

from classify_client import Client, UnavailableError
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc
from classify_server.serving.version_policy import VersionPolicy

DIGITS = np.zeros((4, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    ("text", "available", "expected"),
    [
        ("latest", [1, 2, 3], {3}),
        ("latest:2", [3, 1, 2], {2, 3}),
        ("LATEST:5", [1, 2], {1, 2}),
        ("all", [1, 4], {1, 4}),
        ("specific:1,3", [1, 2, 3], {1, 3}),
        ("specific:7", [1, 2], set()),
    ],
)
def test_version_policies_select_from_what_is_on_disk(
    text: str, available: list[int], expected: set[int]
) -> None:
    assert VersionPolicy.parse(text).select(available) == expected


@pytest.mark.parametrize("text", ["newest", "latest:0", "latest:x", "all:2", "specific:", "specific:0"])
def test_bad_version_policies_are_refused_with_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="latest:N"):
        VersionPolicy.parse(text)


def summaries(target: str) -> dict[str, pb.ModelSummary]:
    with grpc.insecure_channel(target) as channel:
        models = pb_grpc.ClassifierStub(channel).ListModels(pb.ListModelsRequest()).models
    return {m.name: m for m in models}


def wait_for(condition: Callable[[], bool], timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the call was sent
    finished: float
    version: int


class ContinuousLoad:
    """Keeps requests flowing from many threads (a client each) and records every answer or error."""

    def __init__(self, target: str, model: str, threads: int = 16) -> None:
        self.target, self.model = target, model
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with Client(self.target, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    version = client.classify(self.model, images=DIGITS).version
                except Exception as exc:
                    self.errors.append(repr(exc))
                else:
                    self.answers.append(Answer(started, time.monotonic(), version))

    def __enter__(self) -> ContinuousLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.fixture
def watched_repository(quick_repository: Path, tmp_path: Path) -> Path:
    repository = tmp_path / "watched"
    repository.mkdir()
    copy_model(quick_repository, "mnist-mlp", repository)
    return repository


def start_watching(private_server, repository: Path, *extra: str) -> ServerProcess:
    started = private_server(repository, "--poll-seconds", "0.3", *extra)
    started.wait_serving()
    return started


def test_new_version_swaps_in_under_load_with_no_failed_requests(
    watched_repository: Path, private_server
) -> None:
    started = start_watching(private_server, watched_repository)
    model_dir = watched_repository / "mnist-mlp"
    with ContinuousLoad(started.target, "mnist-mlp", threads=16) as load:
        time.sleep(2.0)
        publish(model_dir, model_dir / "1", 2)
        wait_for(
            lambda: [v.version for v in summaries(started.target)["mnist-mlp"].versions] == [2],
            what="v2 only",
        )
        time.sleep(2.0)
    assert load.errors == []
    answers = sorted(load.answers, key=lambda answer: answer.started)
    assert len(answers) > 200, "too little traffic to prove anything"
    first_v2 = min(answer.finished for answer in answers if answer.version == 2)
    before = [answer for answer in answers if answer.finished < first_v2]
    after = [answer for answer in answers if answer.started > first_v2]
    assert before and {answer.version for answer in before} == {1}
    # Once v2 answered anyone, traffic never goes back: every call sent afterwards gets v2.
    assert len(after) > 50 and {answer.version for answer in after} == {2}
    log = started.log()
    assert log.index("model mnist-mlp version 2 ready") < log.index("model mnist-mlp version 1 unloading")
    assert "model mnist-mlp version 1 unloaded" in log


def test_a_corrupt_new_version_is_reported_and_the_old_one_keeps_serving(
    watched_repository: Path, private_server
) -> None:
    started = start_watching(private_server, watched_repository)
    model_dir = watched_repository / "mnist-mlp"
    broken = publish(model_dir, model_dir / "1", 2)
    (broken / "saved_model.pb").write_bytes(b"garbage")
    wait_for(
        lambda: any(v.state == "failed" for v in summaries(started.target)["mnist-mlp"].versions),
        what="v2 reported as failed",
    )
    summary = summaries(started.target)["mnist-mlp"]
    assert summary.state == "ready"
    assert summary.version == 1
    failed = {v.version: v for v in summary.versions}[2]
    assert "saved_model.pb" in failed.reason or "SavedModel" in failed.reason
    with Client(started.target) as client:
        assert client.classify("mnist-mlp", images=DIGITS).version == 1
    listed = run_cli("classify", "models", "--target", started.target).stdout
    assert "1 ready, 2 failed" in listed
    assert "mnist-mlp version 2 failed:" in listed
    time.sleep(1.0)  # several polls: an unchanged failed version is not retried each time
    assert started.log().count("mnist-mlp version 2 failed to load") == 1
    assert health_status(started.target, "mnist-mlp") == "SERVING"


def test_latest_two_serves_both_and_requests_may_name_a_version(
    watched_repository: Path, private_server
) -> None:
    model_dir = watched_repository / "mnist-mlp"
    publish(model_dir, model_dir / "1", 2)
    started = start_watching(private_server, watched_repository, "--version-policy", "latest:2")
    with Client(started.target) as client:
        assert client.classify("mnist-mlp", images=DIGITS).version == 2
        assert client.classify("mnist-mlp", images=DIGITS, version=1).version == 1
        assert client.metadata("mnist-mlp").versions == [1, 2] or list(
            client.metadata("mnist-mlp").versions
        ) == [1, 2]


def test_unload_and_load_rpcs_and_removal_from_disk(
    watched_repository: Path, quick_repository: Path, private_server
) -> None:
    copy_model(quick_repository, "mnist-softmax", watched_repository)
    started = start_watching(private_server, watched_repository)
    with grpc.insecure_channel(started.target) as channel, Client(started.target) as client:
        stub = pb_grpc.ClassifierStub(channel)
        unloaded = stub.UnloadModel(pb.UnloadModelRequest(model="mnist-mlp"))
        assert unloaded.state == "unloaded"
        with pytest.raises(UnavailableError, match="unloaded on request"):
            client.classify("mnist-mlp", images=DIGITS)
        wait_for(
            lambda: health_status(started.target, "mnist-mlp") == "NOT_SERVING", what="model NOT_SERVING"
        )
        time.sleep(1.0)  # polling must not bring it back by itself
        assert summaries(started.target)["mnist-mlp"].state == "unloaded"
        assert health_status(started.target) == "SERVING"  # the other model still serves
        loaded = run_cli("classify", "load", "mnist-mlp", "--target", started.target)
        assert loaded.stdout.strip() == "mnist-mlp: ready; versions: 1 ready"
        assert client.classify("mnist-mlp", images=DIGITS).version == 1
        with pytest.raises(grpc.RpcError) as error:
            stub.LoadModel(pb.LoadModelRequest(model="not-on-disk"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        shutil.rmtree(watched_repository / "mnist-softmax")
        wait_for(lambda: "mnist-softmax" not in summaries(started.target), what="removed model to go")
        assert health_status(started.target, "mnist-softmax") == "NOT_SERVING"


def test_a_model_added_later_makes_an_empty_server_serving(
    tmp_path: Path, quick_repository: Path, private_server
) -> None:
    started = private_server(tmp_path, "--poll-seconds", "0.3")
    wait_for(lambda: health_status(started.target) == "NOT_SERVING", what="NOT_SERVING")
    staging = tmp_path / ".incoming"
    copy_model(quick_repository, "mnist-softmax", staging)
    os.rename(staging / "mnist-softmax", tmp_path / "mnist-softmax")
    started.wait_serving()
    assert health_status(started.target, "mnist-softmax") == "SERVING"
