"""The real server process on loopback, called through the generated stubs (the wire contract itself)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import MODEL_NAMES, ServerProcess, copy_model, health_status
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from classify_client import ClassifyError, Client
from classify_client.formats import iter_jsonl, read_idx
from classify_client.wire.proto.classify.v1 import classify_pb2 as pb
from classify_client.wire.proto.classify.v1 import classify_pb2_grpc as pb_grpc

MNIST_MODELS = [name for name in MODEL_NAMES if name.startswith("mnist")]


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.ClassifierStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.ClassifierStub(channel)


@pytest.fixture(scope="module")
def mnist_validation(validation_files: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(validation_files / "validation-images-idx3-ubyte.gz")
    labels = read_idx(validation_files / "validation-labels-idx1-ubyte.gz")
    return images, labels


@pytest.fixture(scope="module")
def imdb_validation(validation_files: Path) -> tuple[list[str], np.ndarray]:
    records = [line.record for line in iter_jsonl(validation_files / "imdb_validation.jsonl.gz")]
    return [r["text"] for r in records], np.array([r["label"] for r in records])


def image_request(images: np.ndarray, model: str = "mnist-cnn", **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=model, images=pb.ImageBatch(data=images.tobytes(), shape=list(images.shape)), **fields
    )


def text_request(texts: list[str], model: str = "imdb-lstm", **fields) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(model=model, texts=pb.TextBatch(texts=texts), **fields)


def top1(response: pb.ClassifyResponse) -> np.ndarray:
    return np.array([p.classes[0].index for p in response.predictions])


def test_health_is_serving_overall_per_service_and_per_model(server: ServerProcess) -> None:
    for service in ("", "classify.v1.Classifier", *MODEL_NAMES):
        assert health_status(server.target, service) == "SERVING", service
    assert health_status(server.target, "no-such-model") == "SERVICE_UNKNOWN"


def test_reflection_lists_the_services(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"classify.v1.Classifier", "grpc.health.v1.Health"} <= services


@pytest.mark.parametrize("model", MNIST_MODELS)
def test_mnist_models_classify_held_out_digits_well_above_chance(
    stub: pb_grpc.ClassifierStub, mnist_validation: tuple[np.ndarray, np.ndarray], model: str
) -> None:
    images, labels = mnist_validation
    response = stub.Classify(image_request(images, model=model), timeout=60)
    assert response.model == model and response.version == 1
    assert len(response.predictions) == len(images)
    accuracy = float((top1(response) == labels).mean())
    assert accuracy > 0.8, f"{model} quick accuracy {accuracy:.3f}"


def test_imdb_lstm_classifies_raw_review_text_well_above_chance(
    stub: pb_grpc.ClassifierStub, imdb_validation: tuple[list[str], np.ndarray]
) -> None:
    texts, labels = imdb_validation
    response = stub.Classify(text_request(texts), timeout=120)
    assert [c.label for c in response.predictions[0].classes] in (["negative"], ["positive"])
    accuracy = float((top1(response) == labels).mean())
    assert accuracy > 0.6, f"imdb-lstm quick accuracy {accuracy:.3f}"


def test_channel_last_images_give_the_same_answer(
    stub: pb_grpc.ClassifierStub, mnist_validation: tuple[np.ndarray, np.ndarray]
) -> None:
    images = mnist_validation[0][:16]
    plain = stub.Classify(image_request(images, return_probabilities=True))
    channel_last = stub.Classify(image_request(images[..., np.newaxis], return_probabilities=True))
    assert plain == channel_last


def test_top_k_is_sorted_and_probabilities_are_a_distribution(
    stub: pb_grpc.ClassifierStub, mnist_validation: tuple[np.ndarray, np.ndarray]
) -> None:
    images = mnist_validation[0][:8]
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
    stub: pb_grpc.ClassifierStub,
    mnist_validation: tuple[np.ndarray, np.ndarray],
    imdb_validation: tuple[list[str], np.ndarray],
    model: str,
) -> None:
    def ask(answer_format: int) -> pb.ClassifyResponse:
        fields = {"top_k": 3, "return_probabilities": True, "answer_format": answer_format}
        if model == "imdb-lstm":
            return stub.Classify(text_request(imdb_validation[0][:5], model=model, **fields))
        return stub.Classify(image_request(mnist_validation[0][:7], model=model, **fields))

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


def test_a_batch_answers_like_its_items_one_by_one(
    stub: pb_grpc.ClassifierStub, imdb_validation: tuple[list[str], np.ndarray]
) -> None:
    texts = imdb_validation[0][:6]
    together = stub.Classify(text_request(texts, return_probabilities=True))
    with ThreadPoolExecutor(6) as pool:
        alone = list(pool.map(lambda t: stub.Classify(text_request([t], return_probabilities=True)), texts))
    for merged, single in zip(together.predictions, alone, strict=True):
        np.testing.assert_allclose(merged.probabilities, single.predictions[0].probabilities, atol=1e-5)


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


def test_list_models_and_metadata_describe_every_model(stub: pb_grpc.ClassifierStub) -> None:
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    assert set(listed) == set(MODEL_NAMES)
    assert all(m.state == "ready" and m.version == 1 for m in listed.values())
    assert listed["imdb-lstm"].task == "text-classification"
    cnn = stub.GetModelMetadata(pb.GetModelMetadataRequest(model="mnist-cnn"))
    assert cnn.labels == [str(d) for d in range(10)]
    assert cnn.input.kind == "image" and list(cnn.input.shape) == [-1, 28, 28]
    assert cnn.quick and list(cnn.versions) == [1]
    assert 0.8 < cnn.metrics["validation_accuracy"] <= 1
    lstm = stub.GetModelMetadata(pb.GetModelMetadataRequest(model="imdb-lstm", version=1))
    assert lstm.labels == ["negative", "positive"] and lstm.input.dtype == "string"
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModelMetadata(pb.GetModelMetadataRequest(model="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_answers_every_request_in_order_and_survives_bad_ones(
    stub: pb_grpc.ClassifierStub, mnist_validation: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_validation

    def requests() -> Iterator[pb.ClassifyRequest]:
        for i in range(40):
            if i % 10 == 7:
                yield text_request(["wrong kind"], model="mnist-cnn", request_id=f"r{i}")
            else:
                yield image_request(images[i * 5 : i * 5 + 5], request_id=f"r{i}")

    answers = list(stub.ClassifyStream(requests(), timeout=120))
    assert [a.request_id for a in answers] == [f"r{i}" for i in range(40)]
    errors = [a for a in answers if a.WhichOneof("result") == "error"]
    assert [a.request_id for a in errors] == ["r7", "r17", "r27", "r37"]
    assert all(a.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for a in errors)
    predicted = np.concatenate([top1(a.response) for a in answers if a.WhichOneof("result") == "response"])
    expected = np.concatenate([labels[i * 5 : i * 5 + 5] for i in range(40) if i % 10 != 7])
    assert (predicted == expected).mean() > 0.8


def test_health_reports_not_serving_until_every_model_is_warm(
    quick_repository: Path, tmp_path: Path, private_server
) -> None:
    repository = tmp_path / "slow"
    repository.mkdir()
    copy_model(quick_repository, "mnist-softmax", repository)
    for i in range(4):  # several text models make loading last long enough to be observed
        copy_model(quick_repository, "imdb-lstm", repository, f"imdb-copy-{i}")
    started = private_server(repository)
    seen: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not seen or seen[-1] != "SERVING"):
        status = health_status(started.target)
        if status != "UNREACHABLE" and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.02)
    assert seen == ["NOT_SERVING", "SERVING"], started.log()
    assert started.terminate() == 0


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


def test_an_empty_repository_never_reports_serving(tmp_path: Path, private_server) -> None:
    started = private_server(tmp_path)
    deadline = time.monotonic() + 60
    while health_status(started.target) == "UNREACHABLE" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    assert health_status(started.target) == "NOT_SERVING"
    assert "no model could be loaded" in started.log()


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic() when sent
    finished: float
    code: str  # OK or the status name


def hammer(target: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    """Closed loop of 128-image calls until ``stop``; records each call's outcome and timing."""
    with Client(target, timeout=60) as client:
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
    started = private_server(repository, "--max-batch-size", "32")
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


def test_statistics_show_what_batching_achieved(
    stub: pb_grpc.ClassifierStub, mnist_validation: tuple[np.ndarray, np.ndarray]
) -> None:
    def snapshot() -> pb.ModelStatistics:
        (stats,) = stub.GetModelStatistics(pb.GetModelStatisticsRequest(model="mnist-softmax")).models
        return stats

    before = snapshot()
    images = mnist_validation[0]
    sizes = [1, 3, 5, 7] * 8
    requests = [image_request(images[:n], model="mnist-softmax") for n in sizes]
    futures = [stub.Classify.future(r, timeout=60) for r in requests]
    assert [len(f.result().predictions) for f in futures] == sizes
    after = snapshot()
    assert after.requests - before.requests == len(sizes)
    assert after.rows - before.rows == sum(sizes)
    executions = after.executions - before.executions
    assert 1 <= executions <= len(sizes)
    histogram_growth = sum(b.executions for b in after.batch_sizes) - sum(
        b.executions for b in before.batch_sizes
    )
    assert histogram_growth == executions
    assert after.executed_rows - before.executed_rows == sum(sizes)
    assert after.compute_seconds > before.compute_seconds
    assert after.queued_rows == 0
    everything = stub.GetModelStatistics(pb.GetModelStatisticsRequest()).models
    assert {s.name for s in everything} == set(MODEL_NAMES)
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModelStatistics(pb.GetModelStatisticsRequest(model="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_bytes_that_are_not_a_request_message_get_invalid_argument(
    server: ServerProcess, mnist_validation: tuple[np.ndarray, np.ndarray]
) -> None:
    garbage = b"\x0a\x02\xff\xfe"  # field 1 (model, a string) holding invalid UTF-8
    good = image_request(mnist_validation[0][:1]).SerializeToString()
    with grpc.insecure_channel(server.target) as channel:
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
    assert health_status(server.target, "") == "SERVING"
