"""The native API (classify.v1) of the in-process server over a fake model: what it checks and answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from fake_serving import InProcessServer, slow_loader, write_fake_model

from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc
from classify_server.launcher import health_status

IMAGES = np.random.default_rng(3).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
TEXTS = ["a fine film", "dull", "far too long and far too loud for anyone", "moving", "quiet and kind"]


@pytest.fixture(scope="module")
def stub(fake_server: InProcessServer) -> Iterator[pb_grpc.ClassifierStub]:
    with grpc.insecure_channel(fake_server.target) as channel:
        yield pb_grpc.ClassifierStub(channel)


def image_request(images: np.ndarray, model: str = "mnist-cnn", **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=model, images=pb.ImageBatch(data=images.tobytes(), shape=list(images.shape)), **fields
    )


def text_request(texts: list[str], model: str = "imdb-lstm", **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(model=model, texts=pb.TextBatch(texts=texts), **fields)


def test_top_k_is_sorted_and_probabilities_are_a_distribution(stub: pb_grpc.ClassifierStub) -> None:
    images = IMAGES
    response = stub.Classify(image_request(images, top_k=3, return_probabilities=True, request_id="abc"))
    assert response.request_id == "abc"
    for prediction in response.predictions:
        scores = [c.score for c in prediction.classes]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        probabilities = np.array(prediction.probabilities)
        assert probabilities.shape == (10,)
        assert abs(probabilities.sum() - 1) < 1e-4
        assert prediction.classes[0].index == int(probabilities.argmax())
        assert prediction.classes[0].label == str(prediction.classes[0].index)
    everything = stub.Classify(image_request(images[:1], top_k=50))
    assert len(everything.predictions[0].classes) == 10
    default = stub.Classify(image_request(images[:1]))
    assert len(default.predictions[0].classes) == 1 and not default.predictions[0].probabilities


@pytest.mark.parametrize("model", ["mnist-mlp", "imdb-lstm"])
def test_packed_arrays_carry_the_same_answers_as_prediction_messages(
    stub: pb_grpc.ClassifierStub, model: str
) -> None:
    def ask(answer_format: int) -> pb.ClassifyResponse:
        fields = {"top_k": 3, "return_probabilities": True, "answer_format": answer_format}
        if model == "imdb-lstm":
            return stub.Classify(text_request(TEXTS, model=model, **fields))
        return stub.Classify(image_request(IMAGES[:7], model=model, **fields))

    messages = ask(pb.ANSWER_FORMAT_PREDICTIONS)
    packed = ask(pb.ANSWER_FORMAT_ARRAYS)
    assert not messages.HasField("arrays") and not packed.predictions
    arrays = packed.arrays
    rows, top_k = len(messages.predictions), min(3, len(arrays.labels))
    assert (arrays.rows, arrays.top_k) == (rows, top_k)
    indices = np.frombuffer(arrays.top_indices, "<i4").reshape(rows, top_k)
    scores = np.frombuffer(arrays.top_scores, "<f4").reshape(rows, top_k)
    probabilities = np.frombuffer(arrays.probabilities, "<f4").reshape(rows, len(arrays.labels))
    for row, prediction in enumerate(messages.predictions):
        assert [c.index for c in prediction.classes] == indices[row].tolist()
        assert [c.label for c in prediction.classes] == [arrays.labels[i] for i in indices[row]]
        np.testing.assert_allclose([c.score for c in prediction.classes], scores[row], rtol=1e-6)
        np.testing.assert_allclose(prediction.probabilities, probabilities[row], rtol=1e-6)


BLANK = np.zeros((2, 28, 28), dtype=np.uint8)
BAD_REQUESTS = {
    "unknown model": (
        pb.ClassifyRequest(model="resnet", texts=pb.TextBatch(texts=["x"])),
        "NOT_FOUND",
        "not found",
    ),
    "unknown version": (image_request(BLANK, version=99), "NOT_FOUND", "no version 99"),
    "no input": (pb.ClassifyRequest(model="mnist-cnn"), "INVALID_ARGUMENT", "carries no input"),
    "text to image model": (
        text_request(["a digit"], model="mnist-cnn"),
        "INVALID_ARGUMENT",
        "classifies images",
    ),
    "image to text model": (image_request(BLANK, model="imdb-lstm"), "INVALID_ARGUMENT", "classifies texts"),
    "empty image batch": (image_request(np.zeros((0, 28, 28), np.uint8)), "INVALID_ARGUMENT", "empty batch"),
    "empty text batch": (text_request([]), "INVALID_ARGUMENT", "empty batch"),
    "blank text": (text_request(["good", "  "]), "INVALID_ARGUMENT", "text 1 is empty"),
    "wrong shape": (image_request(np.zeros((2, 784), np.uint8)), "INVALID_ARGUMENT", "[N, 28, 28]"),
    "wrong size": (image_request(np.zeros((1, 32, 32), np.uint8)), "INVALID_ARGUMENT", "[N, 28, 28]"),
    "float32 pixels": (
        pb.ClassifyRequest(
            model="mnist-cnn",
            images=pb.ImageBatch(data=np.zeros((2, 28, 28), np.float32).tobytes(), shape=[2, 28, 28]),
        ),
        "INVALID_ARGUMENT",
        "4 bytes per pixel",
    ),
    "truncated bytes": (
        pb.ClassifyRequest(model="mnist-cnn", images=pb.ImageBatch(data=b"\0" * 700, shape=[1, 28, 28])),
        "INVALID_ARGUMENT",
        "700 bytes",
    ),
    "oversized batch": (
        image_request(np.zeros((4097, 28, 28), np.uint8)),
        "INVALID_ARGUMENT",
        "limit of 4096",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_precise_status(stub: pb_grpc.ClassifierStub, case: str) -> None:
    request, code, fragment = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(request, timeout=30)
    assert error.value.code().name == code
    assert fragment in error.value.details()


def test_bytes_that_are_not_a_request_message_get_invalid_argument(fake_server: InProcessServer) -> None:
    garbage = b"\x0a\x02\xff\xfe"  # field 1 (model, a string) holding invalid UTF-8
    good = image_request(IMAGES[:1]).SerializeToString()
    with grpc.insecure_channel(fake_server.target) as channel:
        for method in ("/classify.v1.Classifier/Classify", "/inference.GRPCInferenceService/ModelInfer"):
            with pytest.raises(grpc.RpcError) as unary:
                channel.unary_unary(method)(garbage, timeout=10)
            assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "is not a valid" in unary.value.details()
        stream = channel.stream_stream("/classify.v1.Classifier/ClassifyStream")
        replies = stream(iter([good, garbage]), timeout=10)
        first = pb.ClassifyStreamResponse.FromString(next(replies))
        assert first.WhichOneof("result") == "response"
        with pytest.raises(grpc.RpcError) as streamed:
            next(replies)
        assert streamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "classify.v1.ClassifyRequest" in streamed.value.details()
    assert health_status(fake_server.target, "") == "SERVING"


def test_versions_are_selected_listed_and_described(tmp_path: Path, serve_in_process) -> None:
    for version in (1, 2, 3):
        write_fake_model(tmp_path, "mnist-cnn", version=version, quick=version != 3)
    server = serve_in_process(tmp_path, "--version-policy", "specific:1,3").wait_started()
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.ClassifierStub(channel)
        assert stub.Classify(image_request(BLANK)).version == 3  # the newest served answers by default
        assert stub.Classify(image_request(BLANK, version=1)).version == 1
        with pytest.raises(grpc.RpcError) as error:
            stub.Classify(image_request(BLANK, version=2))  # on disk, but not in the policy
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert "ready versions: 1, 3" in error.value.details()
        (listed,) = stub.ListModels(pb.ListModelsRequest()).models
        assert (listed.name, listed.state, listed.version) == ("mnist-cnn", "ready", 3)
        newest = stub.GetModelMetadata(pb.GetModelMetadataRequest(model="mnist-cnn"))
        assert list(newest.versions) == [1, 3] and not newest.quick
        assert stub.GetModelMetadata(pb.GetModelMetadataRequest(model="mnist-cnn", version=1)).quick
        with pytest.raises(grpc.RpcError) as error:
            stub.GetModelMetadata(pb.GetModelMetadataRequest(model="nope"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_reports_not_serving_until_every_model_is_warm(tmp_path: Path, serve_in_process) -> None:
    write_fake_model(tmp_path, "mnist-cnn")
    write_fake_model(tmp_path, "imdb-lstm")
    # Each model takes a second to load and warm, long enough for the probes below to see it.
    server = serve_in_process(tmp_path, load_runner=slow_loader(1.0))
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not seen or seen[-1] != "SERVING"):
        status = health_status(server.target)
        if status != "UNREACHABLE" and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.02)
    assert seen == ["NOT_SERVING", "SERVING"]


def test_an_empty_repository_never_reports_serving(
    tmp_path: Path, serve_in_process, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        server = serve_in_process(tmp_path).wait_started()
        time.sleep(1)
        assert health_status(server.target) == "NOT_SERVING"
    assert "no model could be loaded" in caplog.text
