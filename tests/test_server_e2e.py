"""The real server process on loopback serving the trained quick models, called through the generated stubs.

Its start-up and shutdown are in test_server_startup_shutdown.py; protocol checks that need no trained
model are in tests/in_process (the same server built in-process over a fake model).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import MODEL_NAMES, ServerProcess, health_status
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

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


def test_a_batch_answers_like_its_items_one_by_one(
    stub: pb_grpc.ClassifierStub, imdb_validation: tuple[list[str], np.ndarray]
) -> None:
    texts = imdb_validation[0][:6]
    together = stub.Classify(text_request(texts, return_probabilities=True))
    with ThreadPoolExecutor(6) as pool:
        alone = list(pool.map(lambda t: stub.Classify(text_request([t], return_probabilities=True)), texts))
    for merged, single in zip(together.predictions, alone, strict=True):
        np.testing.assert_allclose(merged.probabilities, single.predictions[0].probabilities, atol=1e-5)


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
