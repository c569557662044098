"""Every limit, breached on a real server over loopback: each breach gets a clear status at once, never a hang.

Limits: message size (server and client, both directions, default 64 MiB), rows per request, text length,
concurrent requests.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerProcess, copy_model, health_status, launch_server
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

# The KServe V2 messages from tritonclient, as test_protocol_kserve uses: the client's vendored copy
# would define the same proto symbols again in this process's descriptor pool.
from tritonclient.grpc import service_pb2 as v2
from tritonclient.grpc import service_pb2_grpc as v2_grpc

from classify_client import Client, InvalidInputError, MessageTooLargeError, OverloadedError
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc

SMALL_MESSAGES = 64 * 1024
LIMITS = ("--max-message-bytes", str(SMALL_MESSAGES), "--max-request-rows", "3000")
LIMITS += ("--max-text-chars", "200", "--max-concurrent-requests", "3")
# Answers about a one-letter text with its top 2 classes and probabilities are 48 bytes, 16 times its
# request: this many cross 64 KiB one way only, so a response can break a limit its request kept.
TEXTS_FOR_A_BIG_ANSWER = 2000
BREACH_SECONDS = 5.0  # "at once": far below any timeout, far above loopback and a busy 2-core machine
WIDE_OPEN = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


@pytest.fixture(scope="module")
def limited(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with small limits of every kind, serving one image model and the text model."""
    repository = tmp_path_factory.mktemp("limited-models")
    copy_model(quick_repository, "mnist-softmax", repository)
    copy_model(quick_repository, "imdb-lstm", repository)
    started = launch_server(repository, tmp_path_factory.mktemp("limited-logs"), *LIMITS)
    try:
        started.wait_serving()
        yield started
    finally:
        started.terminate()


def images(rows: int) -> np.ndarray:
    return np.zeros((rows, 28, 28), dtype=np.uint8)


def image_request(rows: int, model: str = "mnist-softmax") -> pb.ClassifyRequest:
    return pb.ClassifyRequest(model=model, images=pb.ImageBatch(data=bytes(rows * 784), shape=[rows, 28, 28]))


def raw_classify(target: str, request: pb.ClassifyRequest) -> tuple[grpc.StatusCode, str, float]:
    """Call with a channel that has no size limits of its own, so only the server's apply."""
    with grpc.insecure_channel(target, options=WIDE_OPEN) as channel:
        started = time.monotonic()
        try:
            pb_grpc.ClassifierStub(channel).Classify(request, timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details(), time.monotonic() - started
    return grpc.StatusCode.OK, "", time.monotonic() - started


# -- Message size ----------------------------------------------------------------------------------------


def test_server_refuses_a_request_larger_than_its_message_limit(limited: ServerProcess) -> None:
    code, details, seconds = raw_classify(limited.target, image_request(200))  # 157 kB > 64 KiB
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Received message larger than max" in details and str(SMALL_MESSAGES) in details
    assert seconds < BREACH_SECONDS
    assert raw_classify(limited.target, image_request(50))[0] == grpc.StatusCode.OK  # 39 kB: fine


def test_server_fails_an_answer_larger_than_its_message_limit(limited: ServerProcess) -> None:
    request = pb.ClassifyRequest(
        model="imdb-lstm",
        texts=pb.TextBatch(texts=["a"] * TEXTS_FOR_A_BIG_ANSWER),
        top_k=2,
        return_probabilities=True,
    )
    assert request.ByteSize() < SMALL_MESSAGES  # the request itself passes
    code, details, seconds = raw_classify(limited.target, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "message larger than max" in details
    assert seconds < 30


def test_default_message_limit_is_64_mib_on_the_server(server: ServerProcess) -> None:
    # 8,000 images (6.3 MB) pass gRPC's usual 4 MB transport limit and reach validation ...
    code, details, _ = raw_classify(server.target, image_request(8000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit of 4096" in details
    # ... while one byte over 64 MiB is refused by the transport.
    oversized = pb.ClassifyRequest(
        model="mnist-cnn", images=pb.ImageBatch(data=bytes(64 * 1024 * 1024 + 1), shape=[1, 28, 28])
    )
    code, details, seconds = raw_classify(server.target, oversized)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {64 * 1024 * 1024}" in details
    assert seconds < BREACH_SECONDS * 3


def test_client_refuses_to_send_more_than_its_message_limit(server: ServerProcess) -> None:
    with Client(server.target, max_message_bytes=SMALL_MESSAGES, chunk_rows=1000) as client:
        started = time.monotonic()
        with pytest.raises(MessageTooLargeError, match="Sent message larger than max") as error:
            client.classify("mnist-softmax", images=images(200))
        assert time.monotonic() - started < BREACH_SECONDS
        assert not isinstance(error.value, OverloadedError), "retrying cannot help: not 'overloaded'"
        assert len(client.classify("mnist-softmax", images=images(50)).predictions) == 50


def test_client_refuses_an_answer_larger_than_its_message_limit(server: ServerProcess) -> None:
    # The client asks for packed arrays: 24 bytes a text with top 2 and both probabilities, so 4,000 texts
    # (a 12 KB request) make a 96 KB answer.
    texts = ["a"] * 4000
    small = Client(server.target, max_message_bytes=SMALL_MESSAGES, chunk_rows=len(texts))
    with small, pytest.raises(MessageTooLargeError, match="Received message larger than max"):
        small.classify("imdb-lstm", texts=texts, top_k=2, return_probabilities=True)
    with Client(server.target) as client:  # the default (64 MiB) takes it
        answer = client.classify("imdb-lstm", texts=texts, top_k=2, return_probabilities=True)
        assert len(answer.predictions) == len(texts)


# -- Rows and text length --------------------------------------------------------------------------------


def test_too_many_rows_are_refused_with_the_limit_in_every_protocol(limited: ServerProcess) -> None:
    texts = ["a"] * 3001
    refusal = "batch of 3001 items exceeds this server's limit of 3000"
    with Client(limited.target, chunk_rows=5000) as client, pytest.raises(InvalidInputError, match=refusal):
        client.classify("imdb-lstm", texts=texts)
    with grpc.insecure_channel(limited.target) as channel:
        tensor = v2.ModelInferRequest.InferInputTensor(
            name="texts",
            datatype="BYTES",
            shape=[3001],
            contents=v2.InferTensorContents(bytes_contents=[b"a"] * 3001),
        )
        with pytest.raises(grpc.RpcError) as error:
            v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                v2.ModelInferRequest(model_name="imdb-lstm", inputs=[tensor]), timeout=30
            )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit of 3000" in error.value.details()


def test_a_text_longer_than_the_limit_is_refused_and_one_at_the_limit_served(limited: ServerProcess) -> None:
    with Client(limited.target) as client:
        with pytest.raises(
            InvalidInputError, match="text 1 has 201 characters; this server accepts at most 200"
        ):
            client.classify("imdb-lstm", texts=["fine", "x" * 201])
        assert len(client.classify("imdb-lstm", texts=["x" * 200]).predictions) == 1


# -- Concurrent requests ---------------------------------------------------------------------------------


class OpenStream:
    """A ClassifyStream kept open: it holds one of the server's concurrency slots until closed."""

    def __init__(self, stub: pb_grpc.ClassifierStub) -> None:
        self._requests: queue.Queue[pb.ClassifyRequest | None] = queue.Queue()
        self._replies = stub.ClassifyStream(iter(self._requests.get, None), timeout=60)

    def ask(self, request: pb.ClassifyRequest) -> pb.ClassifyStreamResponse:
        self._requests.put(request)
        return next(self._replies)

    def close(self) -> None:
        self._requests.put(None)
        list(self._replies)


def test_requests_beyond_the_concurrency_limit_are_refused_at_once_and_probes_stay_open(
    limited: ServerProcess,
) -> None:
    with grpc.insecure_channel(limited.target) as channel, Client(limited.target) as client:
        stub = pb_grpc.ClassifierStub(channel)
        streams = [OpenStream(stub) for _ in range(3)]
        for stream in streams:  # an answer proves the server holds the stream
            assert not stream.ask(image_request(1)).HasField("error")
        started = time.monotonic()
        with pytest.raises(OverloadedError, match=r"3 requests in progress.*--max-concurrent-requests"):
            client.classify("mnist-softmax", images=images(1))
        assert time.monotonic() - started < BREACH_SECONDS
        # Probes and reflection are not counted: a busy server must still look alive and be inspectable.
        assert health_status(limited.target) == "SERVING"
        ready = v2_grpc.GRPCInferenceServiceStub(channel).ServerReady(v2.ServerReadyRequest(), timeout=5)
        assert ready.ready
        assert "classify.v1.Classifier" in set(ProtoReflectionDescriptorDatabase(channel).get_services())
        streams[0].close()
        assert len(client.classify("mnist-softmax", images=images(1)).predictions) == 1
        for stream in streams[1:]:
            stream.close()


def test_a_burst_over_the_concurrency_limit_gets_answers_or_refusals_never_a_hang(
    limited: ServerProcess,
) -> None:
    texts = ["a long enough review to keep the model busy for a while"] * 200

    def call(_: int) -> str:
        with Client(limited.target, timeout=60) as client:
            try:
                client.classify("imdb-lstm", texts=texts)
            except OverloadedError:
                return "refused"
        return "answered"

    with ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(call, range(24), timeout=90))
    assert outcomes.count("answered") >= 3
    assert outcomes.count("refused") >= 1
    assert "RESOURCE_EXHAUSTED" in limited.log() and "--max-concurrent-requests" in limited.log()
