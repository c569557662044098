"""One data plane: an HTTP request and a gRPC request arriving together share one model execution."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import httpx
import numpy as np
from conftest import copy_model

from classify_client import Client
from classify_client.wire.proto.classify.v1 import classify_pb2, classify_pb2_grpc

MODEL = "mnist-softmax"


def statistics(target: str) -> classify_pb2.ModelStatistics:
    with grpc.insecure_channel(target) as channel:
        reply = classify_pb2_grpc.ClassifierStub(channel).GetModelStatistics(
            classify_pb2.GetModelStatisticsRequest(model=MODEL), timeout=10
        )
    return reply.models[0]


def test_http_and_grpc_requests_batch_together(
    private_server, quick_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    copy_model(quick_repository, MODEL, repository)
    # A batch waits up to 500 ms for more rows after its first request: both requests land in that window.
    started = private_server(repository, "--max-queue-delay-ms", "500", "--inline-max-rows", "0")
    started.wait_serving()
    before = statistics(started.target)
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    answers: dict[str, object] = {}

    def over_grpc() -> None:
        with Client(started.target, timeout=30) as client:
            answers["grpc"] = int(client.classify(MODEL, images=image).indices[0])

    thread = threading.Thread(target=over_grpc)
    thread.start()
    reply = httpx.post(
        f"{started.http_url()}/api/v1/models/{MODEL}:classify", json={"images": image.tolist()}, timeout=30
    )
    thread.join(timeout=30)
    assert reply.status_code == 200, reply.text
    assert answers["grpc"] == reply.json()["predictions"][0]["classes"][0]["index"]
    after = statistics(started.target)
    assert after.rows - before.rows == 2
    assert after.executions - before.executions == 1  # one execution of two rows, one from each protocol
